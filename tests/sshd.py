"""A real OpenSSH server on loopback for the remote layer's tests.

Each server lives in its own temporary directory with its own host key, config,
PidFile and log, listens on 127.0.0.1 on a free port, and accepts one generated
client key. Tests that break a server (kill it, change its key) get their own
from ``make_sshd``; the rest share one per session. HOME, XDG_CONFIG_HOME and
the agent socket are redirected per test (``ssh_env``), so nothing here reads
or writes the real ~/.ssh or the user's emoconsole config.

Skips (with the reason) only when no sshd exists and none can be installed.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")
_install_attempted: list[str] = []


def find_sshd() -> str | None:
    for path in SSHD_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("sshd")


def ensure_sshd() -> str:
    """The sshd binary, installed with apt-get once if it is missing and we may."""
    path = find_sshd()
    if path:
        return path
    if not _install_attempted:
        _install_attempted.append("tried")
        if os.geteuid() == 0 and shutil.which("apt-get"):
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "openssh-server"],
                capture_output=True,
                timeout=300,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        path = find_sshd()
    if not path:
        pytest.skip("no OpenSSH server: apt-get install openssh-server (needs root) to run")
    if not shutil.which("ssh-keygen"):
        pytest.skip("no ssh-keygen: apt-get install openssh-client to run")
    return path


def keygen(path: Path, comment: str = "emoconsole-test") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def openssh_fingerprint(pub: Path) -> str:
    """The fingerprint as OpenSSH prints it: what a user compares against."""
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SSHServer:
    root: Path
    client_key: Path
    port: int
    sshd: str
    proc: subprocess.Popen | None = None
    generation: int = 0

    @property
    def host_key(self) -> Path:
        return self.root / f"host_key_{self.generation}"

    @property
    def user(self) -> str:
        return getpass.getuser()

    @property
    def remote_home(self) -> Path:
        """HOME of the sessions this server starts: the 'remote' user's home."""
        return self.root / "home"

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    @property
    def host_key_name(self) -> str:
        return f"[127.0.0.1]:{self.port}"

    def fingerprint(self) -> str:
        return openssh_fingerprint(self.host_key.with_suffix(".pub"))

    def known_hosts_line(self) -> str:
        key_type, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"{self.host_key_name} {key_type} {blob}\n"

    def _write_config(self) -> Path:
        config = self.root / "sshd_config"
        config.write_text(
            f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {self.root / "sshd.pid"}
AuthorizedKeysFile {self.root / "authorized_keys"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
Subsystem sftp internal-sftp
UseDNS no
PrintMotd no
# Sessions get a HOME of their own: bash run by sshd sources ~/.bashrc, and a
# machine's rc (pyenv's init runs `pyenv rehash`, which waits 60 s on a lock
# that a session killed mid-rehash leaves behind) must not decide whether a
# remote command takes 0.01 s or 60 s.
SetEnv HOME={self.remote_home}
MaxSessions 50
MaxStartups 50
LogLevel VERBOSE
"""
        )
        return config

    def start(self, new_host_key: bool = False) -> SSHServer:
        if new_host_key or not self.host_key.exists():
            if self.host_key.exists():
                self.generation += 1
            keygen(self.host_key, "host")
        if os.geteuid() == 0:
            # Privilege separation needs this directory when sshd runs as root.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.remote_home.mkdir(exist_ok=True)
        config = self._write_config()
        self.proc = subprocess.Popen(
            [self.sshd, "-D", "-f", str(config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log.read_text() if self.log.exists() else ""
                raise RuntimeError(f"sshd exited with {self.proc.returncode}:\n{log[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2) as probe,
            ):
                probe.recv(4)  # the banner: sshd is accepting, not just bound
                return self
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not start listening on port {self.port}")

    def sessions(self) -> list[psutil.Process]:
        """The per-connection sshd processes and everything they run."""
        if self.proc is None:
            return []
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the daemon and every session under it (and so the commands they
        run): what a crashed or rebooted host looks like from the client."""
        if self.proc is None:
            return
        victims = self.sessions()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        for proc in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.proc.wait(5)
        _wait_dead(victims)
        self.proc = None

    def restart(self, new_host_key: bool = False) -> SSHServer:
        self.kill()
        return self.start(new_host_key=new_host_key)

    def ssh_host(self, name: str = "box", **kwargs):
        """An SSHHost for this server, as the user (the same machine, so the repo
        and this interpreter are the 'remote' code and python)."""
        from remote.ssh import SSHHost

        host = kwargs.pop("host", "127.0.0.1")
        options = {
            "user": self.user,
            "port": self.port,
            "identity_file": str(self.client_key),
            "python": sys.executable,
            "workdir": str(REPO),
            "allow_agent": False,
            "connect_timeout": 5.0,
            **kwargs,
        }
        return SSHHost(name, host, **options)


def _wait_dead(procs: list[psutil.Process], timeout: float = 5.0) -> None:
    """Until each is gone or a zombie: orphans are reaped by PID 1, which in a
    container may take its time, and a zombie runs nothing."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        while time.monotonic() < deadline:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.01)


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory) -> Path:
    """The client key every test server accepts (authorized_keys is copied in)."""
    ensure_sshd()
    root = tmp_path_factory.mktemp("ssh-client")
    keygen(root / "id_ed25519", "client")
    keygen(root / "id_wrong", "not-authorized")
    return root


def _new_server(root: Path, keys: Path) -> SSHServer:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(keys / "id_ed25519.pub", root / "authorized_keys")
    return SSHServer(
        root=root, client_key=keys / "id_ed25519", port=free_port(), sshd=ensure_sshd()
    )


@pytest.fixture(scope="session")
def sshd(tmp_path_factory, ssh_keys) -> Iterator[SSHServer]:
    """One server for the tests that leave it as they found it."""
    server = _new_server(tmp_path_factory.mktemp("sshd"), ssh_keys).start()
    yield server
    server.kill()


@pytest.fixture
def make_sshd(tmp_path, ssh_keys) -> Iterator[Callable[[], SSHServer]]:
    """Private servers for tests that kill them or change their keys."""
    servers: list[SSHServer] = []

    def make() -> SSHServer:
        server = _new_server(tmp_path / f"sshd{len(servers)}", ssh_keys).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.kill()


@dataclass
class SSHEnv:
    home: Path
    config_dir: Path

    @property
    def emoconsole_known_hosts(self) -> Path:
        return self.config_dir / "emoconsole" / "known_hosts"

    def trust(self, server: SSHServer) -> None:
        path = self.emoconsole_known_hosts
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(server.known_hosts_line())


@pytest.fixture
def ssh_env(tmp_path, monkeypatch) -> SSHEnv:
    """A private HOME (so ~/.ssh is empty) and config dir, and no agent."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    config = tmp_path / "xdg"
    config.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("EMOCONSOLE_CONFIG", raising=False)
    return SSHEnv(home=home, config_dir=config)


@pytest.fixture
def trusted(sshd: SSHServer, ssh_env: SSHEnv) -> Iterator:
    """An SSHHost for the shared server whose key is already trusted."""
    ssh_env.trust(sshd)
    host = sshd.ssh_host()
    yield host
    host.close()
