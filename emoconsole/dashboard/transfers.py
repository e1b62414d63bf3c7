"""Dialogs for what a run view starts and watches: a download with a progress bar, and
TensorBoard for the run (started here or on its host, stopped when the dialog closes).

Both do their work in thread workers: ``remote.download.download_run`` and
``remote.tensorboard.start_tensorboard`` block for as long as they take. A worker that
fails is reported as on every screen (a notification), and in the dialog's body, in
place of the text that said what was starting; the dialog stays, closable.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Label, ProgressBar, Static
from textual.worker import Worker, get_current_worker

from emoconsole.dashboard.base import DashboardModal, worker_error_text

DOWNLOADS = Path("downloads")  # the CLI's default: the run lands in downloads/<run-id>
PROGRESS_EVERY_S = 0.1  # coalesce byte-level callbacks into at most 10 repaints a second


class DownloadCancelled(Exception):
    """Raised from the progress callback: download_run stops at once, keeping .part files."""


class DownloadDialog(DashboardModal[None]):
    """``emoconsole download`` in a dialog: every file checked by SHA-256, a bar for
    the bytes. Closing it mid-way stops the transfer; partial files are kept and the
    next download of the run continues them."""

    BINDINGS = [Binding("escape", "close", "Close")]  # noqa: RUF012

    def __init__(
        self, host: str, run_id: str, *, hosts: dict[str, Any] | None = None,
        to: Path = DOWNLOADS,
    ) -> None:  # fmt: skip
        super().__init__()
        self.host_name, self.run_id = host, run_id
        self.hosts_override = hosts
        self.to = to
        self.report: Any = None
        self.local_dir: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="download", classes="dialog"):
            yield Label(f"Downloading {self.run_id} from {self.host_name}", classes="section")
            yield ProgressBar(id="download-bar", show_eta=True)
            yield Static("listing the run's files...", id="download-file")
            yield Static("", id="download-result")
            with Horizontal():
                yield Button("Close (esc)", id="close")

    def on_mount(self) -> None:
        self.download()

    @work(thread=True, exclusive=True, group="download", name="download run", exit_on_error=False)
    def download(self) -> None:
        from remote.download import DownloadProgress, download_run
        from remote.hosts import get_host
        from remote.layout import remote_run_dir

        worker = get_current_worker()
        last = [0.0]

        def progress(p: DownloadProgress) -> None:
            if worker.is_cancelled:
                raise DownloadCancelled
            now = time.monotonic()
            if p.state == "fetching" and now - last[0] < PROGRESS_EVERY_S:
                return
            last[0] = now
            label = f"{p.path} (identical, skipped)" if p.state == "skipped" else p.path
            self.app.call_from_thread(self._progress, p.done, p.total, label)

        host = get_host(self.host_name, self.hosts_override)
        try:
            remote_dir = remote_run_dir(host, self.run_id)
            local_dir = self.to / PurePosixPath(remote_dir).name
            report = download_run(host, remote_dir, local_dir, progress=progress)
        except DownloadCancelled:
            return
        finally:
            host.close()
        self.app.call_from_thread(self._finished, report)

    def _progress(self, done: int, total: int, label: str) -> None:
        self.query_one("#download-bar", ProgressBar).update(total=total or None, progress=done)
        self.query_one("#download-file", Static).update(label)

    def _finished(self, report: Any) -> None:
        self.report, self.local_dir = report, report.local_dir
        total = sum(f.size for f in report.files)
        self.query_one("#download-bar", ProgressBar).update(total=total or 1, progress=total or 1)
        fetched = [f for f in report.files if f.action != "skipped"]
        self.query_one("#download-file", Static).update(f"done -> {report.local_dir}")
        self.query_one("#download-result", Static).update(
            f"{len(fetched)} fetched, {len(report.skipped)} already identical, "
            f"{report.bytes_transferred / 1e6:.1f} MB in {report.seconds:.1f} s via "
            f"{report.method}; every file SHA-256 checked"
            + (f"; vanished on the host: {', '.join(report.missing)}" if report.missing else "")
        )

    def worker_failed(self, worker: Worker[Any], error: BaseException) -> None:
        self.query_one("#download-bar", ProgressBar).display = False  # it would pulse on
        self.query_one("#download-file", Static).update(
            Text(f"download failed: {worker_error_text(error)}", style="bold red")
        )

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.workers.cancel_group(self, "download")
        self.dismiss(None)


class TensorBoardDialog(DashboardModal[None]):
    """TensorBoard on the run's ``tb/``: its URL here, and stopped when this closes
    (or when the app does: unmounting the dialog stops it)."""

    BINDINGS = [Binding("escape", "close", "Close")]  # noqa: RUF012

    def __init__(self, host: str, run_dir: str, *, hosts: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.host_name, self.run_dir = host, run_dir
        self.hosts_override = hosts
        self.board: Any = None
        self.url: str | None = None
        self._board_lock = threading.Lock()
        self._tb_closed = False

    def compose(self) -> ComposeResult:
        with Vertical(id="tensorboard", classes="dialog"):
            yield Label(f"TensorBoard for {PurePosixPath(self.run_dir).name}", classes="section")
            yield Static(f"starting TensorBoard on {self.host_name}...", id="tb-url")
            with Horizontal():
                yield Button("Close and stop (esc)", id="close")

    def on_mount(self) -> None:
        self.start()

    @work(thread=True, exclusive=True, group="tensorboard", name="tensorboard",
          exit_on_error=False)  # fmt: skip
    def start(self) -> None:
        from remote.hosts import get_host
        from remote.tensorboard import start_tensorboard

        host = get_host(self.host_name, self.hosts_override)
        try:
            board = start_tensorboard(host, self.run_dir)
        except BaseException:
            host.close()
            raise
        with self._board_lock:
            closed = self._tb_closed
            if not closed:
                # The host stays open: an SSH tunnel rides on its connection.
                self.board, self._tb_host = board, host
        if closed:  # the dialog went while TensorBoard was starting
            board.stop()
            host.close()
            return
        self.app.call_from_thread(self._ready, board.url)

    def _ready(self, url: str) -> None:
        self.url = url
        where = "" if self.host_name == "local" else f" (forwarded from {self.host_name})"
        self.query_one("#tb-url", Static).update(f"TensorBoard: {url}{where}")

    def worker_failed(self, worker: Worker[Any], error: BaseException) -> None:
        self.query_one("#tb-url", Static).update(
            Text(f"TensorBoard did not start: {worker_error_text(error)}", style="bold red")
        )

    def _stop(self) -> None:
        with self._board_lock:
            self._tb_closed = True
            board, self.board = self.board, None
        if board is not None:
            board.stop()
            self._tb_host.close()

    def on_unmount(self) -> None:
        self._stop()

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self._stop()
        self.dismiss(None)
