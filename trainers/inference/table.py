"""One input's prediction, as a JSON line and as a line of the predict table.

Standard library only, so that the console reads the JSON lines a host's
``python -m trainers predict --json`` sent back into the very same
:class:`Prediction` and prints the same table, without the training stack
(``emoconsole predict``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Prediction:
    input: str
    key: str
    probabilities: dict[str, float] | None = None
    error: str | None = None
    sources: tuple[str, ...] = ()  # the files whose content was used

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def prediction(self) -> str | None:
        if self.probabilities is None:
            return None
        return max(self.probabilities, key=lambda c: self.probabilities[c])  # type: ignore[index]

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"input": self.input, "key": self.key, "error": self.error}
        return {
            "input": self.input,
            "key": self.key,
            "prediction": self.prediction,
            "probabilities": self.probabilities,
            "sources": list(self.sources),
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Prediction:
        """A line of ``predict --json`` back into the row that printed it."""
        return cls(
            input=row["input"],
            key=row.get("key", ""),
            probabilities=row.get("probabilities"),
            error=row.get("error"),
            sources=tuple(row.get("sources") or ()),
        )


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
