"""Two runs side by side: their validation curves on the same charts, and a table of
what each reached. Opened from the runs table with two runs marked.

Only the val events and resumes are read (``grep`` on the host): a long run's
events.jsonl is mostly step events, and the charts need one point per epoch, as
:class:`trainers.runlog.RunLog` keeps them (an epoch repeated after a resume once).
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Static

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
    BINDINGS = [Binding("escape,b", "back", "Back")]  # noqa: RUF012

    def __init__(self, runs: list[tuple[str, str]], *, hosts: dict[str, Any] | None = None) -> None:
        """``runs``: (host, run id) of each run to compare, in legend order."""
        super().__init__()
        self.runs = runs
        self.hosts_override = hosts
        self.histories: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def compose(self) -> ComposeResult:
        from textual_plotext import PlotextPlot

        yield Header()
        yield Static(id="compare-title")
        with Horizontal(id="compare-plots"):
            for key, _title in METRICS[:2]:
                yield PlotextPlot(id=f"compare-{key}")
        yield DataTable(id="compare-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "compare runs"
        title = Text("comparing ")
        for i, (host, run) in enumerate(self.runs):
            title.append(("" if i == 0 else "  vs  ") + f"{run} ({host})", style="bold")
        self.query_one("#compare-title", Static).update(title)
        table = self.query_one("#compare-table", DataTable)
        for name in ("run", "host", "epochs", "best macro F1", "@ epoch", "last acc", "last loss"):
            table.add_column(name, key=name)
        self.load()

    @work(thread=True, exclusive=True, group="compare", name="read runs", exit_on_error=False)
    def load(self) -> None:
        from remote.hosts import get_host

        open_hosts: dict[str, Any] = {}
        try:
            for host_name, run in self.runs:
                host = open_hosts.get(host_name) or get_host(host_name, self.hosts_override)
                open_hosts[host_name] = host
                events = read_val_events(host, run)
                self.app.call_from_thread(self._loaded, (host_name, run), events)
        finally:
            for host in open_hosts.values():
                host.close()

    def _loaded(self, key: tuple[str, str], events: list[dict[str, Any]]) -> None:
        from textual_plotext import PlotextPlot

        from emoconsole.dashboard.plots import draw, metric_series

        self.histories[key] = events
        for metric, title in METRICS[:2]:
            draw(
                self.query_one(f"#compare-{metric}", PlotextPlot),
                title,
                [metric_series(self.histories[k], metric, k[1]) for k in self.runs
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

    def action_back(self) -> None:
        self.workers.cancel_group(self, "compare")
        self.app.pop_screen()


def _f(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"
