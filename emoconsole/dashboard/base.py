"""What every dashboard screen shares: the one place a worker's failure is reported."""

from __future__ import annotations

from textual.screen import Screen
from textual.worker import Worker, WorkerState


class DashboardScreen(Screen[None]):
    """A worker's StateChanged message does not bubble, so each screen that owns
    workers turns their failures into a notification naming the worker (harlequin's
    habit): an unreachable host or a missing run is news, never a crashed app. The
    workers are declared with ``exit_on_error=False`` so that Textual lets them fail."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.app.notify(
                f"{event.worker.name}: {type(error).__name__}: {error}",
                title="error",
                severity="error",
                timeout=15,
            )
