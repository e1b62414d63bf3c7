"""Downloading a run directory: resumable, checked by SHA-256, landed by rename.

``download_run(host, remote_dir, local_dir)`` asks the host for the run's
files (:mod:`remote.onhost.manifest`, run where the bytes are: sizes at once, then
each file's SHA-256 as it is computed, so hashing on the host overlaps the
transfer), then for each file, smallest first:

- a local file of the same size and hash is left alone (``skipped``);
- otherwise the bytes go to ``<name>.part`` beside the final name. A ``.part``
  left by an interrupted download is continued from its length (``resumed``);
- the ``.part`` is hashed as it grows and must match the host's hash before it
  is renamed over the final name (``os.replace``), so a reader never sees a
  half file or a wrong one. On a mismatch it is deleted and fetched again from
  zero (``refetched``); a mismatch on a fresh fetch means the file changed on
  the host meanwhile, so the host is asked for its hash again first. A file
  that grew after it was hashed (a live run's log) is cut back to the bytes
  that were hashed: a consistent snapshot.

How the bytes travel (``method``):

- ``copy``: :class:`~remote.local.LocalHost`, a plain file copy.
- ``scp``: the OpenSSH client, whose throughput paramiko cannot approach
  (1 GiB on loopback: scp 2.7-4 s, paramiko SFTP with prefetch 9.5 s). scp
  cannot resume, so a partial is continued with ``ssh host tail -c +N``.
- ``rsync``: ``rsync --partial --append`` over the same ssh. Not
  ``--append-verify``: the SHA-256 check is the verification here, and
  rsync's would read the whole file again and quietly patch a bad partial, so
  the report could not say that it was refetched.
- ``sftp``: paramiko SFTP with prefetch on the host's open connection.

``auto`` is ``copy`` for a local host; for SSH it is scp when the OpenSSH
client is installed (it needs nothing on the host beyond the SFTP subsystem,
and measured faster than rsync, which must also be installed on the host),
else SFTP; files under :data:`BULK_MIN_BYTES` always go over SFTP on the
connection already open, where a new ssh process would spend longer on its
handshake than on the bytes.

The OpenSSH client is driven with the very settings :class:`~remote.ssh.SSHHost`
resolved (host, port, user, identity files, ProxyJump/ProxyCommand, and host
keys checked strictly against emoconsole's known_hosts and the user's files)
through a generated ssh config file that the jump hosts see too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from remote.errors import RemoteError, TransportError
from remote.host import Command, Host
from remote.layout import python_module
from remote.local import LocalHost
from remote.openssh import TARGET_ALIAS, openssh_config

if TYPE_CHECKING:
    import paramiko


METHODS: tuple[str, ...] = ("auto", "rsync", "scp", "sftp", "copy")
BULK_MIN_BYTES = 8 << 20  # auto: smaller files travel over SFTP on the open connection
PART_SUFFIX = ".part"
CHUNK = 1 << 20
FOLLOW_READ = 4 << 20  # bytes hashed per read while following a writer process
POLL_S = 0.02
MAX_ATTEMPTS = 3
MANIFEST_SILENCE_S = 60.0  # the host's hasher reports at least every 5 s


class DownloadError(RemoteError):
    """A run could not be downloaded: no such run, a method that cannot be used
    here, a transfer program that failed, or a file that never matched its hash."""


# -- what a download reports --------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the run directory, POSIX
    size: int  # at listing time; the hash line has the size that was hashed
    mtime: float


@dataclass
class FileReport:
    path: str
    size: int
    sha256: str
    action: Literal["fetched", "resumed", "skipped"]
    method: str | None = None  # None when skipped
    bytes_transferred: int = 0  # over every attempt of this download
    resumed_from: int = 0  # length of the partial the first attempt continued
    refetched: bool = False  # a hash check failed; fetched again from zero
    attempts: int = 0


@dataclass
class DownloadReport:
    host: str
    remote_dir: str  # absolute, as the host resolved it
    local_dir: Path
    method: str  # the bulk method (auto resolved)
    files: list[FileReport] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # listed, then gone before hashed
    seconds: float = 0.0

    @property
    def bytes_transferred(self) -> int:
        return sum(f.bytes_transferred for f in self.files)

    @property
    def skipped(self) -> list[str]:
        return [f.path for f in self.files if f.action == "skipped"]

    @property
    def refetched(self) -> list[str]:
        return [f.path for f in self.files if f.refetched]

    def file(self, path: str) -> FileReport:
        for report in self.files:
            if report.path == path:
                return report
        raise KeyError(path)


@dataclass(frozen=True)
class DownloadProgress:
    """One update for a progress bar. ``done``/``total`` cover the whole run
    (skipped files count as done); ``file_done`` includes a resumed prefix."""

    path: str
    file_done: int
    file_size: int
    done: int
    total: int
    state: State


ProgressCallback = Callable[[DownloadProgress], None]
State = Literal["fetching", "skipped", "done"]


# -- the host's listing, as it arrives -----------------------------------------------------------


class _ManifestFeed:
    """The listing and the hashes from ``remote.manifest --lines``, filled by a
    reader thread while the main thread transfers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.root: str | None = None
        self.files: list[RemoteFile] | None = None
        self._hashes: dict[str, tuple[int, str] | None] = {}
        self._ended = False
        self._error: BaseException | None = None

    def feed(self, msg: dict[str, Any]) -> None:
        kind = msg.get("kind")
        with self._cond:
            if kind == "list":
                self.root = str(msg["root"])
                self.files = [
                    RemoteFile(_safe_relpath(f["path"]), int(f["size"]), float(f["mtime"]))
                    for f in msg["files"]
                ]
            elif kind == "hash":
                path = str(msg["path"])
                missing = msg.get("missing")
                self._hashes[path] = None if missing else (int(msg["size"]), str(msg["sha256"]))
            elif kind == "error":
                self._error = DownloadError(str(msg.get("message")))
                self._error.hint = (
                    "`emoconsole runs --host HOST` lists a host's runs; "
                    "or pass the run directory's path"
                )
            elif kind == "end":
                self._ended = True
            self._cond.notify_all()

    def finish(
        self, error: BaseException | None = None, exit_code: int | None = 0, detail: str = ""
    ) -> None:
        """The source stopped: after ``end`` that is normal, before it an error:
        the command's own when it exited (no python there, say), a transport one
        when it has no exit status (the connection dropped)."""
        with self._cond:
            if self._error is None and error is not None:
                self._error = error
            if self._error is None and not self._ended:
                what = "sent no file listing" if self.files is None else "stopped listing"
                message = f"the host {what}" + (f": {detail}" if detail else "")
                if exit_code is None:
                    self._error = TransportError(message + " (connection lost)")
                else:
                    self._error = DownloadError(f"{message} (exit {exit_code})")
            self._ended = True
            self._cond.notify_all()

    def listing(self) -> tuple[str, list[RemoteFile]]:
        with self._cond:
            self._cond.wait_for(lambda: self.files is not None or self._ended or self._error)
            if self.files is None or self.root is None:
                raise self._error or DownloadError("the host sent no file listing")
            return self.root, self.files

    def peek(self, path: str) -> tuple[int, str] | None:
        with self._cond:
            return self._hashes.get(path)

    def expected(self, path: str) -> tuple[int, str] | None:
        """(size, sha256) as the host hashed it; None when the file vanished."""
        with self._cond:
            self._cond.wait_for(lambda: path in self._hashes or self._ended)
            if path in self._hashes:
                return self._hashes[path]
            raise self._error or DownloadError(f"the host never hashed {path}")


