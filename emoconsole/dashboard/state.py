"""The dashboard's data layer: no Textual here, so every rule is testable on plain items.

Three things live here:

* :class:`RunRow` and :class:`RunsListing`: what the runs table shows, built (by
  :meth:`RunsListing.rows`, one :func:`to_row` each) from ``remote.deploy.list_runs``
  answers, including hosts that did not answer;
* :class:`LogFilter` and :func:`line_level`: which log lines the log pane shows;
* :class:`RunState`: one run as the watch stream describes it. It extends
  :class:`~emoconsole.monitor_view.MonitorState` (the headless ``monitor``
  command's state) with what only the dashboard shows: whole log lines for the
  log pane, system-sample history for sparklines, per-class history, the best
  epoch's confusion matrix and the two emotion-specific warnings, shown under
  the run's own ``warning`` events (MonitorState.run_warnings).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emoconsole.dashboard.cost import run_cost, spans_run_cost
from emoconsole.dashboard.series import ScalarSeries
from emoconsole.eta import format_duration, naive_eta
from emoconsole.monitor_view import MonitorState
from remote.watch import EventItem, LogItem, SysItem

if TYPE_CHECKING:
    from remote.ec2.prices import CostSoFar

# A class "collapsed" when its recall falls to COLLAPSE_RECALL or below after having
# reached COLLAPSE_FROM at an earlier epoch: the classic symptom of a loss or sampler
# that lets the model give up on a minority emotion while accuracy still looks fine.
COLLAPSE_RECALL = 0.1
COLLAPSE_FROM = 0.3
# Input-bound: over the recent step events, the share of step time spent waiting for
# the loader. Above this the GPU (or CPU) is idling on data: more workers, a cache.
INPUT_BOUND_SHARE = 0.5
INPUT_BOUND_WINDOW = 20  # step events
SYS_HISTORY = 120  # samples kept for sparklines (4 minutes at the default 2 s)
# The System tab's series (key, label): the host's, then each GPU's, keyed by gpu_key.
# The watcher's samples carry "gpus" only where nvidia-smi answers, one entry a board.
HOST_SERIES = (("cpu", "CPU %"), ("ram", "RAM %"), ("disk", "disk used %"))
GPU_SERIES = (("util", "util %"), ("mem", "memory %"), ("temp", "temp °C"), ("power", "power W"))


def gpu_key(index: int, series: str) -> str:
    """The ``sys_history`` key of one GPU's series: ``gpu_key(1, "util") == "gpu1_util"``."""
    return f"gpu{index}_{series}"


# -- the runs table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    """One line of the runs table. ``key`` is unique across hosts."""

    host: str
    id: str
    model: str
    status: str
    epoch: int | None
    epochs: int | None
    best: float | None
    monitor: str | None
    eta: str
    reachable: bool = True
    eta_s: float | None = None  # what the ETA column sorts by ("2m03s" > "45s" as text)
    # EC2 hosts only: the instance's hourly price, and the run's cost so far / at its end.
    usd_per_hour: float | None = None
    cost_so_far: float | None = None
    cost_at_end: float | None = None
    instances: int = 1  # a managed run's instances so far (run.json "instances")
    place: int | None = None  # waiting in its host's run queue: 1 starts next

    @property
    def key(self) -> str:
        return f"{self.host}/{self.id}"

    @property
    def epoch_text(self) -> str:
        return f"{self.epoch or '-'}/{self.epochs or '-'}"

    @property
    def best_text(self) -> str:
        if self.best is None:
            return "-"
        return f"{self.monitor or ''} {self.best:.4f}".strip()

    @property
    def status_text(self) -> str:
        status = f"{self.status} (place {self.place})" if self.place else self.status
        return status if self.reachable else f"{status} (host unreachable)"

    def cells(self) -> tuple[str, ...]:
        return (
            self.id,
            self.model,
            self.host,
            self.status_text,
            self.epoch_text,
            self.best_text,
            self.eta,
            self.cost_text,
        )

    @property
    def cost_text(self) -> str:
        """``$0.12 → $0.50`` while running (so far, then at the end by the ETA), ``$0.40``
        once ended, ``-`` off EC2. The run's own hours at the instance's price: the
        run view shows what the instance costs."""
        if self.cost_so_far is None:
            return "-"
        on = f" ({self.instances} inst.)" if self.instances > 1 else ""
        if self.cost_at_end is None:
            return f"${self.cost_so_far:.2f}{on}"
        return f"${self.cost_so_far:.2f} → ${self.cost_at_end:.2f}{on}"

    def matches(self, needle: str) -> bool:
        needle = needle.lower().strip()
        return not needle or any(needle in cell.lower() for cell in self.cells())


