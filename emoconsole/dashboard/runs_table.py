"""The first screen: every run on every configured host, refreshed in a thread worker."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import get_current_worker

from emoconsole.dashboard.base import DashboardScreen
from emoconsole.dashboard.cost import PRICE_REFRESH_S
from emoconsole.dashboard.state import COLUMNS, RunRow, RunsListing, sort_rows

# Managed runs are checked for a lost instance this often (EC2 calls cost time, not money).
RECOVERY_CHECK_S = 60.0


class HostListed(Message):
    """One host's answer (runs, or why it did not answer), posted from the worker."""

    def __init__(
        self,
        host: str,
        runs: list[dict[str, Any]] | None,
        error: str | None,
        usd_per_hour: float | None = None,
        costs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.host, self.runs, self.error = host, runs, error
        self.usd_per_hour = usd_per_hour
        self.costs = costs  # run id -> remote.ec2.prices.CostSoFar, for managed runs


class RunsTable(DataTable):
    """A DataTable whose Enter is shown in the footer: the base class hides its own."""

    BINDINGS = [Binding("enter", "select_cursor", "Open run")]  # noqa: RUF012


class RunsScreen(DashboardScreen):
    BINDINGS = [  # noqa: RUF012 - Textual's declared style
        Binding("slash", "filter", "Filter"),
        Binding("o", "sort", "Sort"),
        Binding("r", "refresh", "Refresh"),
        Binding("n", "new_run", "New run"),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare marked"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self, hosts: dict[str, Any] | None = None, refresh_s: float = 5.0) -> None:
        super().__init__()
        self.hosts_override = hosts
        self.refresh_s = refresh_s
        self.listing = RunsListing()
        self.sort_column = "id"
        self.sort_reverse = True  # run ids start with their start time: newest first
        self.needle = ""
        self.rows: list[RunRow] = []
        self.shown: dict[str, tuple[str, ...]] = {}  # key -> cells on screen
        self.marked: list[str] = []  # keys of the runs marked for compare, in marking order
        self.select_when_listed: str | None = None  # a run just launched: put the cursor on it

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter runs (id, model, host, status)", id="filter")
        yield RunsTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="hosts-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        self.query_one("#filter", Input).display = False
        table.focus()
        # After the first paint: the worker's imports and `hostctl list` would compete
        # with it for the GIL and the CPUs.
        self.call_after_refresh(self.list_hosts)

    # -- the worker -----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="runs-listing", name="list runs", exit_on_error=False)
    def list_hosts(self) -> None:
        """Every few seconds: list_runs on every configured host. Blocking I/O stays here;
        only HostListed messages reach the UI. Host objects are kept between passes (an
        SSH connection is expensive) and dropped after a failure so the next pass retries."""
        from remote.config import load_hosts
        from remote.deploy import list_runs
        from remote.hosts import host_from_config

        worker = get_current_worker()
        live: dict[str, Any] = {}
        prices: dict[str, tuple[float, float | None]] = {}  # host -> (asked at, USD/h)
        run_costs: dict[str, tuple[float, dict[str, Any]]] = {}  # host -> (asked at, costs)
        span_cache: dict[Any, Any] = {}  # an ended instance's cost is asked once
        checked = 0.0  # when managed runs were last checked for a lost instance
        try:
            while not worker.is_cancelled:
                if self.hosts_override is None and time.monotonic() - checked > RECOVERY_CHECK_S:
                    checked = time.monotonic()
                    self._check_recoveries()
                try:
                    configs = self.hosts_override or load_hosts()
                except Exception as exc:  # a broken hosts file: say so, keep local working
                    self.post_message(HostListed("config", None, str(exc)))
                    from remote.config import LOCAL

                    configs = {"local": LOCAL}
                for name, cfg in configs.items():
                    if worker.is_cancelled:
                        return
                    try:
                        host = live.get(name) or host_from_config(cfg)
                        live[name] = host
                        runs = list_runs(host)
                    except Exception as exc:  # one host down must not hide the others
                        self.post_message(HostListed(name, None, _one_line(exc)))
                        dead = live.pop(name, None)
                        if dead is not None:
                            _close_quietly(dead)
                        continue
                    price = _ec2_price(host, prices.get(name))
                    if price is not None:
                        prices[name] = price
                    usd = price[1] if price is not None else None
                    costs = _ec2_run_costs(host, runs, run_costs.get(name), span_cache)
                    if costs is not None:
                        run_costs[name] = costs
                    self.post_message(
                        HostListed(name, runs, None, usd, costs[1] if costs else None)
                    )
                worker.cancelled_event.wait(self.refresh_s)
        finally:
            for host in live.values():
                _close_quietly(host)

    def _check_recoveries(self) -> None:
        """Managed runs whose instance is gone are recovered from here too (in this
        worker thread), each step shown as a notification."""
        from remote.recovery import check_managed

        def say(text: str) -> None:
            self.app.call_from_thread(self.app.notify, text, title="recovery", timeout=10)

        check_managed(say)

    @on(HostListed)
    def _host_listed(self, message: HostListed) -> None:
        self.listing.update(
            message.host, message.runs, message.error, message.usd_per_hour, message.costs
        )
        self.rebuild()
        errors = self.listing.errors
        status = self.query_one("#hosts-status", Static)
        # Text, not markup: error messages carry brackets ("[Errno 111] ...").
        status.update(Text("  ".join(f"{h}: {e}" for h, e in errors.items()), style="red"))

    # -- the table --------------------------------------------------------------------------

    def rebuild(self) -> None:
        """Rows in place, keyed by host/id, so the cursor stays on its run across refreshes."""
        table = self.query_one(DataTable)
        rows = [r for r in self.listing.rows() if r.matches(self.needle)]
        rows = sort_rows(rows, self.sort_column, self.sort_reverse)
        selected = self.selected_row()
        wanted = [r.key for r in rows]
        if [r.key for r in self.rows] != wanted:
            table.clear()
            self.shown = {}
            for row in rows:
                self.shown[row.key] = self._cells(row)
                table.add_row(*self.shown[row.key], key=row.key)
            if selected is not None and selected.key in wanted:
                table.move_cursor(row=wanted.index(selected.key))
        else:
            for row in rows:
                cells, old = self._cells(row), self.shown.get(row.key, ())
                for col, new, before in zip(COLUMNS, cells, old, strict=False):
                    if new != before:
                        table.update_cell(row.key, col, new)
                self.shown[row.key] = cells
        self.rows = rows
        if self.select_when_listed in wanted:
            table.move_cursor(row=wanted.index(self.select_when_listed))
            self.select_when_listed = None
        marked = f", {len(self.marked)} marked" if self.marked else ""
        self.sub_title = f"{len(rows)} runs, sorted by {self.sort_column}{marked}"

    def _cells(self, row: RunRow) -> tuple[str, ...]:
        cells = row.cells()
        if row.key in self.marked:
            return (f"✓ {cells[0]}", *cells[1:])
        return cells

    def selected_row(self) -> RunRow | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @on(DataTable.RowSelected)
    def _row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open_run()

    @on(DataTable.HeaderSelected)
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        column = str(event.column_key.value)
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        self.rebuild()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.needle = event.value
        self.rebuild()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, _event: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    # -- actions ----------------------------------------------------------------------------

    def action_open_run(self) -> None:
        row = self.selected_row()
        if row is None or row.id == "-":
            self.notify("no run selected", severity="warning")
            return
        from emoconsole.dashboard.run_view import RunScreen

        self.app.push_screen(RunScreen(row.host, row.id, hosts=self.hosts_override))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.query_one(DataTable).focus()

    def action_sort(self) -> None:
        """Cycle the sort column (clicking a header does the same with the mouse)."""
        i = COLUMNS.index(self.sort_column)
        self.sort_column = COLUMNS[(i + 1) % len(COLUMNS)]
        self.sort_reverse = False
        self.rebuild()

    def action_refresh(self) -> None:
        self.list_hosts()

    def action_new_run(self) -> None:
        """The new-run form; a launched run is listed at once, with the cursor on it."""
        from emoconsole.dashboard.dialogs import NewRunDialog

        def launched(result: tuple[str, str] | None) -> None:
            if result is not None:
                host, run_id = result
                self.notify(f"launched {run_id} on {host}")
                self.select_when_listed = f"{host}/{run_id}"
                self.list_hosts()

        self.app.push_screen(NewRunDialog(self.hosts_override), launched)

    def action_mark(self) -> None:
        """Mark (or unmark) the selected run for compare."""
        row = self.selected_row()
        if row is None or row.id == "-":
            return
        if row.key in self.marked:
            self.marked.remove(row.key)
        else:
            self.marked.append(row.key)
        self.rebuild()

    def action_compare(self) -> None:
        """Every marked run (one alone: its whole experiment) in the compare screen."""
        chosen = [r for key in self.marked for r in self.rows if r.key == key]
        if not chosen:
            self.notify(
                "mark runs first (space): two or more, or one of an experiment",
                severity="warning",
            )
            return
        from emoconsole.dashboard.compare import CompareScreen

        self.app.push_screen(
            CompareScreen([(r.host, r.id) for r in chosen], hosts=self.hosts_override)
        )


def _ec2_price(
    host: Any, last: tuple[float, float | None] | None
) -> tuple[float, float | None] | None:
    """An EC2 host's hourly price, asked of the API at most every PRICE_REFRESH_S (the
    listing runs every few seconds); None for other hosts. The instance is the one the
    listing just reached over SSH. A failed price is no reason to hide the runs."""
    instance = getattr(host, "instance", None)
    if instance is None or not hasattr(host, "ec2"):
        return None
    now = time.monotonic()
    if last is not None and now - last[0] < PRICE_REFRESH_S:
        return last
    from remote.ec2.prices import hourly_price

    try:
        return now, hourly_price(host.ec2(), instance).usd_per_hour
    except Exception:  # an estimate only: keep the last one, or none
        return last


def _ec2_run_costs(
    host: Any,
    runs: list[dict[str, Any]],
    last: tuple[float, dict[str, Any]] | None,
    cache: dict[Any, Any],
) -> tuple[float, dict[str, Any]] | None:
    """Each listed run's cost across the instances it ran on (rows that carry run.json's
    ``instances``), asked at most every PRICE_REFRESH_S; None off EC2. Like the hourly
    price, a failure keeps the last answer: an estimate is no reason to hide runs."""
    if not hasattr(host, "ec2") or not any(r.get("instances") for r in runs):
        return None
    now = time.monotonic()
    if last is not None and now - last[0] < PRICE_REFRESH_S:
        return last
    from remote.ec2.prices import spans_cost, spans_of

    try:
        client = host.ec2()
        costs = {}
        for row in runs:
            spans = spans_of(row)
            if spans:
                costs[str(row.get("id"))] = spans_cost(client, spans, cache=cache)
        return now, costs
    except Exception:
        return last


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:200]


def _close_quietly(host: Any) -> None:
    # Closing a dead connection can only fail again; there is nothing to report.
    with contextlib.suppress(Exception):
        host.close()
