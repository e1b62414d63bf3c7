"""The ``emoconsole`` command. With no arguments in a terminal it opens the dashboard
straight away; everything else goes through the Typer CLI (:mod:`emoconsole.cli`).

The fast path exists for the first paint: importing Typer and every command
module costs about 0.16 s that the dashboard does not need.
"""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) == 1 and sys.stdin.isatty() and sys.stdout.isatty():
        from emoconsole.dashboard import run_dashboard

        run_dashboard()
        return
    from emoconsole.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