COLUMNS = ("id", "model", "host", "status", "epoch", "best", "ETA", "cost")


def rough_eta(row: dict[str, Any], now: float | None = None) -> float | None:
    """Seconds left from the listing alone (elapsed per finished epoch). The run view's
    :class:`~emoconsole.eta.EtaEstimator` is better; this is what a listing can afford."""
    if row.get("status") not in ("running", "preparing", "starting", "resumed"):
        return None
    epoch, epochs, started = row.get("epoch"), row.get("epochs"), row.get("started_at")
    if not (epoch and epochs and started):
        return None
    done = max(0, int(epoch) - 1) / int(epochs)
    return naive_eta((now or time.time()) - float(started), done)


def row_cost(
    row: dict[str, Any], usd_per_hour: float | None, eta_s: float | None, now: float | None = None
) -> tuple[float | None, float | None]:
    """(so far, at the end) in USD for a listed run on an instance of ``usd_per_hour``:
    the run's own hours (start to end, or now), and the ETA's on top while it runs."""
    started = row.get("started_at")
    if usd_per_hour is None or not started:
        return None, None
    ended = row.get("ended_at") or (now or time.time())
    cost = run_cost(usd_per_hour, float(ended) - float(started), eta_s)
    return cost.so_far, cost.at_end


def to_row(
    host: str,
    row: dict[str, Any],
    reachable: bool = True,
    usd_per_hour: float | None = None,
    spans: CostSoFar | None = None,
) -> RunRow:
    """One table row. ``spans``: the run's cost across the instances it ran on (a
    run.json with ``instances``), which replaces "its hours at this host's price"."""
    eta_s = rough_eta(row)
    so_far, at_end = row_cost(row, usd_per_hour, eta_s)
    instances = 1
    across = None if spans is None else spans_run_cost(spans, eta_s)
    if across is not None:
        so_far, at_end, instances = across.so_far, across.at_end, across.instances
        usd_per_hour = across.usd_per_hour
    return RunRow(
        host=host,
        id=str(row.get("id")),
        model=str(row.get("model") or "?"),
        status=str(row.get("status") or "?"),
        epoch=row.get("epoch"),
        epochs=row.get("epochs"),
        best=row.get("best"),
        monitor=row.get("monitor"),
        eta=_eta_text(row, eta_s) if reachable else "?",
        reachable=reachable,
        eta_s=eta_s,
        usd_per_hour=usd_per_hour,
        cost_so_far=so_far,
        cost_at_end=at_end,
        instances=instances,
        place=row.get("place"),
    )


def _eta_text(row: dict[str, Any], eta_s: float | None) -> str:
    if row.get("status") not in ("running", "preparing", "starting", "resumed"):
        return "-"
    return format_duration(eta_s)


@dataclass
class RunsListing:
    """What the runs table knows: the last answer of every host. A host that stops
    answering keeps its last rows, marked unreachable, until it answers again."""

    by_host: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)  # EC2 hosts: USD per hour
    # EC2 hosts: each listed run's cost across its instances, by host then run id.
    costs: dict[str, dict[str, CostSoFar]] = field(default_factory=dict)

    def update(
        self,
        host: str,
        runs: list[dict[str, Any]] | None,
        error: str | None,
        usd_per_hour: float | None = None,
        costs: dict[str, CostSoFar] | None = None,
    ) -> None:
        if usd_per_hour is not None:
            self.prices[host] = usd_per_hour
        if costs:
            self.costs.setdefault(host, {}).update(costs)
        if error is None:
            self.by_host[host] = list(runs or [])
            self.errors.pop(host, None)
        else:
            self.errors[host] = error
            self.by_host.setdefault(host, [])

    def rows(self) -> list[RunRow]:
        out: list[RunRow] = []
        for host, runs in self.by_host.items():
            reachable = host not in self.errors
            price = self.prices.get(host)
            costs = self.costs.get(host, {})
            out.extend(to_row(host, r, reachable, price, costs.get(str(r.get("id")))) for r in runs)
            if not reachable and not runs:
                # No run known there yet: still say the host exists and is down.
                out.append(
                    RunRow(host, "-", "-", f"unreachable: {self.errors[host]}"[:80],
                           None, None, None, None, "?", reachable=True)
                )  # fmt: skip
        return out


