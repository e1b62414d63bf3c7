"""The predict table: one fixed-width line per input.

Standard library only, so that the console prints the same table from the
JSON lines a host's ``python -m trainers predict --json`` sent back, without
the training stack (``emoconsole predict``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence


def table_header(classes: Sequence[str], name_width: int = 40) -> str:
    cols = "".join(f" {c[:9]:>9}" for c in classes)
    return f"{'input':<{name_width}} {'prediction':<12}{cols}"


def table_line(
    name: str,
    prediction: str | None,
    probabilities: Mapping[str, float],
    classes: Sequence[str],
    name_width: int = 40,
) -> str:
    """The input (relative to here when shorter), the top class, each class's probability."""
    name = min(name, os.path.relpath(name), key=len)
    name = name if len(name) <= name_width else "..." + name[-name_width + 3 :]
    cols = "".join(f" {probabilities[c]:>9.4f}" for c in classes)
    return f"{name:<{name_width}} {prediction or '':<12}{cols}"