def _safe_relpath(path: str) -> str:
    """A host's listing names files under the local directory only: an absolute
    path or a ``..`` would let a hostile or broken host write anywhere."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or any(part in ("", "..") for part in pure.parts):
        raise DownloadError(f"refusing a file outside the run directory: {path!r}")
    if any("\\" in part or part.endswith(PART_SUFFIX) for part in pure.parts):
        raise DownloadError(f"refusing a file name that cannot be stored safely: {path!r}")
    return pure.as_posix()


def manifest_command(host: Host, run_dir: str, *args: str) -> Command:
    """``python -m remote.manifest`` on the host, found as the watcher is found."""
    return python_module(host, "remote.manifest", [run_dir, *args])


# -- hashing and writing ----------------------------------------------------------------------


def _hash_file(path: Path, limit: int | None = None) -> Any:
    """A SHA-256 object over the file (its first ``limit`` bytes when given)."""
    digest = hashlib.sha256()
    if limit == 0:
        return digest
    buf = bytearray(FOLLOW_READ)
    view = memoryview(buf)
    left = limit
    with open(path, "rb", buffering=0) as fh:
        while left is None or left > 0:
            n = fh.readinto(view if left is None or left >= len(buf) else view[:left])
            if not n:
                break
            digest.update(view[:n])
            if left is not None:
                left -= n
    return digest


def sha256_local(path: Path, limit: int | None = None) -> str:
    """Hex SHA-256 of a local file (of its first ``limit`` bytes when given)."""
    return _hash_file(path, limit).hexdigest()


def _append_chunks(chunks: Iterable[bytes], part: Path, start: int, tick: Callable[[int], None]):
    """Write ``chunks`` after the first ``start`` bytes of ``part``, hashing the
    whole file as it goes. Whatever was written before an exception stays: it is
    a valid prefix for the next attempt to continue."""
    digest = _hash_file(part, start)
    with open(part, "r+b" if start else "wb") as out:
        out.seek(start)
        out.truncate()
        done = start
        for chunk in chunks:
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            tick(done)
    return digest


def _kill(proc: subprocess.Popen) -> None:
    """End the transfer program and everything in its session, and return only
    when none of them is left. Waiting for ``proc`` alone is not enough: rsync's
    receiver, the process that writes the ``.part``, is a child of the rsync that
    was started, which exits on SIGTERM without waiting for it. A receiver still
    in a write or its closing ``ftruncate`` would then change the partial after
    the interrupt returned, under the next call that measured and continued it."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
            if sig == signal.SIGTERM:  # a stopped member acts on it only when continued
                os.killpg(proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + wait
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        while not _group_gone(proc.pid):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.005)
        else:
            return


