"""This machine as a :class:`~remote.host.Host`, through subprocess."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from remote.errors import CommandTimeoutError
from remote.host import Command, LineStream, Result, check_result, describe


def _popen_args(cmd: Command, env: dict[str, str] | None) -> dict:
    return {
        "args": cmd,
        "shell": isinstance(cmd, str),
        "env": {**os.environ, **env} if env else None,
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        # Its own session, so that ending a shell command also ends what it started.
        "start_new_session": True,
    }


def _spawn(cmd: Command, env: dict[str, str] | None, **extra: object) -> subprocess.Popen:
    """Popen, except that a program that cannot be run is reported the way a shell
    (and so an SSH session) reports it, exit 127 or 126 with a message on stderr,
    rather than as an exception only LocalHost would raise."""
    try:
        return subprocess.Popen(**_popen_args(cmd, env), **extra)  # type: ignore[call-overload]
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        if isinstance(cmd, str):
            raise
        code = 126 if isinstance(exc, PermissionError) else 127
        report = ["/bin/sh", "-c", f'echo "$0: {exc.strerror}" >&2; exit {code}', cmd[0]]
        return subprocess.Popen(**_popen_args(report, None), **extra)  # type: ignore[call-overload]


def _exit_code(returncode: int) -> int:
    """Killed by signal N reads as 128+N, as a shell (and so an SSH session) reports it."""
    return 128 - returncode if returncode < 0 else returncode


def _kill_group(proc: subprocess.Popen, grace: float = 0.5) -> None:
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of a shell command
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class LocalHost:
    """Runs commands on this machine with the same semantics as SSHHost."""

    def __init__(
        self, name: str = "local", *, python: str | None = None, workdir: str | None = None
    ) -> None:
        self.name = name
        self.python = python or sys.executable
        self.workdir = workdir
        self.notify_url: str | None = None  # a webhook its runs' guards tell of their end

    def __repr__(self) -> str:
        return f"LocalHost({self.name!r})"

    def run(
        self,
        cmd: Command,
        *,
        timeout: float | None = None,
        check: bool = False,
        env: dict[str, str] | None = None,
    ) -> Result:
        proc = _spawn(cmd, env)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            tail = Result(False, -1, _text(out), _text(err)).tail()
            raise CommandTimeoutError(describe(cmd), timeout or 0.0, tail) from None
        finally:
            if proc.poll() is None:
                _kill_group(proc)
        code = _exit_code(proc.returncode)
        result = Result(code == 0, code, _text(out), _text(err))
        return check_result(cmd, result, check)

    @contextlib.contextmanager
    def stream(
        self,
        cmd: Command,
        *,
        idle_timeout: float | None = None,
        env: dict[str, str] | None = None,
    ) -> Iterator[LineStream]:
        lines = _ProcessLineStream(cmd, idle_timeout, env)
        try:
            yield lines
        finally:
            lines.close()

    def put(self, local: str, remote: str) -> None:
        _copy(local, remote)

    def get(self, remote: str, local: str) -> None:
        _copy(remote, local)

    def close(self) -> None:
        pass


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def _copy(src: str, dst: str) -> None:
    source, target = Path(src).expanduser(), Path(dst).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


class _ProcessLineStream(LineStream):
    def __init__(self, cmd: Command, idle_timeout: float | None, env: dict[str, str] | None):
        super().__init__(describe(cmd), idle_timeout)
        self.proc = _spawn(cmd, env, bufsize=0)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        out, err = self.proc.stdout, self.proc.stderr
        self._start_pumps(lambda: out.read(65536), lambda: err.read(65536))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def exit_code(self) -> int | None:
        code = self.proc.poll()
        if code is None or code < 0:
            return None
        return code

    def _wait_status(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        _kill_group(self.proc)
        for t in self._threads:
            t.join(2.0)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
