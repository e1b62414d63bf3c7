"""Curves on a textual-plotext chart: the run view's and the compare screen's one way
of drawing a metric per epoch, so the two look the same."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

Series = tuple[str, Sequence[int], Sequence[Any]]  # label, epochs, values


def metric_series(history: Iterable[dict[str, Any]], key: str, label: str) -> Series | None:
    """(label, epochs, values) of ``key`` over val events, or None when any value is
    missing: plotext draws a gap as a line to zero, which would read as a collapse."""
    events = list(history)
    epochs = [int(ev.get("epoch") or 0) for ev in events]
    ys = [ev.get(key) for ev in events]
    if not epochs or not all(isinstance(y, (int, float)) for y in ys):
        return None
    return label, epochs, ys


def draw(plot: Any, title: str, series: Iterable[Series | None]) -> None:
    """Replace what ``plot`` (a PlotextPlot) shows with ``series``."""
    plt = plot.plt
    plt.clear_data()
    plt.title(title)
    for one in series:
        if one is not None:
            label, xs, ys = one
            plt.plot(list(xs), list(ys), label=label, marker="braille")
    plot.refresh()
