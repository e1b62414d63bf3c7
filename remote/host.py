"""The one interface every kind of host implements (invoke/fabric style).

Commands have the same meaning everywhere: a ``str`` is a shell command line
(``/bin/sh -c`` locally, the login shell over SSH), a ``list`` is an argv that
reaches the program unchanged (quoted for the remote shell over SSH). ``env``
is added to the command's environment the same way on every host, so code that
works against :class:`~remote.local.LocalHost` in a test works against a GPU box.
"""

from __future__ import annotations

import queue
import shlex
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from remote.errors import CommandError, StreamSilentError

Command = str | list[str]


@dataclass
class Result:
    ok: bool
    exit_code: int
    stdout: str
    stderr: str

    def tail(self, n: int = 20) -> str:
        """The last ``n`` lines of stdout and stderr: what an error message needs."""
        lines = (self.stdout.rstrip("\n") + "\n" + self.stderr.rstrip("\n")).strip().splitlines()
        return "\n".join(lines[-n:])


@runtime_checkable
class Host(Protocol):
    name: str
    python: str  # interpreter for the shipped code (watcher, trainers) on this host
    workdir: str | None  # where the shipped code lives on this host; None: the default

    def run(
        self,
        cmd: Command,
        *,
        timeout: float | None = None,
        check: bool = False,
        env: dict[str, str] | None = None,
    ) -> Result: ...

    def stream(
        self,
        cmd: Command,
        *,
        idle_timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> AbstractContextManager[LineStream]: ...

    def put(self, local: str, remote: str) -> None: ...

    def get(self, remote: str, local: str) -> None: ...

    def close(self) -> None: ...


def command_line(cmd: Command, env: dict[str, str] | None = None) -> str:
    """One shell command line with the same meaning as running ``cmd`` locally.

    ``env`` goes through ``env(1)`` rather than the SSH protocol's ``env``
    request because sshd drops variables not listed in its AcceptEnv.
    """
    line = cmd if isinstance(cmd, str) else shlex.join(cmd)
    if not env:
        return line
    assigns = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    return f"env {assigns} /bin/sh -c {shlex.quote(line)}"


def describe(cmd: Command) -> str:
    return cmd if isinstance(cmd, str) else shlex.join(cmd)


def check_result(cmd: Command, result: Result, check: bool) -> Result:
    if check and not result.ok:
        raise CommandError(describe(cmd), result.exit_code, result.tail())
    return result


_EOF = object()


class LineStream(Iterator[str]):
    """Lines of a running command's stdout, as they come.

    A reader thread feeds a queue so that ``__next__`` can give up after
    ``idle_timeout`` seconds of silence (raising :class:`StreamSilentError`)
    instead of blocking forever on a stopped process or a dead network.
    Lines are split on ``\\n`` bytes before decoding, so a multi-byte UTF-8
    character is never cut. Subclasses supply the byte source and ``close``.
    """

    STDERR_KEEP = 200  # lines of stderr kept for error messages

    def __init__(self, command: str, idle_timeout: float | None) -> None:
        self.command = command
        self.idle_timeout = idle_timeout
        # Batches of lines (one per read), not single lines: a queue hand-off costs
        # microseconds of locking, which at 100,000 events/s would be the bottleneck.
        self._lines: queue.Queue[object] = queue.Queue(maxsize=1_000)
        self._ready: deque[str] = deque()
        self._stderr: deque[str] = deque(maxlen=self.STDERR_KEEP)
        self._finished = False
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []  # the readers, started by subclasses

    # -- for subclasses -----------------------------------------------------------------

    def _start_pumps(
        self, read_stdout: Callable[[], bytes], read_stderr: Callable[[], bytes]
    ) -> None:
        """One reader thread per stream, so a full stderr pipe never stalls stdout."""
        self._threads = [
            threading.Thread(target=self._pump_stdout, args=(read_stdout,), daemon=True),
            threading.Thread(target=self._pump_stderr, args=(read_stderr,), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump_stdout(self, read: Callable[[], bytes]) -> None:
        buf = b""
        try:
            while True:
                chunk = read()
                if not chunk:
                    break
                buf += chunk
                head, newline, buf = buf.rpartition(b"\n")
                # Everything up to a newline byte ends on a whole character (no UTF-8
                # sequence contains 0x0A), so one decode serves every line of the read.
                if newline and not self._put(head.decode("utf-8", errors="replace").split("\n")):
                    return
            if buf:
                self._put([buf.decode("utf-8", errors="replace")])
        except Exception:  # the source died under us (closed channel): that is an EOF
            pass
        finally:
            self._put(_EOF)

    def _pump_stderr(self, read: Callable[[], bytes]) -> None:
        buf = b""
        try:
            while chunk := read():
                buf += chunk
                *whole, buf = buf.split(b"\n")
                self._stderr.extend(raw.decode("utf-8", errors="replace") for raw in whole)
            if buf:
                self._stderr.append(buf.decode("utf-8", errors="replace"))
        except Exception:
            pass

    def _put(self, item: object) -> bool:
        # A bounded queue keeps a fast producer from filling memory; blocking here
        # pushes back on the pipe or channel. Give up once the caller closed us.
        while not self._closed.is_set():
            try:
                self._lines.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    # -- for callers --------------------------------------------------------------------

    def __next__(self) -> str:
        if self._ready:
            return self._ready.popleft()
        if self._finished:
            raise StopIteration
        try:
            item = self._lines.get(timeout=self.idle_timeout)
        except queue.Empty:
            raise StreamSilentError(
                f"no output from {self.command!r} for {self.idle_timeout:g} s"
            ) from None
        if item is _EOF:
            self._finished = True
            raise StopIteration
        self._ready.extend(item)  # type: ignore[arg-type]
        return self._ready.popleft()

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    @property
    def exit_code(self) -> int | None:
        """The command's exit status once it has ended; None while it runs or when
        it ended without one (killed by a signal, or the connection dropped)."""
        raise NotImplementedError

    def wait_exit(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for the end of the command (its output may end
        a moment before its status is known, and its stderr be read a moment
        after); then :attr:`exit_code`."""
        deadline = time.monotonic() + timeout
        self._wait_status(timeout)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return self.exit_code

    def _wait_status(self, timeout: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> LineStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
