"""The uploader: a thread beside a training run that keeps its storage copy fresh.

Checkpoints go as soon as they change (the directory is polled every ``poll``
seconds; a save is a rename, so a changed inode/mtime means a complete new file);
everything else at least every ``interval`` seconds. The trainer is another
process, so an upload never stalls a step; this thread only competes for disk
and network.

A failed attempt is retried with exponential backoff (``backoff`` seconds,
doubled per failure, capped) and never raises into the caller: it is reported
through ``on_state`` and written to ``RUN_DIR/.storage/state.json`` (atomic
replace), which the watcher and the dashboard read to show a storage warning
(events.jsonl has one writer, the trainer, so this process cannot append there).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from remote.storage.push import (
    atomic_write_json,
    checkpoint_signature,
    clean_partials,
    push_run,
    state_dir,
)
from remote.storage.url import StorageUrl

STATE_FILE = "state.json"
log = logging.getLogger(__name__)


def state_path(run_dir: Path) -> Path:
    """Where the uploader's last state is (for the watcher and the dashboard)."""
    return state_dir(Path(run_dir)) / STATE_FILE


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """The uploader's last state, or None when it has written none (or it is torn)."""
    import json

    try:
        data = json.loads(state_path(run_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Uploader:
    """Push ``run_dir`` to ``url`` in a background thread until :meth:`stop`.

    ``client_factory()`` makes the S3 client, in the uploader's thread (boto3
    clients are made per thread), again after a failure (fresh connections).
    """

    def __init__(
        self,
        run_dir: Path,
        url: StorageUrl,
        client_factory: Callable[[], Any],
        *,
        interval: float = 60.0,
        on_state: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 1.0,
        backoff: tuple[float, float] = (2.0, 60.0),
        transfer: Any = None,
        temporary_key: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.url = url
        self.client_factory = client_factory
        self.interval = interval
        self.on_state = on_state
        self.poll = poll
        self.backoff = backoff
        self.transfer = transfer
        self.temporary_key = temporary_key
        self.state: dict[str, Any] | None = None
        self._client: Any = None
        self._failures = 0
        self._cond = threading.Condition()
        self._push_lock = threading.Lock()  # one push at a time (thread or flush)
        self._stopping = False
        self._flush_wanted = 0  # generation asked for by flush()
        self._flush_done = 0  # newest generation a successful full push covered
        self._thread: threading.Thread | None = None

    # -- the public face ------------------------------------------------------------------

    def start(self) -> Uploader:
        self._thread = threading.Thread(target=self._run, name="storage-uploader", daemon=True)
        self._thread.start()
        return self

    def flush(self, timeout: float = 120.0) -> bool:
        """Push everything now and wait; True once a full push that started after
        this call succeeded, False if none did within ``timeout`` (failures keep
        being retried, a second apart, until then)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flush_wanted += 1
            wanted = self._flush_wanted
            self._cond.notify_all()
        if self._thread is None or not self._thread.is_alive():
            # Not running (never started, or stopped): push from this thread.
            while time.monotonic() < deadline:
                if self._attempt(full=True):
                    return True
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            return False
        with self._cond:
            return self._cond.wait_for(
                lambda: self._flush_done >= wanted, max(0.0, deadline - time.monotonic())
            )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread (a push in progress finishes first, up to ``timeout``)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        next_full = 0.0  # a full push first: whatever the run has so far
        retry_at = 0.0
        pushed_sig: Any = None
        cleaned = False
        seen_flush = 0
        while True:
            with self._cond:
                if self._stopping:
                    return
                generation = self._flush_wanted
            if generation > seen_flush:  # a new flush does not wait out a backoff
                seen_flush, retry_at = generation, 0.0
            flushing = generation > self._flush_done  # _flush_done: written here only
            now = time.monotonic()
            sig = checkpoint_signature(self.run_dir)
            full = flushing or now >= next_full
            if (full or sig != pushed_sig) and now >= retry_at:
                if not cleaned:
                    cleaned = self._clean_partials()
                if self._attempt(full=full):
                    pushed_sig = sig
                    retry_at = 0.0
                    if full:
                        next_full = now + self.interval
                        with self._cond:
                            self._flush_done = max(self._flush_done, generation)
                            self._cond.notify_all()
                else:
                    delay = min(self.backoff[1], self.backoff[0] * 2 ** (self._failures - 1))
                    # A flush waits on this: retry it at least every second.
                    retry_at = time.monotonic() + (min(delay, 1.0) if flushing else delay)
            with self._cond:
                self._cond.wait_for(
                    lambda seen=seen_flush: self._stopping or self._flush_wanted > seen, self.poll
                )

    def _clean_partials(self) -> bool:
        """Leftovers of a pusher killed mid-checkpoint (an hour old or more)."""
        try:
            clean_partials(self.url, self.run_dir.name, self._get_client())
        except Exception as exc:  # not worth failing over: the next start tries again
            log.warning("storage: %s", exc)
            return False
        return True

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def _attempt(self, *, full: bool) -> bool:
        """One push (checkpoints only unless ``full``); the state reported either way."""
        with self._push_lock:
            error: str | None = None
            pushed: list[str] = []
            report = None
            try:
                report = push_run(
                    self.run_dir,
                    self.url,
                    self._get_client(),
                    checkpoints=True,
                    others=full,
                    transfer=self.transfer,
                    temporary_key=self.temporary_key,
                )
                pushed = report.uploaded
                self._failures = 0
            except Exception as exc:  # never into the caller: reported, then retried
                error = str(exc) or type(exc).__name__
                self._failures += 1
                self._client = None  # fresh connections (and credentials) next time
            state = {
                "ok": error is None,
                "time": time.time(),
                "error": error,
                "failures": self._failures,
                "pushed": pushed,
                "full": full,
                "url": str(self.url),
                "bytes": report.bytes_uploaded if report else 0,
                "seconds": round(report.seconds, 3) if report else None,
                "warnings": report.warnings if report else [],
            }
            self._report(state)
            return error is None

    def _report(self, state: dict[str, Any]) -> None:
        self.state = state
        try:
            atomic_write_json(state_path(self.run_dir), state)
        except OSError as exc:
            log.warning("storage: cannot write %s: %s", state_path(self.run_dir), exc)
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                log.exception("storage: on_state failed")
