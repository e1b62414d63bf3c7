"""Every scalar series a run logs, for the run view's grid of charts (W&B's ``leet``).

Named as TensorBoard names them (docs/run-directory.md, "tb/"), all on the global-step
axis: ``train/loss``, ``train/lr``, ``train/grad_norm``, ``perf/data_s``,
``perf/compute_s`` per step event, ``grad_norm/<group>`` on the steps that carry them;
``val/{loss,accuracy,macro_f1,weighted_f1,uar}``, ``val_recall/<class>``,
``val_f1/<class>`` and ``train/epoch_loss`` per epoch. UI-free: fed events one at a
time by the run view's state.

Bounded whatever the run's length: a MELD run logs ~30,000 steps, and a chart is a
few hundred columns wide. Each series keeps at most :data:`MAX_POINTS` points; past
that it keeps every other point and from then on one point in two (a stride that
doubles again when full), so memory and drawing time stay flat.

Resumes follow the events' rule: ``status: resumed`` drops every point after the
checkpoint's ``global_step`` (the resumed process logs those steps again).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MAX_POINTS = 1000
STEP_FIELDS = (("loss", "train/loss"), ("lr", "train/lr"), ("grad_norm", "train/grad_norm"),
               ("data_s", "perf/data_s"), ("compute_s", "perf/compute_s"))  # fmt: skip
VAL_FIELDS = ("loss", "accuracy", "macro_f1", "weighted_f1", "uar")


@dataclass
class Series:
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    stride: int = 1  # keep one point in `stride` from now on
    _skipped: int = 0

    def add(self, x: float, y: float) -> None:
        self._skipped += 1
        if self._skipped < self.stride:
            return
        self._skipped = 0
        self.xs.append(x)
        self.ys.append(y)
        if len(self.xs) > MAX_POINTS:
            self.xs, self.ys = self.xs[::2], self.ys[::2]
            self.stride *= 2

    def drop_after(self, x: float) -> None:
        keep = sum(1 for v in self.xs if v <= x)  # xs increase
        del self.xs[keep:], self.ys[keep:]


@dataclass
class ScalarSeries:
    """name -> :class:`Series`, in the order first logged."""

    series: dict[str, Series] = field(default_factory=dict)
    version: int = 0  # bumped on every change

    def _put(self, name: str, x: Any, y: Any) -> None:
        if isinstance(y, bool) or not isinstance(y, (int, float)) or not isinstance(x, int):
            return
        self.series.setdefault(name, Series()).add(float(x), float(y))
        self.version += 1

    def add_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        x = ev.get("global_step")
        if kind == "step":
            for key, name in STEP_FIELDS:
                self._put(name, x, ev.get(key))  # a null grad_norm (inf/nan) is no point
            norms = ev.get("grad_norms")
            if isinstance(norms, dict):
                for group, norm in norms.items():
                    self._put(f"grad_norm/{group}", x, norm)
        elif kind == "val" and ev.get("split") == "val":
            for key in VAL_FIELDS:
                self._put(f"val/{key}", x, ev.get(key))
            self._put("train/epoch_loss", x, ev.get("train_loss"))
            for cls, scores in (ev.get("per_class") or {}).items():
                if isinstance(scores, dict):
                    self._put(f"val_recall/{cls}", x, scores.get("recall"))
                    self._put(f"val_f1/{cls}", x, scores.get("f1"))
        elif kind == "status" and ev.get("status") == "resumed":
            step = ev.get("global_step")
            if isinstance(step, int):
                for one in self.series.values():
                    one.drop_after(step)
                self.version += 1

    def names(self, pattern: str = "") -> list[str]:
        """The series whose name matches ``pattern``: a regular expression searched in
        the name, or, when it is not one, a plain substring; empty: every series."""
        if not pattern:
            return list(self.series)
        try:
            rx = re.compile(pattern, re.IGNORECASE)
        except re.error:
            return [n for n in self.series if pattern.lower() in n.lower()]
        return [n for n in self.series if rx.search(n)]
