"""The Textual dashboard (``emoconsole`` with no arguments). Never imports torch."""

from __future__ import annotations

from typing import Any


def run_dashboard(**kwargs: Any) -> None:
    """Open the dashboard; Textual is imported only here, not by the CLI's --help."""
    from emoconsole.dashboard.app import run_dashboard as run

    run(**kwargs)
