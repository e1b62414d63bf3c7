"""What every dashboard screen and dialog shares: the one place a worker's failure is
reported. Screens derive from :class:`DashboardScreen`, dialogs from
:class:`DashboardModal`; both get it from :class:`ReportsWorkerErrors`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from textual.app import App

ResultT = TypeVar("ResultT")


class ReportsWorkerErrors:
    """A worker's StateChanged message does not bubble, so each screen that owns
    workers turns their failures into a notification naming the worker (harlequin's
    habit): an unreachable host or a missing run is news, never a crashed app. The
    workers are declared with ``exit_on_error=False`` so that Textual lets them fail.

    A screen that also shows the failure where the user looks (a dialog's body, which
    would otherwise sit on its "starting..." text) overrides :meth:`worker_failed`."""

    if TYPE_CHECKING:
        app: App[Any]  # the screen's

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.app.notify(
                f"{event.worker.name}: {worker_error_text(error)}",
                title="error",
                severity="error",
                timeout=15,
            )
            self.worker_failed(event.worker, error)

    def worker_failed(self, worker: Worker[Any], error: BaseException) -> None:
        """Called on the UI thread after the notification; nothing more by default."""


def worker_error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class DashboardScreen(ReportsWorkerErrors, Screen[None]):
    """A full screen of the dashboard (runs table, run view, compare)."""


class DashboardModal(ReportsWorkerErrors, ModalScreen[ResultT]):
    """A dialog of the dashboard; ``ResultT`` is what it hands its caller's callback."""
