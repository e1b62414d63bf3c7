"""TensorBoard for one run, served where the run's files are and reachable from here.

Every run writes ``<run>/tb/`` (the engine's TensorBoard sink). Copying event
files to read them locally would lag a live run, so TensorBoard runs next to
the files:

- on this machine (a :class:`~remote.local.LocalHost`), as a child process of
  the console on a free loopback port;
- on an SSH host, detached there (``nohup``) on a loopback port of the host,
  with a local port forwarded to it over the connection the host already has
  (paramiko ``direct-tcpip`` channels, what ``ssh -L`` does). TensorBoard never
  listens on the host's public interfaces: the tunnel is the only way in.

:meth:`TensorBoard.stop` ends both the server and the tunnel; the dashboard
calls it when the screen that started it closes.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from remote.errors import RemoteError
from remote.host import Host
from remote.layout import resolve_layout
from remote.local import LocalHost

READY_TIMEOUT_S = 60.0
_FREE_PORT = (
    "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
)


class TensorBoardError(RemoteError):
    """TensorBoard could not be started or reached; the message says what to install."""


@dataclass
class TensorBoard:
    """A running TensorBoard: open :attr:`url` here; :meth:`stop` when done."""

    url: str
    host: str
    logdir: str
    _stops: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        """Idempotent: the tunnel first (no new connections), then the server."""
        while self._stops:
            with contextlib.suppress(Exception):  # a host already gone: nothing left to stop
                self._stops.pop()()


def free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Until ``url`` answers an HTTP GET (any status: the server is up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (OSError, urllib.error.URLError):
            pass
        if not alive():
            raise TensorBoardError(f"TensorBoard exited before answering at {url}")
        if time.monotonic() > deadline:
            raise TensorBoardError(f"TensorBoard did not answer at {url} within {timeout:.0f} s")
        time.sleep(0.2)


def local_executable() -> str | None:
    """The tensorboard beside this interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / "tensorboard"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("tensorboard")


def start_tensorboard(host: Host, run_dir: str, *, timeout: float = READY_TIMEOUT_S) -> TensorBoard:
    """Serve ``<run_dir>/tb`` and return once :attr:`TensorBoard.url` answers here."""
    logdir = f"{run_dir.rstrip('/')}/tb"
    if isinstance(host, LocalHost):
        return _start_local(host.name, logdir, timeout)
    if hasattr(host, "transport"):
        return _start_ssh(host, logdir, timeout)
    raise TensorBoardError(f"{host.name}: TensorBoard needs a local or an SSH host")


def _start_local(name: str, logdir: str, timeout: float) -> TensorBoard:
    exe = local_executable()
    if exe is None:
        raise TensorBoardError(
            "tensorboard is not installed here (it comes with the training extra: "
            "pip install 'emoconsole[train]', or pip install tensorboard)"
        )
    port = free_local_port()
    proc = subprocess.Popen(
        [exe, "--logdir", logdir, "--port", str(port), "--host", "127.0.0.1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group: stop() ends any helper it starts too
    )

    def stop() -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    board = TensorBoard(f"http://127.0.0.1:{port}/", name, logdir, [stop])
    try:
        wait_http(board.url, timeout, alive=lambda: proc.poll() is None)
    except BaseException:
        board.stop()
        raise
    return board


def _start_ssh(host: Host, logdir: str, timeout: float) -> TensorBoard:
    layout = resolve_layout(host)
    # The interpreter that trains there has tensorboard (the engine's sink needs it):
    # deploy's venv when it built one, else the host's configured python.
    candidates = " ".join(shlex.quote(p) for p in (f"{layout.venv}/bin/python", host.python))
    found = host.run(
        f"for p in {candidates}; do if $p -c 'import tensorboard' 2>/dev/null; then "
        f"echo $p; $p -c {shlex.quote(_FREE_PORT)}; break; fi; done",
        timeout=120,
    )
    lines = found.stdout.split()
    if len(lines) < 2:
        raise TensorBoardError(
            f"{host.name}: no interpreter there imports tensorboard ({candidates}); "
            "deploy with --env uv, or install tensorboard in the host's python"
        )
    python, remote_port = lines[0], int(lines[1])
    # Beside the launch records: the tool's own corner of the host's runs/.
    out = f"{layout.launches}/tensorboard-{remote_port}.log"
    started = host.run(
        # ";" not "&&": "a && b &" backgrounds a subshell that keeps the channel open.
        f"mkdir -p {shlex.quote(layout.runs)}/.launches; "
        f"nohup {shlex.quote(python)} -m tensorboard.main --logdir {shlex.quote(logdir)} "
        f"--port {remote_port} --host 127.0.0.1 > {shlex.quote(out)} 2>&1 < /dev/null & echo $!",
        timeout=60,
    )
    try:
        pid = int(started.stdout.split()[-1])
    except (IndexError, ValueError):
        raise TensorBoardError(
            f"{host.name}: could not start TensorBoard:\n{started.tail()}"
        ) from None

    def stop_server() -> None:
        # Up to 5 s for TensorBoard to exit on SIGTERM, then SIGKILL: nothing left behind.
        host.run(
            f"kill {pid} 2>/dev/null; for i in $(seq 50); do kill -0 {pid} 2>/dev/null || break; "
            f"sleep 0.1; done; kill -9 {pid} 2>/dev/null; rm -f {shlex.quote(out)}",
            timeout=30,
        )

    forward = PortForward(host, remote_port)
    board = TensorBoard(
        f"http://127.0.0.1:{forward.port}/", host.name, logdir, [stop_server, forward.close]
    )

    def alive() -> bool:
        return host.run(f"kill -0 {pid}", timeout=30).ok

    try:
        wait_http(board.url, timeout, alive=alive)
    except BaseException:
        board.stop()
        raise
    return board


class PortForward:
    """``ssh -L 127.0.0.1:<port>:127.0.0.1:<remote_port>`` over the host's paramiko
    transport: a loopback listener here, one ``direct-tcpip`` channel per connection."""

    def __init__(self, host: Host, remote_port: int) -> None:
        self.host = host
        self.remote_port = remote_port
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="tensorboard-forward", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._pipe, args=(conn, peer), daemon=True).start()

    def _pipe(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        chan = None
        for attempt in range(3):  # a refused channel open under load is usually transient
            try:
                transport = self.host.transport()  # type: ignore[attr-defined]
                chan = transport.open_channel(
                    "direct-tcpip", ("127.0.0.1", self.remote_port), peer, timeout=15
                )
                break
            except Exception:
                if self._closed.is_set() or attempt == 2:
                    conn.close()
                    return
                time.sleep(0.3 * (attempt + 1))
        assert chan is not None
        # A reset from either end is how a browser or a stopped server ends a connection.
        with contextlib.closing(conn), contextlib.closing(chan), contextlib.suppress(OSError):
            while not self._closed.is_set():
                ready, _, _ = select.select([conn, chan], [], [], 0.5)
                if conn in ready:
                    data = conn.recv(65536)
                    if not data:
                        return
                    chan.sendall(data)
                if chan in ready:
                    data = chan.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
