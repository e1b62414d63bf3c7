"""An SSH server as a :class:`~remote.host.Host`, through paramiko.

Behaves like OpenSSH where a user would notice: ~/.ssh/config aliases
(HostName, User, Port, IdentityFile, IdentitiesOnly, ProxyJump, ProxyCommand,
HostKeyAlias, UserKnownHostsFile), the agent and the default key files, and
host keys checked against known_hosts. Unlike a bare paramiko client it never
accepts an unknown or changed host key on its own: the user trusts a key by
typing its fingerprint (``emoconsole hosts trust``), which is stored in
emoconsole's own known_hosts file so ~/.ssh is never written to.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from remote.config import known_hosts_path
from remote.errors import (
    AuthenticationError,
    ChangedHostKeyError,
    CommandTimeoutError,
    ConfigError,
    HostKeyError,
    RemoteError,
    TransportError,
    UnknownHostKeyError,
)
from remote.host import Command, LineStream, Result, check_result, command_line, describe

# paramiko logs a dropped connection from its transport thread; with no logging set
# up that reaches stderr through logging's last resort and garbles a terminal UI.
# The failure itself arrives as a TransportError.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

DEFAULT_PORT = 22
MAX_JUMPS = 8

# Types to ask for one at a time when the user's fingerprint does not match the
# key the server offers first (it may have several host keys).
_HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
)

_TRANSPORT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.ETIMEDOUT,
    errno.EPIPE,
}


class FingerprintMismatchError(HostKeyError):
    """``trust`` was given a fingerprint the server does not present."""

    def __init__(self, name: str, hostname: str, key_type: str, fingerprint: str, typed: str):
        self.typed = typed
        super().__init__(name, hostname, key_type, fingerprint)
        self.hint = "nothing was trusted; find out why the fingerprints differ before retrying"

    def _message(self) -> str:
        return f"{self.hostname} presents {self.key_type} {self.fingerprint}, not {self.typed}"


@dataclass
class SSHTarget:
    """Where an alias leads once ~/.ssh/config and emoconsole's settings are applied."""

    hostname: str
    port: int
    user: str | None
    identity_files: list[str] = field(default_factory=list)
    identities_only: bool = False
    proxy_jump: str | None = None
    proxy_command: str | None = None
    host_key_alias: str | None = None
    known_hosts: list[str] = field(default_factory=list)

    @property
    def host_key_name(self) -> str:
        """The name known_hosts files list this host under, as OpenSSH writes it."""
        if self.host_key_alias:
            return self.host_key_alias
        if self.port == DEFAULT_PORT:
            return self.hostname
        return f"[{self.hostname}]:{self.port}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's format: ``SHA256:`` and unpadded base64, as ``ssh-keygen -lf`` prints."""
    return key.fingerprint


def _normalise_fingerprint(text: str) -> str:
    text = text.strip()
    return text if text.upper().startswith("SHA256:") else f"SHA256:{text}"


def _is_transport_oserror(exc: OSError) -> bool:
    return isinstance(
        exc,
        ConnectionError
        | TimeoutError
        | socket.gaierror
        | socket.herror
        | paramiko.ssh_exception.NoValidConnectionsError,
    ) or (exc.errno in _TRANSPORT_ERRNOS)


@contextlib.contextmanager
def _mapped(host: str, doing: str) -> Iterator[None]:
    """paramiko's and the socket layer's exceptions as this package's, by what the
    caller should do about them (see remote.errors)."""
    try:
        yield
    except RemoteError:
        raise
    except paramiko.AuthenticationException as exc:
        raise AuthenticationError(f"{host}: authentication failed ({exc})") from exc
    except paramiko.BadHostKeyException as exc:
        got = exc.key
        raise ChangedHostKeyError(
            host, exc.hostname, got.get_name(), fingerprint(got), fingerprint(exc.expected_key)
        ) from exc
    except paramiko.SSHException as exc:
        if "No authentication methods available" in str(exc):
            raise AuthenticationError(f"{host}: no key or agent identity to offer") from exc
        raise TransportError(f"{host}: {doing}: {exc or type(exc).__name__}") from exc
    except EOFError as exc:
        raise TransportError(f"{host}: {doing}: connection closed") from exc
    except OSError as exc:
        if _is_transport_oserror(exc):
            raise TransportError(f"{host}: {doing}: {exc}") from exc
        raise


