"""What a run view starts besides following the run: resume, download, TensorBoard, and
the cost of an EC2 host. A mixin of :class:`~emoconsole.dashboard.run_view.RunScreen`,
kept apart so that the view's module stays about following and painting.

Each blocking call runs in a thread worker that hands results back with
``call_from_thread``; failures reach the screen's worker-error notification.
"""

from __future__ import annotations

import time
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from textual import work
from textual.worker import get_current_worker

from emoconsole.dashboard.cost import PRICE_REFRESH_S, RunCost, run_cost, spans_run_cost

if TYPE_CHECKING:
    from textual.app import App

    from emoconsole.dashboard.state import RunState
    from remote.ec2.prices import CostSoFar

# How long the price worker waits for run.json (read by the follow worker) to learn
# whether the run lists its instances, before pricing the instance's uptime instead.
MANIFEST_WAIT_S = 20.0


class RunActions:
    """Needs from the screen: its run (host, id, state), its follow worker and painting."""

    if TYPE_CHECKING:
        app: App[Any]
        host_name: str
        run_id: str
        hosts_override: dict[str, Any] | None
        state: RunState
        cost: RunCost | None
        _price: tuple[float, float] | None
        _spans: tuple[CostSoFar, float] | None
        _painted: int
        _crash_written: bool

        def notify(self, message: str, **kwargs: Any) -> None: ...
        def query_one(self, selector: Any, expect_type: Any = None) -> Any: ...
        def follow_run(self) -> Any: ...
        def _paint(self) -> None: ...
        def _header_text(self) -> Any: ...

    def action_resume_run(self) -> None:
        from remote.resume import RESUMABLE

        if self.state.status not in RESUMABLE:
            self.notify(
                f"{self.run_id} is {self.state.status}: only a stopped, crashed or failed run "
                "can be resumed",
                severity="warning",
            )
            return
        self.notify(f"resuming {self.run_id} on {self.host_name}...")
        self.resume_worker()

    @work(thread=True, exclusive=True, group="resume", name="resume run", exit_on_error=False)
    def resume_worker(self) -> None:
        """Start the resume, then wait for the new process to take the run over before
        following it again (until then the watcher would see the old pid, dead)."""
        from remote.hosts import get_host
        from remote.resume import resume_run, wait_taken_over

        worker = get_current_worker()
        host = get_host(self.host_name, self.hosts_override)
        try:
            resumed = resume_run(host, PurePosixPath(self.run_id).name)
            self.app.call_from_thread(self._resuming, resumed.pid)
            wait_taken_over(host, resumed)
        finally:
            host.close()
        if not worker.is_cancelled:
            self.app.call_from_thread(self.follow_run)

    def _resuming(self, pid: int) -> None:
        self.state.crashed_log = []
        self._crash_written = False
        self.state.status = f"resuming (pid {pid}: building the model and data)"
        self.state.version += 1
        self._painted = self.state.version
        self._paint()  # now, not at the next drain: the crash warning goes at once
        self._set("#run-header", self._header_text())
        self.notify(f"{self.run_id}: resumed (pid {pid})")

    def action_download(self) -> None:
        from emoconsole.dashboard.transfers import DownloadDialog

        self.app.push_screen(DownloadDialog(self.host_name, self.run_id, hosts=self.hosts_override))

    def action_tensorboard(self) -> None:
        from emoconsole.dashboard.transfers import TensorBoardDialog

        if not self.state.run_dir:
            self.notify("the run directory is not known yet", severity="warning")
            return
        self.app.push_screen(
            TensorBoardDialog(self.host_name, self.state.run_dir, hosts=self.hosts_override)
        )

    # -- cost on EC2 --------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="price", name="ec2 price", exit_on_error=False)
    def price_worker(self) -> None:
        """An EC2 host's hourly price and the instance's uptime, now and then; nothing
        for other hosts (boto3 is imported only for an EC2 host). A run whose run.json
        lists its instances is priced across all of them instead."""
        from remote.config import get_host_config

        cfg = get_host_config(self.host_name, self.hosts_override)
        if cfg.kind != "ec2" or cfg.ec2 is None:
            return
        from remote.ec2.api import profile_client, running_instance
        from remote.ec2.prices import hourly_price, spans_cost, spans_of

        worker = get_current_worker()
        client = profile_client(cfg.ec2)
        deadline = time.monotonic() + MANIFEST_WAIT_S
        while self.state.config is None and time.monotonic() < deadline:
            if worker.cancelled_event.wait(0.5):
                return
        cache: dict[Any, Any] = {}
        while not worker.is_cancelled:
            spans = spans_of(self.state.config or {})
            if spans:
                cost = spans_cost(client, spans, cache=cache)
                self.app.call_from_thread(self.set_spans_cost, cost)
                worker.cancelled_event.wait(PRICE_REFRESH_S)
                continue
            instance = running_instance(client, cfg.ec2)
            price = hourly_price(client, instance)
            uptime = instance.uptime()
            if price.usd_per_hour is not None and uptime is not None:
                self.app.call_from_thread(
                    self.set_price, price.usd_per_hour, uptime.total_seconds()
                )
            worker.cancelled_event.wait(PRICE_REFRESH_S)

    def set_price(self, usd_per_hour: float, uptime_s: float) -> None:
        """The instance's price and uptime as of now; the header counts on from here."""
        self._price = (usd_per_hour, uptime_s - time.monotonic())
        self._set("#run-header", self._header_text())

    def set_spans_cost(self, cost: CostSoFar) -> None:
        """The run's cost across its instances as of now; the header counts on from here."""
        self._spans = (cost, time.monotonic())
        self._set("#run-header", self._header_text())

    def _cost(self) -> RunCost | None:
        if self._spans is not None:
            spans, at = self._spans
            remaining = self.state.eta.estimate(time.time()).to_max_epochs
            self.cost = spans_run_cost(spans, remaining, time.monotonic() - at)
            return self.cost
        if self._price is None:
            return None
        usd, uptime_base = self._price
        remaining = self.state.eta.estimate(time.time()).to_max_epochs
        self.cost = run_cost(usd, uptime_base + time.monotonic(), remaining)
        return self.cost