def _group_gone(pgid: int) -> bool:
    """No process of the group can still write: none left, or only zombies
    (the group's leader is gone, so init reaps them; on Linux they are told
    apart through /proc, elsewhere a zombie counts until it is reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    proc_dir = Path("/proc")
    if not (proc_dir / "self" / "stat").exists():
        return False
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return False
    return True


def _follow_process(
    argv: list[str],
    part: Path,
    start: int,
    tick: Callable[[int], None],
    *,
    stdout_to_part: bool = False,
):
    """Run a program that writes ``part`` (scp, rsync, or ``ssh tail`` into it)
    and hash the file as it grows, so the check costs no second read at the end.
    The program runs in its own session: an exception here (the progress
    callback, Ctrl-C) ends it and everything it started."""
    if not start:
        part.unlink(missing_ok=True)
    digest = hashlib.sha256()
    pos = 0
    with tempfile.TemporaryFile() as errlog:
        out = open(part, "ab") if stdout_to_part else None  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out if out is not None else subprocess.DEVNULL,
                stderr=errlog,
                start_new_session=True,
            )
        except OSError as exc:
            raise DownloadError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        finally:
            if out is not None:
                out.close()
        reader = None
        buf = bytearray(FOLLOW_READ)  # reused: the hashing loop allocates nothing
        view = memoryview(buf)
        try:
            while True:
                exited = proc.poll() is not None
                if reader is None:
                    with contextlib.suppress(FileNotFoundError):
                        reader = open(part, "rb", buffering=0)  # noqa: SIM115
                if reader is not None:
                    n = reader.readinto(buf)
                    if n:
                        digest.update(view[:n])
                        pos += n
                        tick(pos)
                        continue
                if exited:
                    break
                time.sleep(POLL_S)
        except BaseException:
            _kill(proc)
            raise
        finally:
            if reader is not None:
                reader.close()
        if proc.returncode != 0:
            errlog.seek(0)
            lines = errlog.read().decode("utf-8", "replace").strip().splitlines()
            last = f": {lines[-1]}" if lines else ""
            raise DownloadError(f"{argv[0]} exited with {proc.returncode}{last}")
    return digest


def _exit_master(config: Path) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["ssh", "-F", str(config), "-O", "exit", TARGET_ALIAS],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
        )


def _have(*programs: str) -> bool:
    return all(shutil.which(p) for p in programs)


def _resolve_method(host: Host, method: str) -> str:
    if method not in METHODS:
        raise DownloadError(f"unknown download method {method!r} (known: {', '.join(METHODS)})")
    if isinstance(host, LocalHost):
        if method not in ("auto", "copy"):
            raise DownloadError(f"method {method!r} needs an SSH host; {host.name} is this machine")
        return "copy"
    if method == "copy":
        raise DownloadError(f"method 'copy' is for this machine; {host.name} is an SSH host")
    if method == "auto":
        if _have("ssh", "scp"):
            return "scp"
        return "sftp"
    needs = {"scp": ("ssh", "scp"), "rsync": ("ssh", "rsync"), "sftp": ()}[method]
    missing = [p for p in needs if not shutil.which(p)]
    if missing:
        raise DownloadError(
            f"method {method!r} needs {', '.join(missing)} on this machine "
            f"(install openssh-client / rsync), or use --method sftp"
        )
    return method


# -- one download ------------------------------------------------------------------------------


class _Session:
    """Everything one ``download_run`` holds open: the manifest stream, an SFTP
    client, the generated ssh config; closed together."""

    def __init__(
        self,
        host: Host,
        local_dir: Path,
        method: str,
        auto: bool,
        progress: ProgressCallback | None,
    ) -> None:
        self.host = host
        self.local_dir = local_dir
        self.method = method  # the bulk method, resolved
        self.auto = auto  # small files may take SFTP instead
        self.progress = progress
        self.feed = _ManifestFeed()
        self.stack = contextlib.ExitStack()
        self.root = ""
        self.total = 0
        self.done_before = 0
        self._sftp: paramiko.SFTPClient | None = None
        self._ssh_config: Path | None = None
        self._master: threading.Thread | None = None
        self._rehashed: dict[str, tuple[int, str] | None] = {}
        self._closing = threading.Event()

    # -- the listing --

    def start_manifest(self, run_dir: str) -> None:
        """Start the host's ``remote.manifest --lines`` and a thread feeding
        :attr:`feed` from it; the listing is waited for by the caller."""
        if isinstance(self.host, LocalHost):
            from remote.onhost.manifest import iter_manifest

            path = Path(os.path.expanduser(run_dir))
            if self.host.workdir and not path.is_absolute():
                path = Path(os.path.expanduser(self.host.workdir)) / path
            self._pump(iter_manifest(path), lambda: (0, ""))
            return
        cmd = manifest_command(self.host, run_dir, "--lines")
        lines = self.stack.enter_context(self.host.stream(cmd, idle_timeout=MANIFEST_SILENCE_S))

        def messages() -> Iterator[dict[str, Any]]:
            for line in lines:
                if line.startswith("{"):  # a login shell may print a banner first
                    with contextlib.suppress(ValueError):
                        yield json.loads(line)

        def outcome() -> tuple[int | None, str]:
            return lines.wait_exit(2.0), lines.stderr_tail.strip()

        self._pump(messages(), outcome)

    def _pump(
        self,
        messages: Iterable[dict[str, Any]],
        outcome: Callable[[], tuple[int | None, str]],
    ) -> None:
        def run() -> None:
            error: BaseException | None = None
            try:
                for msg in messages:
                    if self._closing.is_set():  # the download ended: stop hashing
                        return
                    self.feed.feed(msg)
            except BaseException as exc:  # handed to the waiting main thread
                error = exc
            code, stderr = outcome()
            last = (stderr.splitlines() or [""])[-1]
            if error is None and "No module named" in last:
                where = self.host.workdir or "its home directory"
                error = DownloadError(
                    f"{self.host.name} has no emoconsole code in {where} ({last}); deploy first"
                )
            self.feed.finish(error, code, last)

        threading.Thread(target=run, name="manifest-reader", daemon=True).start()

    def rehash(self, path: str) -> tuple[int, str] | None:
        """Ask the host again for one file's hash: it changed while fetched."""
        if isinstance(self.host, LocalHost):
            from remote.onhost.manifest import manifest

            doc = manifest(Path(self.root), [path])
        else:
            cmd = manifest_command(self.host, self.root, "--only", path)
            result = self.host.run(cmd, timeout=None, check=True)
            doc = json.loads(result.stdout.strip().splitlines()[-1])
        files = {f["path"]: f for f in doc["files"]}
        entry = files.get(path)
        value = None if entry is None else (int(entry["size"]), str(entry["sha256"]))
        self._rehashed[path] = value
        return value

    def expected(self, path: str) -> tuple[int, str] | None:
        if path in self._rehashed:
            return self._rehashed[path]
        return self.feed.expected(path)

    # -- progress --

    def tick(self, rf: RemoteFile, file_done: int, state: State = "fetching") -> None:
        if self.progress is None:
            return
        done = self.done_before + min(file_done, rf.size)
        self.progress(DownloadProgress(rf.path, file_done, rf.size, done, self.total, state))

    def file_finished(self, rf: RemoteFile, state: State) -> None:
        self.tick(rf, rf.size, state)
        self.done_before += rf.size

    # -- transports --

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            import paramiko

            transport = self.host.transport()  # type: ignore[attr-defined]
            try:
                self._sftp = paramiko.SFTPClient.from_transport(transport)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise TransportError(f"{self.host.name}: cannot open SFTP: {exc}") from exc
            self.stack.callback(self._sftp.close)  # type: ignore[union-attr]
        assert self._sftp is not None
        return self._sftp

    def ssh_config(self) -> Path:
        if self._ssh_config is None:
            # Short: a ControlPath socket name must fit in sockaddr_un (about 100 bytes).
            tmp = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="emo-ssh-")))
            path = tmp / "ssh_config"
            path.write_text(openssh_config(self.host, str(tmp / "cm")))  # type: ignore[arg-type]
            path.chmod(0o600)
            self._ssh_config = path
            # Runs before the directory is removed (ExitStack unwinds in reverse).
            self.stack.callback(self._stop_master, path)
        return self._ssh_config

    def open_master(self) -> None:
        """Open the shared OpenSSH connection while the host is still listing and
        hashing, so the first scp does not wait for a handshake. Failures are
        left for that scp to report, with its own message."""
        config = self.ssh_config()

        def connect() -> None:
            # -f: ssh returns once authenticated and the master stays in the
            # background; output goes nowhere, else run() would wait on its pipes.
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["ssh", "-F", str(config), "-N", "-f", TARGET_ALIAS],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=self.host.connect_timeout * 3 + 30,  # type: ignore[attr-defined]
                )

        self._master = threading.Thread(target=connect, name="ssh-master", daemon=True)
        self._master.start()

    def _stop_master(self, config: Path) -> None:
        """End the shared connection rather than leave it to ControlPersist:
        nothing of a finished download should linger."""
        if self._master is not None:
            self._master.join(self.host.connect_timeout * 3 + 30)  # type: ignore[attr-defined]
        _exit_master(config)

    def method_for(self, rf: RemoteFile) -> str:
        if self.auto and self.method in ("scp", "rsync") and rf.size < BULK_MIN_BYTES:
            return "sftp"
        return self.method

    def fetch(self, method: str, rf: RemoteFile, part: Path, start: int) -> Any:
        """Bring the bytes of ``rf`` after the first ``start`` into ``part``;
        returns a hash object over the whole of ``part`` as written."""
        remote = f"{self.root.rstrip('/')}/{rf.path}"

        def tick(done: int) -> None:
            self.tick(rf, done)

        if method == "copy":
            with open(remote, "rb") as src:
                src.seek(start)
                return _append_chunks(iter(lambda: src.read(CHUNK), b""), part, start, tick)
        if method == "sftp":
            return self._fetch_sftp(remote, part, start, tick)
        config = str(self.ssh_config())
        if self._master is not None:
            self._master.join()
        if method == "rsync":
            argv = [
                "rsync", "--partial", "--append", "-e", f"ssh -F {shlex.quote(config)}",
                f"{TARGET_ALIAS}:{remote}", str(part),
            ]  # fmt: skip
            return _follow_process(argv, part, start, tick)
        if start:  # scp cannot resume: continue with the remaining bytes through ssh
            command = f"tail -c +{start + 1} -- {shlex.quote(remote)}"
            argv = ["ssh", "-F", config, TARGET_ALIAS, command]
            return _follow_process(argv, part, start, tick, stdout_to_part=True)
        argv = ["scp", "-q", "-F", config, f"{TARGET_ALIAS}:{remote}", str(part)]
        return _follow_process(argv, part, start, tick)

    def _fetch_sftp(self, remote: str, part: Path, start: int, tick: Callable[[int], None]) -> Any:
        import paramiko

        sftp = self.sftp()
        try:
            with sftp.open(remote, "rb") as fh:
                size = fh.stat().st_size
                fh.seek(start)
                if start < size:
                    # Without prefetch every read is a round trip: 175 s for 1 GiB
                    # on loopback instead of 9.5 s.
                    fh.prefetch(size)

                def chunks() -> Iterator[bytes]:
                    pos = start
                    while pos < size:
                        data = fh.read(min(CHUNK, size - pos))
                        if not data:
                            break
                        pos += len(data)
                        yield data

                return _append_chunks(chunks(), part, start, tick)
        except (paramiko.SSHException, EOFError) as exc:
            raise TransportError(f"{self.host.name}: SFTP transfer of {remote}: {exc}") from exc

    def close(self) -> None:
        self._closing.set()
        self.stack.close()