class _VerifyingPolicy(paramiko.MissingHostKeyPolicy):
    """The whole host-key decision, made here rather than half in SSHClient.

    SSHClient is given no keys of its own, so every connection reaches this
    policy: it looks the server up in emoconsole's known_hosts first (a key
    trusted there is the user's explicit, newer word) and then in the user's
    files, and raises unless the presented key is on record.
    """

    def __init__(self, host: SSHHost, target: SSHTarget) -> None:
        self.host = host
        self.target = target

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        known = self.host.known_keys(self.target)
        name = self.target.host_key_name
        if not known:
            raise UnknownHostKeyError(self.host.name, name, key.get_name(), fingerprint(key))
        if any(k.asbytes() == key.asbytes() for k in known.values()):
            return
        on_record = known.get(key.get_name()) or next(iter(known.values()))
        raise ChangedHostKeyError(
            self.host.name, name, key.get_name(), fingerprint(key), fingerprint(on_record)
        )


def _transport_factory(
    preferred: list[str],
) -> Callable[..., paramiko.Transport]:
    """Ask for the key types already on record first, as OpenSSH does; otherwise a
    server with several host keys may show a type we have no record of, which
    would read as a changed key."""

    def make(sock: Any, **kwargs: Any) -> paramiko.Transport:
        transport = paramiko.Transport(sock, **kwargs)
        if preferred:
            opts = transport.get_security_options()
            supported = list(opts.key_types)
            first = [t for t in preferred if t in supported]
            opts.key_types = first + [t for t in supported if t not in first]
        return transport

    return make


def _preferred_key_types(known: dict[str, paramiko.PKey] | None) -> list[str]:
    types: list[str] = []
    for kt in known or {}:
        types += ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if kt == "ssh-rsa" else [kt]
    return types