def sort_rows(rows: list[RunRow], column: str, reverse: bool = False) -> list[RunRow]:
    def key(row: RunRow) -> tuple[int, Any]:
        value: Any = {
            "id": row.id,
            "model": row.model,
            "host": row.host,
            "status": row.status,
            "epoch": row.epoch or 0,
            "best": row.best if row.best is not None else float("-inf"),
            "ETA": row.eta_s if row.eta_s is not None else float("inf"),
            "cost": row.cost_so_far if row.cost_so_far is not None else float("-inf"),
        }[column]
        return (0, value)

    return sorted(rows, key=key, reverse=reverse)


# -- the log pane ----------------------------------------------------------------------------

# train.log lines read "YYYY-mm-dd HH:MM:SS LEVEL message" (trainers.engine.sinks).
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LEVEL_ALIASES = {"WARN": "WARNING", "CRITICAL": "ERROR", "FATAL": "ERROR"}


def level_token(line: str) -> tuple[int, int, int] | None:
    """(level index into LEVELS, start, end) of the level word among the line's first
    three tokens, or None when it names no level."""
    at = 0
    for token in line.split(maxsplit=3)[:3]:
        at = line.index(token, at)
        name = _LEVEL_ALIASES.get(token, token)
        if name in LEVELS:
            return LEVELS.index(name), at, at + len(token)
        at += len(token)
    return None


def line_level(line: str, previous: int) -> int:
    """The line's level as an index into LEVELS. A line naming none (a traceback's
    continuation, a progress bar) belongs to the line before it."""
    found = level_token(line)
    return previous if found is None else found[0]


@dataclass
class LogFilter:
    """What the log pane shows: lines at or above ``min_level`` containing ``text``."""

    text: str = ""
    min_level: int = 0

    @property
    def active(self) -> bool:
        return bool(self.text) or self.min_level > 0

    def keeps(self, level: int, line: str) -> bool:
        return level >= self.min_level and (not self.text or self.text.lower() in line.lower())

    def describe(self) -> str:
        parts = []
        if self.min_level:
            parts.append(f"{LEVELS[self.min_level]}+")
        if self.text:
            parts.append(f"'{self.text}'")
        return " ".join(parts) or "all"


# -- one run ------------------------------------------------------------------------------------


