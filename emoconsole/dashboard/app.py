"""The dashboard application: its screens and the command palette.

Worker failures are reported by :class:`~emoconsole.dashboard.base.ReportsWorkerErrors`,
which every screen (``DashboardScreen``) and dialog (``DashboardModal``) derives from.

Start-up imports only Textual and the UI-free data layer; remote hosts are
reached from thread workers and plotext is imported when a run is opened, so the
runs table paints fast and torch is never imported (tests/test_dashboard.py
checks both).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from emoconsole.dashboard.runs_table import HostListed, RunsScreen
from emoconsole.notify import ListingEndings, announce, describe_ending

if TYPE_CHECKING:
    # The run view (plots, dialogs, actions) loads when a run opens, not before the
    # first paint: about 0.13 s of imports.
    from emoconsole.dashboard.run_view import RunScreen


class Dashboard(App[None]):
    """``emoconsole`` with no arguments."""

    TITLE = "emoconsole"
    CSS_PATH = "dashboard.tcss"
    BINDINGS = [  # noqa: RUF012
        Binding("q", "quit", "Quit"),
        Binding("ctrl+p", "command_palette", "Commands", show=True),
    ]

    def __init__(
        self,
        hosts: dict[str, Any] | None = None,
        *,
        refresh_s: float = 5.0,
        interval: float | None = None,
        open_run: tuple[str, str] | None = None,
        wait_run_s: float | None = None,
    ) -> None:
        """``hosts`` replaces the configured hosts (tests, a demo); ``open_run``
        (host, run id) opens that run's view at once; ``interval``: seconds between
        the watcher's system samples and heartbeats; ``wait_run_s``: how long a run view
        waits for a run directory that does not exist yet (default: RunScreen's)."""
        super().__init__()
        self.hosts = hosts
        self.refresh_s = refresh_s
        self.interval = interval
        self.open_run = open_run
        self.wait_run_s = wait_run_s
        self.started = time.perf_counter()
        self.first_paint_s: float | None = None
        self.endings = ListingEndings()  # which runs ended since the dashboard opened

    @on(HostListed)
    def _announce_endings(self, message: HostListed) -> None:
        """The runs table's listing, bubbled up: a run that ended since the last one rings
        the bell, shows a desktop notification and a toast, whichever screen is open."""
        if message.runs is None:
            return
        for row in self.endings.update(message.host, message.runs):
            status = str(row.get("status"))
            text = describe_ending(str(row.get("id")), message.host, status, row)
            announce(text, self.bell)
            severity = "information" if status == "completed" else "warning"
            self.notify(text, title=f"run {status}", severity=severity, timeout=10)

    def get_default_screen(self) -> Screen:
        # The runs table is the first screen itself: no blank default screen is composed
        # and laid out before it.
        return RunsScreen(self.hosts, self.refresh_s)

    def on_mount(self) -> None:
        # After the first refresh the screen is on the terminal: that is the paint time.
        self.call_after_refresh(self._painted)
        if self.open_run is not None:
            self.push_screen(self.run_screen(*self.open_run))

    def _painted(self) -> None:
        self.first_paint_s = time.perf_counter() - self.started
        # Everything alive now (Textual, Rich, the modules: most of the objects the
        # collector tracks) is kept for good: without this, each full collection walks
        # them all, a 50-150 ms pause that a key pressed meanwhile waits out (measured by
        # bench/dashboard.py while a run streams). Later garbage is collected as before.
        gc.freeze()

    def run_screen(self, host: str, run_id: str) -> RunScreen:
        from emoconsole.dashboard.run_view import RunScreen

        extra = {} if self.wait_run_s is None else {"wait_run_s": self.wait_run_s}
        return RunScreen(host, run_id, hosts=self.hosts, interval=self.interval, **extra)

    # -- the command palette ----------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        from emoconsole.dashboard.run_view import RunScreen

        yield from super().get_system_commands(screen)
        if isinstance(screen, RunsScreen):
            yield SystemCommand("Open run", "Open the selected run", screen.action_open_run)
            yield SystemCommand("Filter runs", "Filter the runs table", screen.action_filter)
            yield SystemCommand("Sort runs", "Sort by the next column", screen.action_sort)
            yield SystemCommand("Refresh runs", "List every host again", screen.action_refresh)
            yield SystemCommand("New run", "Launch a model on a host (a form)",
                                screen.action_new_run)  # fmt: skip
            yield SystemCommand("Mark run", "Mark the selected run for compare", screen.action_mark)
            yield SystemCommand(
                "Compare marked runs",
                "Marked runs' val curves and table (one run: its experiment)",
                screen.action_compare,
            )
        if isinstance(screen, RunScreen):
            yield SystemCommand("Back to runs", "Leave this run's view", screen.action_back)
            yield SystemCommand(
                "Pause/follow log", "Stop or resume following the log", screen.action_toggle_follow
            )
            yield SystemCommand(
                "Stop run", "SIGTERM the run (checkpoint saved), after a confirm",
                screen.action_stop_run,
            )  # fmt: skip
            yield SystemCommand(
                "Resume run", "Continue a stopped or crashed run from its last checkpoint",
                screen.action_resume_run,
            )  # fmt: skip
            yield SystemCommand(
                "Download run", "Fetch the run's files here, SHA-256 checked",
                screen.action_download,
            )  # fmt: skip
            yield SystemCommand(
                "TensorBoard", "Serve the run's tb/ and show the URL", screen.action_tensorboard
            )
            yield SystemCommand(
                "Search log", "Show only log lines containing text", screen.action_search_log
            )
            yield SystemCommand("Cycle log level", "all, INFO+, WARNING+, ERROR",
                                screen.action_cycle_level)  # fmt: skip
            for tab in ("log", "metrics", "curves", "system", "confusion", "config"):
                yield SystemCommand(
                    f"Show {tab}", f"Switch to the {tab} tab", lambda t=tab: screen.action_tab(t)
                )


def run_dashboard(**kwargs: Any) -> None:
    Dashboard(**kwargs).run()