def download_run(
    host: Host,
    remote_run_dir: str,
    local_dir: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    method: str = "auto",
) -> DownloadReport:
    """Download one run directory into ``local_dir`` (see the module docstring).

    An exception from ``progress`` (or Ctrl-C) stops the download at once,
    leaving ``.part`` files that the next call continues.
    """
    started = time.monotonic()
    local = Path(local_dir).expanduser()
    bulk = _resolve_method(host, method)
    session = _Session(host, local, bulk, method == "auto", progress)
    try:
        if bulk in ("scp", "rsync"):
            session.open_master()
        session.start_manifest(remote_run_dir)
        root, files = session.feed.listing()
        session.root = root
        session.total = sum(f.size for f in files)
        local.mkdir(parents=True, exist_ok=True)
        report = DownloadReport(host.name, root, local, bulk)
        for rf in files:
            result = _download_file(session, rf)
            if result is None:
                report.missing.append(rf.path)
                session.done_before += rf.size
            else:
                report.files.append(result)
    finally:
        session.close()
    report.seconds = time.monotonic() - started
    return report


def _download_file(s: _Session, rf: RemoteFile) -> FileReport | None:
    final = s.local_dir / rf.path
    part = final.with_name(final.name + PART_SUFFIX)
    final.parent.mkdir(parents=True, exist_ok=True)

    if final.is_file() and final.stat().st_size == rf.size:
        expected = s.expected(rf.path)
        if expected is None:
            return None
        if expected[0] == rf.size and sha256_local(final) == expected[1]:
            part.unlink(missing_ok=True)
            s.file_finished(rf, "skipped")
            return FileReport(rf.path, rf.size, expected[1], "skipped")

    method = s.method_for(rf)
    report = FileReport(rf.path, rf.size, "", "fetched", method)
    while True:
        report.attempts += 1
        known = s._rehashed.get(rf.path) or s.feed.peek(rf.path)
        size_now = known[0] if known else rf.size
        start = part.stat().st_size if part.exists() else 0
        if start > size_now:  # longer than the file: not a prefix of it
            part.unlink()
            start = 0
        if report.attempts == 1 and start:
            report.action, report.resumed_from = "resumed", start
        if start < size_now or not part.exists():
            try:
                digest = s.fetch(method, rf, part, start)
            except FileNotFoundError as exc:  # gone on the host since it was listed
                if exc.filename is not None and Path(exc.filename) == part:
                    raise
                if s.rehash(rf.path) is None:
                    part.unlink(missing_ok=True)
                    return None
                raise DownloadError(f"{rf.path}: cannot be read on {s.host.name}: {exc}") from exc
        else:  # a complete partial from last time: only the check is left
            digest = _hash_file(part, start)
        have = part.stat().st_size
        report.bytes_transferred += max(0, have - start)

        expected = s.expected(rf.path)
        if expected is None:
            part.unlink(missing_ok=True)
            return None
        want_size, want_sha = expected
        if have == want_size and digest.hexdigest() == want_sha:
            ok = True
        elif have >= want_size:
            # The quick hash missed (a writer that filled a hole out of order, or a
            # file that grew after it was hashed): the bytes on disk decide.
            ok = sha256_local(part, want_size) == want_sha
            if ok and have > want_size:
                with open(part, "r+b") as fh:  # keep the snapshot that was hashed
                    fh.truncate(want_size)
        else:
            ok = False
        if ok:
            os.utime(part, (rf.mtime, rf.mtime))
            os.replace(part, final)
            report.size, report.sha256 = want_size, want_sha
            s.file_finished(rf, "done")
            return report

        part.unlink(missing_ok=True)
        report.refetched = True
        if report.attempts >= MAX_ATTEMPTS:
            raise DownloadError(
                f"{rf.path}: still differs from the host's SHA-256 after "
                f"{MAX_ATTEMPTS} attempts; is it being rewritten on {s.host.name}?"
            )
        # A fresh copy that does not match: the file changed on the host after it
        # was hashed. Ask again before the next attempt (None: it is gone now).
        if start == 0 and s.rehash(rf.path) is None:
            return None
