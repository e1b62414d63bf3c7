"""Time to completion from a run's events alone (stdlib; the console has no torch).

The naive estimate, elapsed / fraction done, is wrong in the ways training
runs differ from a progress bar: the first epoch is slower (data decoding,
cuDNN autotuning, the cache filling), every epoch ends in a validation pass
that is not a step, and early stopping can end the run long before max epochs.
So the estimator keeps three separate rates:

* seconds per optimizer step, an exponentially weighted mean of the intervals
  between step events *within* an epoch (the gap before an epoch's first step
  event includes loader start-up and is counted as epoch overhead instead);
* seconds of validation per epoch: from the last step event of an epoch to its
  val event;
* per-epoch overhead: the rest of each finished epoch's wall time.

Every run ends with one more evaluation after its last epoch: the engine loads
the best checkpoint and predicts the validation and the test split again
(``trainers.engine.trainer._finish``). That is about two validation passes
which no epoch shows, so both bounds include ``final_eval_passes`` of them.

It reports two bounds: ``to_max_epochs`` (the run goes the distance) and
``to_earliest_stop`` (the first epoch early stopping could end it, given its
patience and the last improvement, which the engine writes into every val
event as ``earliest_stop_epoch``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STEP_SMOOTHING = 0.1  # EWMA weight of the newest step interval
# The closing evaluation with the best checkpoint: val and test, each about one val pass.
FINAL_EVAL_PASSES = 2.0


@dataclass(frozen=True)
class Estimate:
    to_max_epochs: float | None  # seconds; None until a rate is known
    to_earliest_stop: float | None  # seconds until the earliest epoch early stopping can fire
    epoch: int  # the epoch in progress (or last finished)
    epochs: int
    earliest_stop_epoch: int | None
    step_s: float | None
    val_s: float | None
    finished: bool = False


@dataclass
class EtaEstimator:
    """Feed it events in seq order (``update``), ask ``estimate(now)`` at any time."""

    smoothing: float = STEP_SMOOTHING
    final_eval_passes: float = FINAL_EVAL_PASSES
    epochs: int = 0
    steps_per_epoch: int = 0
    epoch: int = 0
    step: int = 0  # optimizer steps done in the current epoch
    step_s: float | None = None
    finished: bool = False
    earliest_stop_epoch: int | None = None
    _last_step_time: float | None = None
    _epoch_start_time: float | None = None
    _last_event_time: float | None = None
    _val_times: list[float] = field(default_factory=list)
    _overheads: list[float] = field(default_factory=list)
    _step_events_this_epoch: int = 0
    _steps_at_last_event: int = 0
    _provisional: bool = False

    def update(self, event: dict[str, Any]) -> None:
        kind, t = event.get("type"), event.get("time")
        if t is None:
            return
        self._last_event_time = t
        if kind == "epoch_start":
            self.epoch = int(event["epoch"])
            self.epochs = int(event.get("epochs") or self.epochs)
            self.steps_per_epoch = int(event.get("steps") or self.steps_per_epoch)
            self.step = 0
            if event.get("earliest_stop_epoch") is not None:  # known before the first val
                self.earliest_stop_epoch = int(event["earliest_stop_epoch"])
            self._epoch_start_time = t
            self._last_step_time = None
            self._step_events_this_epoch = 0
            self._steps_at_last_event = 0
        elif kind == "step":
            step = int(event.get("step") or 0)
            if self._last_step_time is not None and step > self._steps_at_last_event:
                per_step = (t - self._last_step_time) / (step - self._steps_at_last_event)
                if self.step_s is None or self._provisional:
                    self.step_s = per_step
                    self._provisional = False
                else:
                    self.step_s += self.smoothing * (per_step - self.step_s)
            elif self._epoch_start_time is not None and self.step_s is None and step > 0:
                # Only one step event so far in the whole run: better than nothing.
                # Includes loader start-up: replaced, not averaged, by the first real interval.
                self.step_s = (t - self._epoch_start_time) / step
                self._provisional = True
            self._last_step_time = t
            self._steps_at_last_event = step
            self.step = step
            self._step_events_this_epoch += 1
        elif kind == "val" and event.get("split", "val") == "val":
            if self._last_step_time is not None:
                self._val_times.append(max(0.0, t - self._last_step_time))
            if self._epoch_start_time is not None and self.step_s is not None:
                spent = t - self._epoch_start_time
                steps_part = self.steps_per_epoch * self.step_s
                val_part = self._val_times[-1] if self._val_times else 0.0
                self._overheads.append(max(0.0, spent - steps_part - val_part))
            self.step = self.steps_per_epoch
            if event.get("earliest_stop_epoch") is not None:
                self.earliest_stop_epoch = int(event["earliest_stop_epoch"])
        elif kind == "status" and event.get("status") in (
            "completed",
            "failed",
            "stopped",
            "preempted",
            "crashed",
        ):
            self.finished = True

    @property
    def val_s(self) -> float | None:
        if not self._val_times:
            return None
        recent = self._val_times[-3:]
        return sum(recent) / len(recent)

    @property
    def overhead_s(self) -> float:
        # The first epoch's overhead (decoding, warm-up) does not repeat: prefer later ones.
        later = self._overheads[1:] or self._overheads
        return sum(later[-3:]) / len(later[-3:]) if later else 0.0

    def _seconds_to(self, last_epoch: int, now: float | None) -> float | None:
        if self.finished:
            return 0.0
        if self.step_s is None or not self.steps_per_epoch:
            return None
        val_s = self.val_s if self.val_s is not None else 0.0
        per_epoch = self.steps_per_epoch * self.step_s + val_s + self.overhead_s
        in_epoch = self.step < self.steps_per_epoch
        current = 0.0
        if in_epoch:
            current = (self.steps_per_epoch - self.step) * self.step_s + val_s
            if now is not None and self._last_step_time is not None:
                # Time already spent since the last step event counts against the next one.
                current = max(0.0, current - (now - self._last_step_time))
        remaining_epochs = max(0, last_epoch - self.epoch)
        return current + remaining_epochs * per_epoch + self.final_eval_passes * val_s

    def estimate(self, now: float | None = None) -> Estimate:
        earliest = self.earliest_stop_epoch
        if earliest is not None:
            earliest = min(max(earliest, self.epoch), self.epochs or earliest)
        return Estimate(
            to_max_epochs=self._seconds_to(self.epochs, now),
            to_earliest_stop=self._seconds_to(earliest, now) if earliest is not None else None,
            epoch=self.epoch,
            epochs=self.epochs,
            earliest_stop_epoch=earliest,
            step_s=self.step_s,
            val_s=self.val_s,
            finished=self.finished,
        )


def naive_eta(elapsed: float, fraction_done: float) -> float | None:
    """The baseline: elapsed / progress, what a plain progress bar shows."""
    if fraction_done <= 0:
        return None
    return elapsed * (1.0 - fraction_done) / fraction_done


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
