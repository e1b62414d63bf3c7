"""One run: header, progress, warnings and tabs (log, metrics, curves, system, confusion,
config), fed by ``remote.watch.follow`` in a thread worker.

The worker only appends items to a queue (the watcher's items, and the two of its own
below); a 4 Hz timer on the UI thread drains
it into :class:`RunState` and repaints what changed. A burst of thousands of log
lines or step events therefore costs one repaint, not thousands (the coalescing
toolong does for log files).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.highlighter import Highlighter
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    Log,
    ProgressBar,
    Sparkline,
    Static,
    TabbedContent,
    TabPane,
)
from textual.worker import get_current_worker

from emoconsole.dashboard.base import DashboardScreen
from emoconsole.dashboard.cost import RunCost, cost_text
from emoconsole.dashboard.dialogs import ConfirmDialog
from emoconsole.dashboard.run_actions import RunActions
from emoconsole.dashboard.state import (
    GPU_SERIES,
    HOST_SERIES,
    LEVELS,
    LogFilter,
    RunState,
    gpu_key,
    level_token,
    line_level,
)
from emoconsole.dashboard.trackers import missing_trackers, trackers_text
from emoconsole.monitor_view import status_style, system_line
from remote.watch import Backoff, EventItem, HeartbeatItem, LogItem, WatchItem

LOG_MAX_LINES = 20_000
WAIT_RUN_S = 120.0  # a run's process imports torch before it writes run.json
DRAIN_S = 0.25
SERIES_PAINT_S = 1.0  # the Curves grid repaints at most this often
SERIES_MAX_CHARTS = 24
# A drain works this long at most, then lets key presses through and goes on after
# them: at 10,000 events/s one tick's backlog takes longer than a key may wait.
DRAIN_SLICE_S = 0.012
# run.json is read again at most this often while a tracker the run turns on has not
# recorded its ids (the header's W&B/MLflow line): a replay of many epochs costs one read.
MANIFEST_REREAD_S = 2.0
# Events after which run.json may have changed (trackers record theirs during the run).
MANIFEST_EVENTS = frozenset({"status", "epoch_start", "val"})


@dataclass(frozen=True)
class WaitingForRun:
    """The follow worker waits for the run's run.json (a run still starting); ``run_dir``
    None: the wait is over."""

    run_dir: str | None


@dataclass(frozen=True)
class ManifestRead:
    """run.json as read once before following: the config tab, the model's name."""

    manifest: dict[str, Any]
    run_dir: str


@dataclass(frozen=True)
class QueuePlace:
    """The run waits in its host's queue at ``place`` (1 starts next); None: it left the
    queue, ``started`` saying whether it started or was taken out (stopped)."""

    place: int | None
    started: bool = False


@dataclass(frozen=True)
class IsExperiment:
    """What was opened is an experiment (``deploy --sweep``; its experiment.json, no
    run.json): nothing to follow here, its runs are the table's ``<exp-id>:<run-dir>``."""

    exp_id: str


# What the follow worker queues for the drain: the watcher's items and its own.
@dataclass(frozen=True)
class EvaluationsRead:
    """``hostctl evaluations``' answer, read once when the run opens: the run scored on
    other corpora or splits (``python -m trainers evaluate``), beside its own test."""

    answer: dict[str, Any]


QueueItem = WatchItem | WaitingForRun | ManifestRead | EvaluationsRead | QueuePlace | IsExperiment