class SSHHost:
    """One SSH server, one connection (reopened when it drops), many channels."""

    def __init__(
        self,
        name: str,
        host: str | None = None,
        *,
        user: str | None = None,
        port: int | None = None,
        identity_file: str | None = None,
        python: str = "python3",
        workdir: str | None = None,
        ssh_config: str | os.PathLike[str] | None = None,
        known_hosts: list[str | os.PathLike[str]] | None = None,
        trusted_known_hosts: str | os.PathLike[str] | None = None,
        proxy_jump: str | None = None,
        allow_agent: bool = True,
        connect_timeout: float = 10.0,
        keepalive: float = 15.0,
        _depth: int = 0,
    ) -> None:
        """``host`` is an ~/.ssh/config alias or a hostname (default: ``name``);
        ``user``, ``port``, ``identity_file`` and ``proxy_jump`` override the
        config the way ssh's command-line options do. ``known_hosts`` replaces the
        user's files (default: UserKnownHostsFile or ~/.ssh/known_hosts);
        ``trusted_known_hosts`` is where ``trust`` writes (default: emoconsole's
        config dir)."""
        self.name = name
        self.alias = host or name
        self.user = user
        self.port = port
        self.identity_file = identity_file
        self.python = python
        self.workdir = workdir
        self.storage: str | None = None  # s3://bucket/prefix its runs are pushed to
        self.notify_url: str | None = None  # a webhook its runs' guards tell of their end
        self.ssh_config_path = Path(
            os.path.expanduser(ssh_config) if ssh_config else os.path.expanduser("~/.ssh/config")
        )
        self.known_hosts_override = (
            [os.path.expanduser(p) for p in known_hosts] if known_hosts is not None else None
        )
        self.trusted_known_hosts = Path(
            os.path.expanduser(trusted_known_hosts) if trusted_known_hosts else known_hosts_path()
        )
        self.proxy_jump = proxy_jump
        self.allow_agent = allow_agent
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self._depth = _depth
        self._lock = threading.RLock()
        self._client: paramiko.SSHClient | None = None
        self._jump: SSHHost | None = None

    def __repr__(self) -> str:
        return f"SSHHost({self.name!r}, host={self.alias!r})"

    # -- resolving and connecting ------------------------------------------------------------

    def resolve(self) -> SSHTarget:
        """Apply ~/.ssh/config to the alias; emoconsole's own settings win."""
        cfg: dict[str, Any] = {}
        if self.ssh_config_path.is_file():
            try:
                parsed = paramiko.SSHConfig.from_path(str(self.ssh_config_path))
                cfg = dict(parsed.lookup(self.alias))
            except Exception as exc:  # a broken ssh config is the user's to fix; say where
                raise ConfigError(f"{self.ssh_config_path}: cannot parse: {exc}") from exc
        hostname = cfg.get("hostname", self.alias)
        port = int(self.port or cfg.get("port", DEFAULT_PORT))
        user = self.user or cfg.get("user")
        identity_files: list[str] = []
        if self.identity_file:
            path = os.path.expanduser(self.identity_file)
            if not os.path.isfile(path):
                raise ConfigError(f"host {self.name}: identity_file {path} does not exist")
            identity_files.append(path)
        # Missing IdentityFile entries are skipped, as ssh does (it only warns).
        identity_files += [
            p
            for p in (os.path.expanduser(f) for f in cfg.get("identityfile", []))
            if os.path.isfile(p) and p not in identity_files
        ]
        jump = self.proxy_jump if self.proxy_jump is not None else cfg.get("proxyjump")
        if jump and jump.strip().lower() == "none":
            jump = None
        command = cfg.get("proxycommand")
        if command and command.strip().lower() == "none":
            command = None
        if self.known_hosts_override is not None:
            known = list(self.known_hosts_override)
        elif cfg.get("userknownhostsfile"):
            known = [os.path.expanduser(p) for p in shlex.split(cfg["userknownhostsfile"])]
        else:
            known = [os.path.expanduser("~/.ssh/known_hosts")]
        return SSHTarget(
            hostname=hostname,
            port=port,
            user=user,
            identity_files=identity_files,
            identities_only=str(cfg.get("identitiesonly", "no")).lower() == "yes",
            proxy_jump=jump,
            proxy_command=command,
            host_key_alias=cfg.get("hostkeyalias"),
            known_hosts=known,
        )

    def known_keys(self, target: SSHTarget) -> dict[str, paramiko.PKey] | None:
        """Keys on record for the target, emoconsole's own file first."""
        name = target.host_key_name
        for path in [str(self.trusted_known_hosts), *target.known_hosts]:
            if not os.path.isfile(path):
                continue
            try:
                keys = paramiko.HostKeys(path).lookup(name)
            except (OSError, paramiko.SSHException, ValueError):
                continue  # an unreadable file knows nothing; refusing is still the outcome
            if keys:
                return dict(keys)
        return None

    def _open_socket(self, target: SSHTarget) -> tuple[Any, SSHHost | None]:
        """The byte pipe to the server, and the jump host it runs through (if any),
        which the caller owns and closes with the connection."""
        if target.proxy_jump:
            return self._open_jump_channel(target)
        if target.proxy_command:
            return paramiko.ProxyCommand(target.proxy_command), None
        sock = socket.create_connection((target.hostname, target.port), self.connect_timeout)
        return sock, None

    def _open_jump_channel(self, target: SSHTarget) -> tuple[paramiko.Channel, SSHHost]:
        """ProxyJump as ssh -J does it: a direct-tcpip channel through the (verified,
        authenticated) jump host's own transport; the target's host key is still
        checked end to end."""
        if self._depth >= MAX_JUMPS:
            raise ConfigError(f"host {self.name}: ProxyJump nests deeper than {MAX_JUMPS}")
        assert target.proxy_jump
        hops = [h.strip() for h in target.proxy_jump.split(",") if h.strip()]
        spec = hops[-1].removeprefix("ssh://")
        user, _, hostport = spec.rpartition("@")
        hostpart, port = hostport, None
        if hostport.startswith("["):  # [v6addr]:port
            hostpart, _, rest = hostport[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else None
        elif hostport.count(":") == 1:
            hostpart, portpart = hostport.split(":")
            port = int(portpart)
        jump = SSHHost(
            hostpart,
            hostpart,
            user=user or None,
            port=port,
            ssh_config=self.ssh_config_path,
            known_hosts=self.known_hosts_override,  # type: ignore[arg-type]
            trusted_known_hosts=self.trusted_known_hosts,
            proxy_jump=",".join(hops[:-1]) if len(hops) > 1 else None,
            allow_agent=self.allow_agent,
            connect_timeout=self.connect_timeout,
            keepalive=self.keepalive,
            _depth=self._depth + 1,
        )
        try:
            transport = jump.transport()
            with _mapped(self.name, f"opening a channel via {hostpart}"):
                chan = transport.open_channel(
                    "direct-tcpip",
                    (target.hostname, target.port),
                    ("127.0.0.1", 0),
                    timeout=self.connect_timeout,
                )
        except BaseException:
            jump.close()
            raise
        return chan, jump

    def _connect(self) -> paramiko.SSHClient:
        target = self.resolve()
        known = self.known_keys(target)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_VerifyingPolicy(self, target))
        try:
            with _mapped(self.name, f"connecting to {target.hostname}:{target.port}"):
                sock, self._jump = self._open_socket(target)
                client.connect(
                    hostname=target.hostname,
                    port=target.port,
                    username=target.user,
                    key_filename=target.identity_files or None,
                    allow_agent=self.allow_agent and not target.identities_only,
                    look_for_keys=not target.identities_only,
                    timeout=self.connect_timeout,
                    banner_timeout=self.connect_timeout,
                    auth_timeout=self.connect_timeout,
                    channel_timeout=self.connect_timeout,
                    sock=sock,
                    transport_factory=_transport_factory(_preferred_key_types(known)),
                )
                transport = client.get_transport()
                assert transport is not None
                # Keepalives notice a dead peer behind a NAT or a stopped VM, which
                # TCP alone may not for hours.
                transport.set_keepalive(max(1, int(self.keepalive)))
        except BaseException:
            client.close()
            if self._jump is not None:
                self._jump.close()
                self._jump = None
            raise
        return client

    def transport(self) -> paramiko.Transport:
        """The live transport, connecting (again) when there is none or it died."""
        with self._lock:
            transport = self._client.get_transport() if self._client else None
            if transport is None or not transport.is_active():
                self._drop()
                self._client = self._connect()
                transport = self._client.get_transport()
            assert transport is not None
            return transport

    def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if self._jump is not None:
            self._jump.close()
            self._jump = None

    def connected(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return bool(transport and transport.is_active())

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> SSHHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands ------------------------------------------------------------------------------

    def _open_exec(self, line: str) -> paramiko.Channel:
        transport = self.transport()
        try:
            with _mapped(self.name, "opening a session"):
                chan = transport.open_session(timeout=self.connect_timeout)
                chan.exec_command(line)
                chan.shutdown_write()  # no stdin, as locally (stdin=DEVNULL)
        except TransportError:
            # A transport that cannot open a channel is dead even if paramiko has not
            # noticed (keepalives do not wait for replies): reconnect next time.
            with self._lock:
                if self._client is not None and self._client.get_transport() is transport:
                    self._drop()
            raise
        return chan

    def run(
        self,
        cmd: Command,
        *,
        timeout: float | None = None,
        check: bool = False,
        env: dict[str, str] | None = None,
    ) -> Result:
        """See :class:`~remote.host.Host`. One difference from LocalHost: on a
        timeout the channel is closed, and the remote command ends at its next
        write to the closed pipe rather than at once."""
        chan = self._open_exec(command_line(cmd, env))
        deadline = None if timeout is None else time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        try:
            with _mapped(self.name, f"running {describe(cmd)!r}"):
                while True:
                    if chan.recv_ready():
                        out += chan.recv(65536)
                        continue
                    if chan.recv_stderr_ready():
                        err += chan.recv_stderr(65536)
                        continue
                    if chan.eof_received or chan.closed:
                        break
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        tail = Result(False, -1, _text(out), _text(err)).tail()
                        raise CommandTimeoutError(describe(cmd), timeout or 0.0, tail)
                    # The channel's pipe wakes select on data, EOF and close; the cap
                    # only bounds a missed wake-up.
                    select.select([chan], [], [], 0.5 if left is None else min(left, 0.5))
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not chan.status_event.wait(left):
                    tail = Result(False, -1, _text(out), _text(err)).tail()
                    raise CommandTimeoutError(describe(cmd), timeout or 0.0, tail)
                # Data may still sit in the buffers when EOF and close came together.
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                code = chan.recv_exit_status()
                if code == -1 and not self.connected():
                    raise TransportError(f"{self.name}: connection lost while running a command")
        finally:
            chan.close()
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
        chan = self._open_exec(command_line(cmd, env))
        lines = _ChannelLineStream(describe(cmd), idle_timeout, chan)
        try:
            yield lines
        finally:
            lines.close()

    # -- files -------------------------------------------------------------------------------

    def put(self, local: str, remote: str) -> None:
        transport = self.transport()
        with (
            _mapped(self.name, f"uploading {local}"),
            paramiko.SFTPClient.from_transport(transport) as sftp,
        ):
            assert sftp is not None
            sftp.put(os.path.expanduser(local), _sftp_path(remote), confirm=True)

    def get(self, remote: str, local: str) -> None:
        """SFTP with prefetch (about 20x faster than without); lands by rename so a
        dropped transfer never leaves a half file under the final name."""
        target = Path(local).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        transport = self.transport()
        with (
            _mapped(self.name, f"downloading {remote}"),
            paramiko.SFTPClient.from_transport(transport) as sftp,
        ):
            assert sftp is not None
            sftp.get(_sftp_path(remote), str(part), prefetch=True)
        os.replace(part, target)

    # -- host keys ---------------------------------------------------------------------------

    def fetch_host_key(self, key_type: str | None = None) -> paramiko.PKey:
        """The key the server presents (of ``key_type`` when given), without
        authenticating: what ``trust`` compares the user's fingerprint with."""
        target = self.resolve()
        with _mapped(self.name, f"fetching the host key of {target.hostname}"):
            sock, jump = self._open_socket(target)
            transport = paramiko.Transport(sock)
            try:
                if key_type:
                    transport.get_security_options().key_types = [key_type]
                transport.start_client(timeout=self.connect_timeout)
                return transport.get_remote_server_key()
            finally:
                transport.close()
                if jump is not None:
                    jump.close()

    def trust_host_key(self, typed_fingerprint: str) -> paramiko.PKey:
        """Record the server's key in emoconsole's known_hosts if, and only if, the
        server presents a key with the fingerprint the user typed (checked out of
        band, e.g. from the cloud console or ``ssh-keygen -lf`` on the host)."""
        typed = _normalise_fingerprint(typed_fingerprint)
        target = self.resolve()
        first = self.fetch_host_key()
        match = first if fingerprint(first) == typed else None
        if match is None:
            for key_type in _HOST_KEY_TYPES:
                try:
                    key = self.fetch_host_key(key_type)
                except TransportError:
                    continue  # the server has no key of this type
                if fingerprint(key) == typed:
                    match = key
                    break
        if match is None:
            raise FingerprintMismatchError(
                self.name, target.host_key_name, first.get_name(), fingerprint(first), typed
            )
        _record_host_key(self.trusted_known_hosts, target.host_key_name, match)
        return match


def _record_host_key(path: Path, name: str, key: paramiko.PKey) -> None:
    """Replace whatever emoconsole had on record for ``name``: trusting a key says
    this is the host's key now."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = paramiko.HostKeys()
    if path.exists():
        keys.load(str(path))
    existing = keys.lookup(name)
    if existing:
        for key_type in list(existing.keys()):
            del existing[key_type]
    keys.add(name, key.get_name(), key)
    tmp = path.with_name(f".{path.name}.tmp")
    keys.save(str(tmp))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _sftp_path(remote: str) -> str:
    # SFTP does not expand ~, but it starts in the home directory.
    if remote == "~":
        return "."
    return remote[2:] if remote.startswith("~/") else remote


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


class _ChannelLineStream(LineStream):
    def __init__(self, command: str, idle_timeout: float | None, chan: paramiko.Channel):
        super().__init__(command, idle_timeout)
        self.chan = chan
        self._start_pumps(lambda: chan.recv(65536), lambda: chan.recv_stderr(65536))

    @property
    def exit_code(self) -> int | None:
        if not self.chan.exit_status_ready():
            return None
        code = self.chan.recv_exit_status()
        return None if code == -1 else code

    def _wait_status(self, timeout: float) -> None:
        self.chan.status_event.wait(timeout)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        # Closing the channel ends the remote command's stdout; the watcher exits on
        # its next write (EPIPE), within one interval.
        with contextlib.suppress(Exception):
            self.chan.close()
        for t in self._threads:
            t.join(2.0)
