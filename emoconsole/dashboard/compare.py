"""Runs side by side: their validation curves on the same charts, the comparison table
(one row per configuration, mean ± std over seeds and folds) and what each run reached.
Opened from the runs table with runs marked (or one run of an experiment).

Only the val events and resumes are read (``grep`` on the host): a long run's
events.jsonl is mostly step events, and the charts need one point per epoch, as
:class:`trainers.runlog.RunLog` keeps them (an epoch repeated after a resume once).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import get_current_worker

from emoconsole.comparison import (
    CompareError,
    RunRecord,
    Table,
    build_table,
    display_rows,
    footnotes,
    header,
    load_experiment,
    load_run,
)
from emoconsole.dashboard.base import DashboardScreen
from trainers.runlog import RunLog

METRICS = (("loss", "val loss"), ("macro_f1", "val macro F1"), ("accuracy", "val accuracy"))


def read_val_events(host: Any, run: str) -> list[dict[str, Any]]:
    """The run's validation events (split "val"), one per epoch in epoch order as the
    run ended up (resumes applied), read on its host."""
    from remote.errors import RemoteError
    from remote.layout import resolve_layout

    run_dir = resolve_layout(host).run_dir(run)
    # The engine writes compact JSON (no spaces), so this is every val event and resume
    # (which drops the epochs after its checkpoint) and few others.
    result = host.run(
        ["grep", "-F", "-e", '"type":"val"', "-e", '"status":"resumed"', f"{run_dir}/events.jsonl"],
        timeout=120,
    )
    if result.exit_code not in (0, 1):  # 1: no val event yet; 2: no such file
        raise RemoteError(f"{host.name}: cannot read {run_dir}/events.jsonl: {result.tail(3)}")
    log = RunLog()
    for line in result.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:  # a line being written as we read
            continue
        log.add(event)
    return log.rows


class CompareScreen(DashboardScreen):
    """Any number of runs: their val curves overlaid, one line per run, and the
    comparison table (:mod:`emoconsole.comparison`: one row per configuration, test
    scores as mean ± std over seeds and folds) from their summary.json files.

    ``e`` widens each run of an experiment to its whole experiment (experiment.json in
    the run directory's parent, where ``python -m trainers sweep`` puts its runs);
    with one run given, that is the default."""

    BINDINGS = [  # noqa: RUF012
        Binding("escape,b", "back", "Back"),
        Binding("e", "experiments", "Whole experiments"),
    ]

    def __init__(
        self,
        runs: list[tuple[str, str]],
        *,
        hosts: dict[str, Any] | None = None,
        experiments: bool | None = None,
    ) -> None:
        """``runs``: (host, run id or path) of each run to compare, in legend order.
        ``experiments``: widen runs to their experiments (default: when one run is given)."""
        super().__init__()
        self.runs = runs
        self.hosts_override = hosts
        self.experiments = len(runs) == 1 if experiments is None else experiments
        self.histories: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.records: list[RunRecord] = []  # the runs compared, experiments widened
        self.table: Table | None = None

    def compose(self) -> ComposeResult:
        from textual_plotext import PlotextPlot

        yield Header()
        yield Static(id="compare-title")
        with Horizontal(id="compare-plots"):
            for key, _title in METRICS[:2]:
                yield PlotextPlot(id=f"compare-{key}")
        yield DataTable(id="compare-summary", cursor_type="row")
        yield Static(id="compare-notes")
        yield DataTable(id="compare-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "compare runs"
        self._title()
        table = self.query_one("#compare-table", DataTable)
        for name in ("run", "host", "epochs", "best macro F1", "@ epoch", "last acc", "last loss"):
            table.add_column(name, key=name)
        self.load()

    def _title(self) -> None:
        title = Text("comparing ")
        shown = [(r.host, r.run_id) for r in self.records] or self.runs
        if len(shown) <= 4:
            for i, (host, run) in enumerate(shown):
                title.append(("" if i == 0 else "  vs  ") + f"{run} ({host})", style="bold")
        else:
            title.append(f"{len(shown)} runs", style="bold")
        if self.table is not None:
            title.append(f", {len(self.table.rows)} configurations")
        if self.experiments:
            title.append("  (whole experiments: e for the runs alone)")
        self.query_one("#compare-title", Static).update(title)

    @work(thread=True, exclusive=True, group="compare", name="read runs", exit_on_error=False)
    def load(self) -> None:
        from functools import partial

        from remote.errors import RemoteError
        from remote.hosts import get_host
        from remote.layout import read_host_json, resolve_layout

        worker = get_current_worker()
        open_hosts: dict[str, Any] = {}
        layouts: dict[str, Any] = {}
        try:
            records: list[RunRecord] = []
            seen: set[tuple[str, str]] = set()
            for host_name, run in self.runs:
                host = open_hosts.get(host_name) or get_host(host_name, self.hosts_override)
                open_hosts[host_name] = host
                read = partial(read_host_json, host)
                if host_name not in layouts:  # one round trip per host
                    layouts[host_name] = resolve_layout(host)
                path = layouts[host_name].run_dir(run)
                try:
                    found = [load_run(read, path, host_name)]
                except CompareError:  # not written yet: a row without scores
                    found = [RunRecord(run.rsplit("/", 1)[-1], host_name, path, None, None)]
                if self.experiments and found[0].experiment:
                    # A run moved out of its experiment's directory compares as itself.
                    with contextlib.suppress(CompareError):
                        found = load_experiment(read, path.rsplit("/", 1)[0], host_name)
                for record in found:
                    if (record.host, record.path) not in seen:
                        seen.add((record.host, record.path))
                        records.append(record)
            if worker.is_cancelled:
                return
            self.app.call_from_thread(self._records_loaded, records)
            for record in records:
                if worker.is_cancelled:
                    return
                try:
                    events = read_val_events(open_hosts[record.host], record.path)
                except RemoteError:
                    if record.finished:
                        raise
                    events = []  # not started yet (an experiment's queued run): no curve
                self.app.call_from_thread(self._loaded, (record.host, record.run_id), events)
        finally:
            for host in open_hosts.values():
                host.close()

    def _records_loaded(self, records: list[RunRecord]) -> None:
        self.records = records
        summary = self.query_one("#compare-summary", DataTable)
        summary.clear(columns=True)
        notes = self.query_one("#compare-notes", Static)
        try:
            self.table = build_table(records)
        except CompareError as exc:
            self.table = None
            notes.update(str(exc))
        else:
            for name in header(self.table):
                summary.add_column(name)
            for cells in display_rows(self.table):
                summary.add_row(*cells)
            notes.update("\n".join(footnotes(self.table)))
        self._title()

    def _loaded(self, key: tuple[str, str], events: list[dict[str, Any]]) -> None:
        from textual_plotext import PlotextPlot

        from emoconsole.dashboard.plots import draw, metric_series

        self.histories[key] = events
        order = [(r.host, r.run_id) for r in self.records]
        for metric, title in METRICS[:2]:
            draw(
                self.query_one(f"#compare-{metric}", PlotextPlot),
                title,
                [metric_series(self.histories[k], metric, k[1]) for k in order
                 if k in self.histories],
            )  # fmt: skip
        table = self.query_one("#compare-table", DataTable)
        best = max(events, key=lambda ev: ev.get("macro_f1") or -1.0, default=None)
        last = events[-1] if events else {}
        table.add_row(
            key[1], key[0], str(len(events)),
            _f(best.get("macro_f1") if best else None), str(best.get("epoch")) if best else "-",
            _f(last.get("accuracy")), _f(last.get("loss")),
        )  # fmt: skip

    def action_experiments(self) -> None:
        """Widen the runs to their whole experiments, or back to the runs given."""
        self.workers.cancel_group(self, "compare")
        self.experiments = not self.experiments
        self.histories.clear()
        self.records = []
        self.table = None
        self.query_one("#compare-table", DataTable).clear()
        self._title()
        self.load()

    def action_back(self) -> None:
        self.workers.cancel_group(self, "compare")
        self.app.pop_screen()


def _f(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"