@dataclass
class RunState(MonitorState):
    """MonitorState plus the dashboard's extras; feed it with :meth:`add`."""

    config: dict[str, Any] | None = None
    run_dir: str = ""
    sys_history: dict[str, deque[float]] = field(default_factory=dict)
    # Every GPU a sample ever named, index -> board name, in the order first seen.
    gpus: dict[int, str] = field(default_factory=dict)
    steps_timing: deque[tuple[float, float]] = field(
        default_factory=lambda: deque(maxlen=INPUT_BOUND_WINDOW)
    )
    new_log_lines: list[str] = field(default_factory=list)
    # Every scalar series the run logs (the Curves tab's grid), bounded per series.
    scalars: ScalarSeries = field(default_factory=ScalarSeries)
    _log_partial: str = ""
    version: int = 0  # bumped on every change: the view re-renders only when it moved

    def add(self, item: object) -> None:
        self.version += 1
        if isinstance(item, LogItem):
            # Whole lines for the log pane; the parent's bounded tail is for `monitor`.
            text = self._log_partial + item.text
            *lines, self._log_partial = text.split("\n")
            self.new_log_lines.extend(lines)
            return
        super().add(item)
        if isinstance(item, EventItem):
            self.scalars.add_event(item.event)
        if isinstance(item, SysItem):
            self._sample(item.sample)
        elif isinstance(item, EventItem) and item.type == "step":
            ev = item.event
            if isinstance(ev.get("data_s"), (int, float)) and isinstance(
                ev.get("compute_s"), (int, float)
            ):
                self.steps_timing.append((float(ev["data_s"]), float(ev["compute_s"])))

    def take_log_lines(self) -> list[str]:
        lines, self.new_log_lines = self.new_log_lines, []
        return lines

    def _sample(self, sample: dict[str, Any]) -> None:
        def push(name: str, value: Any) -> None:
            if isinstance(value, (int, float)):
                self.sys_history.setdefault(name, deque(maxlen=SYS_HISTORY)).append(float(value))

        def share(used: Any, total: Any) -> float | None:
            if isinstance(used, (int, float)) and isinstance(total, (int, float)) and total:
                return 100.0 * used / total
            return None

        push("cpu", sample.get("cpu_percent"))
        push("ram", sample.get("ram_percent"))
        free, total = sample.get("disk_free"), sample.get("disk_total")
        if isinstance(free, (int, float)) and isinstance(total, (int, float)):
            push("disk", share(total - free, total))
        for position, gpu in enumerate(sample.get("gpus") or []):
            index = gpu.get("index")
            index = int(index) if isinstance(index, (int, float)) else position
            self.gpus.setdefault(index, str(gpu.get("name") or ""))
            push(gpu_key(index, "util"), gpu.get("util_percent"))
            push(gpu_key(index, "mem"), share(gpu.get("mem_used_mib"), gpu.get("mem_total_mib")))
            push(gpu_key(index, "temp"), gpu.get("temp_c"))
            push(gpu_key(index, "power"), gpu.get("power_w"))

    # -- derived views ------------------------------------------------------------------------

    @property
    def classes(self) -> list[str]:
        for ev in [self.test, *reversed(self.history)]:
            if ev and isinstance(ev.get("per_class"), dict):
                return list(ev["per_class"])
        return []

    def best_confusion(self) -> tuple[str, list[list[int]]] | None:
        """(title, matrix): the test split's (evaluated with the best checkpoint) once
        there, else the best validation epoch's."""
        if self.test and self.test.get("confusion"):
            return f"test, best epoch {self.test.get('epoch')}", self.test["confusion"]
        best = [ev for ev in self.history if ev.get("epoch") == self.best_epoch]
        chosen = best[-1] if best else (self.history[-1] if self.history else None)
        if chosen and chosen.get("confusion"):
            return f"val, epoch {chosen.get('epoch')}", chosen["confusion"]
        return None

    def collapsed_classes(self) -> list[tuple[str, float, float]]:
        """(class, best earlier recall, recall now) for classes whose recall collapsed."""
        if len(self.history) < 2:
            return []
        last = self.history[-1].get("per_class") or {}
        out = []
        for name, stats in last.items():
            now = stats.get("recall")
            if not isinstance(now, (int, float)) or stats.get("support", 1) == 0:
                continue
            before = [
                (ev.get("per_class") or {}).get(name, {}).get("recall") for ev in self.history[:-1]
            ]
            peak = max((r for r in before if isinstance(r, (int, float))), default=None)
            if peak is not None and peak >= COLLAPSE_FROM and now <= COLLAPSE_RECALL:
                out.append((name, float(peak), float(now)))
        return out

    def input_bound_share(self) -> float | None:
        if not self.steps_timing:
            return None
        data = sum(d for d, _ in self.steps_timing)
        total = data + sum(c for _, c in self.steps_timing)
        return data / total if total > 0 else None

    def warnings(self) -> list[str]:
        out = list(self.run_warnings)  # the run's own (faces not found...), then the view's
        out += [
            f"recall of '{name}' collapsed: {now:.2f} now, was {peak:.2f}"
            for name, peak, now in self.collapsed_classes()
        ]
        share = self.input_bound_share()
        if share is not None and share > INPUT_BOUND_SHARE:
            out.append(
                f"input-bound: {share:.0%} of step time waits for data "
                "(more loader workers, or cache decoded inputs)"
            )
        return out

    def progress(self) -> tuple[int, int]:
        """(done, total) optimizer steps over the whole run, for the progress bar."""
        if not (self.epochs and self.steps):
            return 0, 0
        done = max(0, self.epoch - 1) * self.steps + self.step
        return min(done, self.epochs * self.steps), self.epochs * self.steps

    def eta_text(self, now: float | None = None) -> str:
        est = self.eta.estimate(now if now is not None else time.time())
        text = f"ETA {format_duration(est.to_max_epochs)}"
        if est.earliest_stop_epoch is not None and est.earliest_stop_epoch < (est.epochs or 0):
            text += f" (early stop from epoch {est.earliest_stop_epoch}: "
            text += f"{format_duration(est.to_earliest_stop)})"
        return text