class RunScreen(RunActions, DashboardScreen):
    BINDINGS = [  # noqa: RUF012
        Binding("escape,b", "back", "Back"),
        Binding("f", "toggle_follow", "Pause/follow log"),
        Binding("slash", "search_log", "Search log"),
        Binding("v", "cycle_level", "Log level"),
        Binding("x", "stop_run", "Stop run"),
        Binding("r", "resume_run", "Resume"),
        Binding("d", "download", "Download"),
        Binding("t", "tensorboard", "TensorBoard"),
        Binding("l", "tab('log')", "Log", show=False),
        Binding("m", "tab('metrics')", "Metrics", show=False),
        Binding("c", "tab('curves')", "Curves", show=False),
        Binding("s", "tab('system')", "System", show=False),
        Binding("z", "tab('confusion')", "Confusion", show=False),
        Binding("g", "tab('config')", "Config", show=False),
        Binding("y", "log_scale", "Log scale (curves)", show=False),
    ]

    def __init__(
        self,
        host: str,
        run_id: str,
        *,
        hosts: dict[str, Any] | None = None,
        interval: float | None = None,
        wait_run_s: float = WAIT_RUN_S,
    ) -> None:
        """``wait_run_s``: how long to wait for a run directory that is not there yet
        (a run still starting) before saying that there is no such run."""
        super().__init__()
        self.host_name, self.run_id = host, run_id
        self.hosts_override = hosts
        self.interval = interval
        self.wait_run_s = wait_run_s
        # The run's place in its host's queue while it waits (set by the drain): the
        # stop key then takes it out of the queue instead of stopping a process.
        self.queued_place: int | None = None
        # Where the stream got to (written by the follow worker): a follow restarted
        # after a resume continues from here, nothing shown twice.
        self.after_seq = 0
        self.log_offset = 0
        self.cost: RunCost | None = None
        self._price: tuple[float, float] | None = None  # (USD/h, uptime s at the time)
        self._spans: tuple[Any, float] | None = None  # (CostSoFar, monotonic at the time)
        self.state = RunState(run=run_id, host=host, log_lines=1)
        self.queue: deque[QueueItem] = deque()
        self.lock = threading.Lock()
        self.following = True
        self.log_filter = LogFilter()
        self.all_log: deque[tuple[int, str]] = deque(maxlen=LOG_MAX_LINES)
        self._last_level = LEVELS.index("INFO")
        self._painted = -1
        self._epochs_shown = 0
        self._rows_rewrites = 0  # the state's runlog.rewrites the epochs table shows
        self._shown: dict[str, str] = {}  # what each Static shows, for _set
        self._gpu_rows: set[int] = set()  # the GPUs the System tab has rows for
        # What _paint last put on screen, so that each part is redrawn only when it changed.
        self._crash_written = False
        self._sys_shown: dict[str, Any] | None = None
        self._confusion_shown: tuple[str, list[list[int]]] | None = None
        self._config_shown = False
        self._last_paint = 0.0
        # The Curves tab's grid: one chart per series matching the filter.
        self.series_filter = ""
        self.series_log = False
        self.series_plots: dict[str, Any] = {}  # series name -> its PlotextPlot
        self._series_painted = (-1, "", False)  # (scalars.version, filter, log) on screen
        self._series_paint_at = 0.0
        self._series_timer = False  # a throttled repaint is scheduled

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="run-head"):
            yield Static(id="run-header")
            yield ProgressBar(id="run-progress", show_eta=False)
            yield Static(id="run-warnings")
        with TabbedContent(initial="log", id="run-tabs"):
            with TabPane("Log", id="log"):
                yield Input(placeholder="search the log (Enter: back to the log)", id="log-search")
                log = Log(id="run-log", max_lines=LOG_MAX_LINES, highlight=True)
                log.highlighter = LevelHighlighter()
                yield log
            with TabPane("Metrics", id="metrics"), VerticalScroll():
                yield DataTable(id="epochs", zebra_stripes=True, cursor_type="row")
                yield Static("per-class recall / F1 by epoch", classes="section")
                yield DataTable(id="per-class", zebra_stripes=True)
                yield Static("evaluations on other data", classes="section", id="evals-title")
                yield DataTable(id="evaluations", zebra_stripes=True)
            with TabPane("Curves", id="curves"), Vertical():
                with Horizontal(id="curves-main"):
                    yield from self._plots()
                with Horizontal(id="series-bar"):
                    yield Input(
                        placeholder="filter series (regex or text, e.g. recall|lr); y: log scale",
                        id="series-filter",
                    )
                    yield Static(id="series-info")
                with VerticalScroll(id="series-scroll"):
                    yield Grid(id="series-grid")
            with TabPane("System", id="system"), VerticalScroll(id="system-pane"):
                yield Static(id="sys-line")
                for key, label in HOST_SERIES:
                    yield from spark_row(key, label)
                # Replaced by one row per GPU once a sample names one (see _paint_gpus).
                yield Static("GPUs: no system sample yet", id="gpu-note", classes="spark-label")
            with TabPane("Confusion", id="confusion"), VerticalScroll():
                yield Static(id="confusion-grid")
            with TabPane("Config", id="config"), VerticalScroll():
                yield Static(id="config-text")
        yield Footer()

    def _plots(self) -> ComposeResult:
        # Imported here: plotext is only needed once a run is opened, not to paint the table.
        from textual_plotext import PlotextPlot

        yield PlotextPlot(id="plot-loss")
        yield PlotextPlot(id="plot-scores")

    def on_mount(self) -> None:
        self.title = f"{self.run_id}"
        self.sub_title = f"on {self.host_name}"
        epochs = self.query_one("#epochs", DataTable)
        for name in ("epoch", "train loss", "val loss", "acc", "UAR", "macro F1", "w F1", "s"):
            epochs.add_column(name, key=name)
        self._set("#run-header", self._header_text())
        self.query_one("#log-search", Input).display = False
        for widget in ("#evals-title", "#evaluations"):
            self.query_one(widget).display = False  # until the run has one
        self.set_interval(DRAIN_S, self.drain)
        self.follow_run()
        self.price_worker()

    # -- the worker ---------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="follow", name="follow run", exit_on_error=False)
    def follow_run(self) -> None:
        """Resolve the run directory, read run.json once (the config tab), then follow the
        stream until the run ends or the screen goes. Cancellation is seen at least once
        per watcher heartbeat (every ``interval``)."""
        from remote.hosts import get_host
        from remote.layout import resolve_layout
        from remote.watch import follow

        worker = get_current_worker()
        host = get_host(self.host_name, self.hosts_override)
        try:
            run_dir = self.run_id if "/" in self.run_id else None
            if run_dir is None:
                run_dir = resolve_layout(host).run_dir(self.run_id)
            if not self._wait_in_queue(host, run_dir) or not self._wait_for_run(host, run_dir):
                return
            manifest = self._read_manifest(host, run_dir)
            self._read_evaluations(host, run_dir)
            read_at = time.monotonic()
            interval = self.interval or 1.0
            items = follow(
                host,
                run_dir,
                interval=interval,
                backoff=Backoff(max_downtime=None),  # a dashboard waits for the host forever
                sleep=worker.cancelled_event.wait,
            )
            try:
                for item in items:
                    if worker.is_cancelled:
                        return
                    if isinstance(item, EventItem):
                        self.after_seq = max(self.after_seq, item.seq)
                        if (
                            item.type in MANIFEST_EVENTS
                            and missing_trackers(manifest)
                            and time.monotonic() - read_at >= MANIFEST_REREAD_S
                        ):
                            manifest = self._read_manifest(host, run_dir) or manifest
                            read_at = time.monotonic()
                    elif isinstance(item, LogItem):
                        self.log_offset = max(self.log_offset, item.offset)
                    if not isinstance(item, HeartbeatItem):
                        self._put(item)
            finally:
                items.close()
        finally:
            host.close()

    def _read_manifest(self, host: Any, run_dir: str) -> dict[str, Any] | None:
        """run.json, queued for the drain (the config tab, the trackers' line); None when
        it cannot be read or is half-written: the stream still works without it."""
        answer = host.run(["cat", f"{run_dir}/run.json"], timeout=30)
        if not answer.ok:
            return None
        try:
            manifest = json.loads(answer.stdout)
        except ValueError:
            return None
        if not isinstance(manifest, dict):
            return None
        self._put(ManifestRead(manifest, run_dir))
        return manifest

    def _read_evaluations(self, host: Any, run_dir: str) -> None:
        """The run's evaluations, if any. Code deployed before ``hostctl evaluations``
        existed answers with a usage error: then there are none to show."""
        from remote.deploy import read_evaluations
        from remote.errors import RemoteError

        try:
            answer = read_evaluations(host, run_dir)
        except RemoteError:
            return
        if answer.get("evaluations"):
            self._put(EvaluationsRead(answer))

    def _wait_in_queue(self, host: Any, run_dir: str) -> bool:
        """While the run waits in its host's queue, its place as it changes (the host's
        listing, as the runs table and ``emoconsole monitor`` read it). False: nothing
        to follow (cancelled, or the run left the queue without starting)."""
        from remote.queue_wait import LeftQueueError, queue_places

        if host.run(["test", "-f", f"{run_dir}/run.json"], timeout=30).ok:
            return True  # a run that started: not worth a listing (a Python start on the host)
        worker = get_current_worker()
        waited = False
        try:
            for place in queue_places(
                host, self.run_id, interval=self.interval or 1.0, sleep=worker.cancelled_event.wait
            ):
                waited = True
                self._put(QueuePlace(place))
        except LeftQueueError:
            self._put(QueuePlace(None, started=False))
            return False
        if worker.is_cancelled:
            return False
        if waited:
            self._put(QueuePlace(None, started=True))
        return True

    def _wait_for_run(self, host: Any, run_dir: str) -> bool:
        """Until run.json exists (a run opened while its process still imports torch),
        at most ``wait_run_s``; the header says what it waits for. False: cancelled,
        or what was opened is an experiment (a sweep that waited in the queue writes
        experiment.json, never a run.json). After the wait the watcher is asked anyway:
        it names what is missing."""
        from trainers.rundir import EXPERIMENT_JSON

        worker = get_current_worker()
        deadline = time.monotonic() + self.wait_run_s
        probe = ["test", "-f", f"{run_dir}/run.json"]
        waited = False
        while not host.run(probe, timeout=30).ok and time.monotonic() < deadline:
            if host.run(["test", "-f", f"{run_dir}/{EXPERIMENT_JSON}"], timeout=30).ok:
                self._put(IsExperiment(self.run_id))
                return False
            if not waited:
                waited = True
                self._put(WaitingForRun(run_dir))
            if worker.cancelled_event.wait(min(1.0, self.interval or 1.0)):
                return False
        if waited:
            self._put(WaitingForRun(None))
        return True

    def _put(self, item: QueueItem) -> None:
        with self.lock:
            self.queue.append(item)

    # -- painting -----------------------------------------------------------------------------

    def drain(self) -> None:
        slice_end = time.perf_counter() + DRAIN_SLICE_S
        more = True
        while more and time.perf_counter() < slice_end:
            with self.lock:
                items = [self.queue.popleft() for _ in range(min(256, len(self.queue)))]
                more = bool(self.queue)
            self._apply(items)
        self._add_log_lines(self.state.take_log_lines())
        if more:
            self.call_later(self.drain)  # after the input already waiting
            if time.perf_counter() - self._last_paint < DRAIN_S:
                return
        self._last_paint = time.perf_counter()
        # The header's ETA counts down between events, so it is repainted on every tick.
        self._set("#run-header", self._header_text())
        if self.state.version == self._painted:
            return
        self._painted = self.state.version
        self._paint()

    def _apply(self, items: list[QueueItem]) -> None:
        for item in items:
            if isinstance(item, WaitingForRun):
                self.state.status = (
                    f"waiting for run {item.run_dir} ..." if item.run_dir else "waiting"
                )
                self.state.version += 1
            elif isinstance(item, ManifestRead):
                self.state.config = item.manifest
                self.state.run_dir = item.run_dir
                if not self.state.model:
                    self.state.model = str(item.manifest.get("model") or "")
                self.state.version += 1
            elif isinstance(item, EvaluationsRead):
                self._paint_evaluations(item.answer)
            elif isinstance(item, IsExperiment):
                self.state.status = (
                    f"an experiment, started: open one of its runs ({item.exp_id}:<run-dir>) "
                    "from the runs table"
                )
                self.state.version += 1
            elif isinstance(item, QueuePlace):
                self.queued_place = item.place
                if item.place is not None:
                    self.state.status = (
                        f"queued on {self.host_name}, place {item.place}: waiting for a slot"
                    )
                elif item.started:
                    self.state.status = "starting"
                else:
                    self.state.status = "removed from the queue: it never started"
                self.state.version += 1
            else:
                self.state.add(item)

    def _paint_evaluations(self, answer: dict[str, Any]) -> None:
        """One row per evaluation under the run's own test row (and each one's majority
        floor), as summary.md lays them out: a cross-corpus figure means little alone."""
        table = self.query_one("#evaluations", DataTable)
        table.clear(columns=True)
        for name in ("on", "data", "n", "acc", "macro F1", "w F1", "UAR", "floor acc", "excluded"):
            table.add_column(name, key=name)

        def cells(metrics: dict[str, Any] | None) -> list[str]:
            metrics = metrics or {}
            return [
                "-" if metrics.get(k) is None else f"{metrics[k]:.3f}"
                for k in ("accuracy", "macro_f1", "weighted_f1", "uar")
            ]

        def floor(value: dict[str, Any] | None) -> str:
            return "-" if not value or value.get("accuracy") is None else f"{value['accuracy']:.3f}"

        test = answer.get("test")
        if test:
            n = sum(int(v.get("support", 0)) for v in (test.get("per_class") or {}).values())
            table.add_row("own test", "its test split", str(n or "-"), *cells(test),
                          floor(answer.get("majority_floor")), "-")  # fmt: skip
        for ev in answer.get("evaluations") or []:
            data = ev.get("data") or {}
            excluded = ev.get("excluded") or {}
            dropped = sum((excluded.get("not_learned") or {}).values())
            missing = len(excluded.get("not_in_corpus") or [])
            table.add_row(
                str(ev.get("name")),
                f"{data.get('layout', '?')} {data.get('split', '?')}",
                str(ev.get("n", "-")),
                *cells(ev.get("metrics")),
                floor(ev.get("majority_floor")),
                f"{dropped} rec., {missing} classes",
            )
        for widget in ("#evals-title", "#evaluations"):
            self.query_one(widget).display = True

    def _set(self, selector: str, content: Text | str) -> None:
        """Update a Static only when its text changed, and lay the screen out again only
        when its height did: at 10,000 events/s every update is a full relayout, and
        relayouts are what delayed key presses while a run streamed."""
        plain = content.plain if isinstance(content, Text) else content
        shown = self._shown.get(selector)
        if shown == plain:
            return
        self._shown[selector] = plain
        widget = self.query_one(selector, Static)
        width = widget.content_size.width

        def rows(text: str) -> tuple[int, bool]:
            lines = text.split("\n")
            return len(lines), max(len(line) for line in lines) < width

        same_height = shown is not None and rows(shown) == rows(plain) and rows(plain)[1]
        widget.update(content, layout=not same_height)

    def _header_text(self) -> Text:
        s = self.state
        text = Text()
        text.append(f"{s.run}", style="bold")
        text.append(f"  {s.model or '?'} on {s.host}  ")
        text.append(s.status, style=status_style(s.status))
        recoveries = (s.config or {}).get("recoveries")
        if recoveries:  # a managed run brought back on a new instance (remote.recovery)
            text.append(f" (recovered {recoveries}x)", style="bold magenta")
        conn_style = "green" if s.connection.startswith("live") else "bold yellow"
        text.append("  connection: ")
        text.append(s.connection, style=conn_style)
        text.append(f"  epoch {s.epoch}/{s.epochs or '?'}  step {s.step}/{s.steps or '?'}")
        if s.loss is not None:
            text.append(f"  loss {s.loss:.4f}")
        text.append(f"  {s.eta_text()}")
        if s.best is not None:
            text.append(f"  best {s.monitor_metric} {s.best:.4f} @ {s.best_epoch}", style="cyan")
        text.append("  log: " + ("following" if self.following else "paused"), style="dim")
        if self.log_filter.active:
            text.append(f" (showing {self.log_filter.describe()})", style="bold magenta")
        tracked = trackers_text(s.config, s.run_dir)
        if tracked:
            text.append(f"\n{tracked}", style="cyan")
        cost = self._cost()
        if cost is not None:
            text.append(f"\n{cost_text(cost)}", style="bold")
        return text

    def _add_log_lines(self, lines: list[str]) -> None:
        """Every line is kept (bounded) so a changed filter can show old lines again;
        only the lines the filter keeps reach the widget."""
        if not lines:
            return
        shown = []
        for line in lines:
            self._last_level = line_level(line, self._last_level)
            self.all_log.append((self._last_level, line))
            if self.log_filter.keeps(self._last_level, line):
                shown.append(line)
        if shown:
            self.query_one("#run-log", Log).write_lines(shown, scroll_end=self.following)

    def _refilter_log(self) -> None:
        log = self.query_one("#run-log", Log)
        log.clear()
        log.write_lines(
            [line for level, line in self.all_log if self.log_filter.keeps(level, line)],
            scroll_end=self.following,
        )
        self._set("#run-header", self._header_text())

    def _paint(self) -> None:
        s = self.state
        done, total = s.progress()
        bar = self.query_one("#run-progress", ProgressBar)
        bar.update(total=total or None, progress=done)
        warnings = s.warnings()
        if s.crashed_log:
            warnings.insert(0, "the process is gone without a final status: crashed")
        self._set(
            "#run-warnings",
            Text("\n".join(f"⚠ {w}" for w in warnings), style="bold yellow") if warnings else "",
        )
        if s.crashed_log and not self._crash_written:
            self._crash_written = True
            self._add_log_lines(["ERROR --- last log lines before the crash ---", *s.crashed_log])
        self._paint_epochs()
        self._paint_series()
        if s.sys is not None and s.sys is not self._sys_shown:
            # A new sample comes every few seconds; events, many times a second.
            self._sys_shown = s.sys
            self._set("#sys-line", system_line(s.sys))
            for key, label in HOST_SERIES:
                self._paint_spark(key, label)
            self._paint_gpus()
        confusion = s.best_confusion()
        if confusion is not None and confusion != self._confusion_shown:
            self._confusion_shown = confusion
            title, matrix = confusion
            self.query_one("#confusion-grid", Static).update(
                confusion_table(title, s.classes, matrix)
            )
        if s.config is not None and not self._config_shown:
            self._config_shown = True
            cfg = s.config.get("config", s.config)
            self.query_one("#config-text", Static).update(
                Text(json.dumps(cfg, indent=2, default=str))
            )

    def _paint_spark(self, key: str, label: str) -> None:
        data = list(self.state.sys_history.get(key, ()))
        self.query_one(f"#spark-{key}", Sparkline).data = data
        last = f"{data[-1]:.0f}" if data else "n/a"
        self._set(f"#label-{key}", f"{label}: {last}")

    def _paint_gpus(self) -> None:
        """What the host has: a title and four sparklines per GPU any sample named, or
        one line saying there is none (not four flat "n/a" sparklines)."""
        s = self.state
        if not s.gpus:
            self._set("#gpu-note", f"no GPU on {s.host} (nvidia-smi absent or not answering)")
            return
        new = [index for index in s.gpus if index not in self._gpu_rows]
        if new:
            self.query_one("#gpu-note", Static).display = False
            rows: list[Widget] = []
            for index in new:
                name = s.gpus[index]
                rows.append(Static(f"GPU {index}" + (f": {name}" if name else ""),
                                   classes="section", id=f"gpu{index}-title"))  # fmt: skip
                for key, label in GPU_SERIES:
                    rows.extend(spark_row(gpu_key(index, key), label))
            # Registered at once (queryable below); laid out on the next refresh.
            self.query_one("#system-pane").mount_all(rows)
            self._gpu_rows.update(new)
        for index in s.gpus:
            for key, label in GPU_SERIES:
                self._paint_spark(gpu_key(index, key), label)

    def _paint_epochs(self) -> None:
        s = self.state
        table = self.query_one("#epochs", DataTable)
        if s.runlog.rewrites != self._rows_rewrites:
            # A resume dropped or replaced epochs already painted: paint them all again.
            self._rows_rewrites = s.runlog.rewrites
            table.clear()
            self._epochs_shown = 0
        elif len(s.history) == self._epochs_shown:
            return
        for ev in s.history[self._epochs_shown :]:
            table.add_row(
                str(ev.get("epoch")) + (" *" if ev.get("is_best") else ""),
                *(_f(ev.get(k)) for k in ("train_loss", "loss", "accuracy", "uar",
                                           "macro_f1", "weighted_f1")),
                _f(ev.get("epoch_s"), 1),
            )  # fmt: skip
        self._epochs_shown = len(s.history)
        per_class = self.query_one("#per-class", DataTable)
        classes = s.classes
        if classes and not per_class.columns:
            per_class.add_column("epoch", key="epoch")
            for name in classes:
                per_class.add_column(f"{name} R/F1", key=name)
        if classes:
            per_class.clear()
            for ev in s.history:
                pc = ev.get("per_class") or {}
                per_class.add_row(
                    str(ev.get("epoch")),
                    *(
                        f"{_f(pc.get(c, {}).get('recall'), 2)}/{_f(pc.get(c, {}).get('f1'), 2)}"
                        for c in classes
                    ),
                )
        self._plot_curves()

    def _plot_curves(self) -> None:
        from textual_plotext import PlotextPlot

        from emoconsole.dashboard.plots import draw, metric_series

        history = self.state.history
        draw(
            self.query_one("#plot-loss", PlotextPlot),
            "loss",
            [metric_series(history, "train_loss", "train"), metric_series(history, "loss", "val")],
        )
        draw(
            self.query_one("#plot-scores", PlotextPlot),
            "val scores",
            [metric_series(history, key, label) for key, label in
             (("accuracy", "acc"), ("uar", "UAR"), ("macro_f1", "macro F1"),
              ("weighted_f1", "w F1"))],
        )  # fmt: skip

    def _paint_series(self, *, now: bool = False) -> None:
        """The grid of every series matching the filter, while the Curves tab shows;
        at most once a second (step events come many times a second)."""
        key = (self.state.scalars.version, self.series_filter, self.series_log)
        if key == self._series_painted:
            return
        if self.query_one("#run-tabs", TabbedContent).active != "curves":
            return
        if not now and time.monotonic() - self._series_paint_at < SERIES_PAINT_S:
            if not self._series_timer:  # one pending repaint, however many paints come
                self._series_timer = True
                self.set_timer(SERIES_PAINT_S, self._series_timer_fired)
            return
        from textual_plotext import PlotextPlot

        self._series_painted, self._series_paint_at = key, time.monotonic()
        scalars = self.state.scalars
        names = scalars.names(self.series_filter)
        shown = names[:SERIES_MAX_CHARTS]
        grid = self.query_one("#series-grid", Grid)
        if list(self.series_plots) != shown:
            grid.remove_children()
            self.series_plots = {name: PlotextPlot(classes="series-plot") for name in shown}
            grid.mount_all(self.series_plots.values())
        for name, plot in self.series_plots.items():
            one = scalars.series[name]
            plt = plot.plt
            plt.clear_data()
            plt.clear_figure()
            log = self.series_log and bool(one.ys) and min(one.ys) > 0
            plt.title(name + (" (log)" if log else ""))
            plt.yscale("log" if log else "linear")
            plt.plot(one.xs, one.ys, marker="braille")
            plot.refresh()
        info = f"{len(names)} of {len(scalars.series)} series"
        if len(names) > len(shown):
            info += f", first {len(shown)} shown: narrow the filter"
        self._set("#series-info", info + (", log scale" if self.series_log else ""))

    def _series_timer_fired(self) -> None:
        self._series_timer = False
        self._paint_series()

    @on(TabbedContent.TabActivated, "#run-tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "curves":
            self._paint_series(now=True)

    @on(Input.Changed, "#series-filter")
    def _series_filter_changed(self, event: Input.Changed) -> None:
        self.series_filter = event.value.strip()
        self._paint_series(now=True)

    def action_log_scale(self) -> None:
        """Toggle the Curves grid's y axis between linear and log (positive series)."""
        self.series_log = not self.series_log
        self._paint_series(now=True)

    # -- actions ------------------------------------------------------------------------------

    @on(Input.Changed, "#log-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.log_filter.text = event.value
        self._refilter_log()

    @on(Input.Submitted, "#log-search")
    def _search_done(self, _event: Input.Submitted) -> None:
        self.query_one("#run-log", Log).focus()

    def action_search_log(self) -> None:
        self.action_tab("log")
        box = self.query_one("#log-search", Input)
        box.display = True
        box.focus()

    def action_cycle_level(self) -> None:
        """all -> INFO+ -> WARNING+ -> ERROR -> all (DEBUG is the floor)."""
        self.log_filter.min_level = (self.log_filter.min_level + 1) % len(LEVELS)
        self._refilter_log()
        self.notify(f"log: {self.log_filter.describe()}")

    def action_back(self) -> None:
        box = self.query_one("#log-search", Input)
        if box.has_focus or box.value:
            # Escape in the search box clears the search before it leaves the run.
            box.value = ""
            box.display = False
            self.query_one("#run-log", Log).focus()
            return
        self.workers.cancel_group(self, "follow")
        self.workers.cancel_group(self, "price")
        self.workers.cancel_group(self, "resume")
        self.app.pop_screen()

    def action_toggle_follow(self) -> None:
        self.following = not self.following
        log = self.query_one("#run-log", Log)
        log.auto_scroll = self.following
        if self.following:
            log.scroll_end(animate=False)
        # The header says "log: following/paused"; no toast: mounting one re-arranges
        # the screen, which doubled the time from this key to the screen while streaming.
        self._set("#run-header", self._header_text())

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_stop_run(self) -> None:
        """Stop the run; a run still waiting in its host's queue is taken out of it
        (hostctl's stop does either, by what the run is when it gets there)."""
        queued = self.queued_place is not None

        def decided(yes: bool | None) -> None:
            if yes:
                doing = "removing" if queued else "stopping"
                self.notify(f"{doing} {self.run_id} on {self.host_name}...")
                self.stop_worker()

        question = (
            f"Remove {self.run_id} from the queue on {self.host_name}? It has not started."
            if queued
            else f"Stop {self.run_id} on {self.host_name}? "
            "It saves a checkpoint and can be resumed."
        )
        self.app.push_screen(ConfirmDialog(question), decided)

    @work(thread=True, group="stop", name="stop run", exit_on_error=False)
    def stop_worker(self) -> None:
        from remote.deploy import stop_run
        from remote.hosts import get_host

        host = get_host(self.host_name, self.hosts_override)
        try:
            answer = stop_run(host, self.run_id, grace=60.0)
        finally:
            host.close()
        if answer.get("was_queued"):
            msg = f"{self.run_id}: removed from the queue on {self.host_name}; it never started"
        elif answer.get("was_running"):
            msg = f"{self.run_id}: stopped (status {answer.get('status')})"
        else:
            msg = f"{self.run_id} was not running (status {answer.get('status')})"
        self.app.call_from_thread(self.notify, msg)


class LevelHighlighter(Highlighter):
    """Colours a line's level word (WARNING, ERROR and their aliases) and nothing else.
    Rich's ReprHighlighter (Log's default) styles every number of every line drawn: at
    thousands of lines a second those styles were most of the objects the garbage
    collector walked, and its pauses held up key presses (bench/dashboard.py)."""

    STYLES: ClassVar[dict[int, str]] = {
        LEVELS.index("WARNING"): "yellow",
        LEVELS.index("ERROR"): "bold red",
    }

    def highlight(self, text: Text) -> None:
        found = level_token(text.plain)
        if found is not None and found[0] in self.STYLES:
            level, start, end = found
            text.stylize(self.STYLES[level], start, end)


def spark_row(key: str, label: str) -> list[Widget]:
    """A series' label (its last value is added when painted) and its sparkline."""
    return [
        Static(label, classes="spark-label", id=f"label-{key}"),
        Sparkline([], id=f"spark-{key}"),
    ]


def confusion_table(title: str, classes: list[str], matrix: list[list[int]]) -> Table:
    """Rows are true classes, columns predictions; a cell's shade is its share of its row,
    so a minority class's errors are as visible as a majority's."""
    names = classes if len(classes) == len(matrix) else [str(i) for i in range(len(matrix))]
    table = Table(title=f"confusion matrix ({title}); rows true, columns predicted")
    table.add_column("true \\ pred", style="bold")
    for name in names:
        table.add_column(name[:8], justify="right")
    for i, (name, row) in enumerate(zip(names, matrix, strict=False)):
        total = sum(row) or 1
        cells = []
        for j, count in enumerate(row):
            level = int(40 + 180 * count / total)
            colour = f"rgb(0,{level},0)" if i == j else f"rgb({level},0,0)"
            cells.append(Text(str(count), style=f"on {colour}" if count else "dim"))
        table.add_row(name, *cells)
    return table


def _f(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"
