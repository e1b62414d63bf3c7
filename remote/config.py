"""Named hosts, from a TOML file a person edits.

```toml
[hosts.gpu1]
kind = "ssh"                      # "local" | "ssh"
host = "gpu1"                     # an ~/.ssh/config alias or a hostname (default: the name)
user = "ubuntu"                   # optional: overrides ~/.ssh/config, as `ssh -l` would
port = 22                         # optional: likewise
identity_file = "~/.ssh/id_ed25519"
python = "/opt/venv/bin/python"   # the interpreter that runs trainers and the watcher there
workdir = "~/emoconsole"          # where the shipped code lives there
```

The user's file is ``$EMOCONSOLE_CONFIG``, else
``$XDG_CONFIG_HOME/emoconsole/hosts.toml``, else
``~/.config/emoconsole/hosts.toml``. A project's ``./emoconsole.toml`` may
carry its own ``[hosts.NAME]`` tables, which replace the user's entry of the
same name whole (merging keys would mix two machines' settings). ``local``
always exists. This module imports no paramiko: listing hosts must stay cheap.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from remote.errors import ConfigError

if TYPE_CHECKING:
    from remote.host import Host

HostKind = Literal["local", "ssh"]
PROJECT_FILE = "emoconsole.toml"

_FIELDS: dict[str, type] = {
    "kind": str,
    "host": str,
    "alias": str,
    "user": str,
    "port": int,
    "identity_file": str,
    "python": str,
    "workdir": str,
}


def config_dir() -> Path:
    """emoconsole's per-user config directory (XDG on every platform: this is a
    terminal tool, and ~/.ssh sits beside it)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "emoconsole"


def user_config_path() -> Path:
    explicit = os.environ.get("EMOCONSOLE_CONFIG")
    return Path(explicit).expanduser() if explicit else config_dir() / "hosts.toml"


def known_hosts_path() -> Path:
    """Where host keys the user trusted through emoconsole are recorded, so that
    ~/.ssh/known_hosts is only ever read."""
    return config_dir() / "known_hosts"


@dataclass(frozen=True)
class HostConfig:
    name: str
    kind: HostKind = "ssh"
    host: str | None = None
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    python: str | None = None
    workdir: str | None = None
    source: str = field(default="built in", compare=False)

    def describe(self) -> str:
        if self.kind == "local":
            return "this machine"
        target = self.host or self.name
        if self.user:
            target = f"{self.user}@{target}"
        if self.port:
            target = f"{target}:{self.port}"
        return f"ssh {target}"


LOCAL = HostConfig(name="local", kind="local")


def _parse_hosts(path: Path, data: dict[str, Any]) -> dict[str, HostConfig]:
    hosts = data.get("hosts", {})
    if not isinstance(hosts, dict):
        raise ConfigError(f"{path}: 'hosts' must be a table of [hosts.NAME] tables")
    parsed: dict[str, HostConfig] = {}
    for name, entry in hosts.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: hosts.{name} must be a table")
        for key, value in entry.items():
            if key not in _FIELDS:
                known = ", ".join(_FIELDS)
                raise ConfigError(f"{path}: unknown key hosts.{name}.{key} (known: {known})")
            want = _FIELDS[key]
            if not isinstance(value, want) or isinstance(value, bool):
                raise ConfigError(
                    f"{path}: hosts.{name}.{key} must be a {want.__name__}, got {value!r}"
                )
        kind = entry.get("kind", "ssh")
        if kind not in ("local", "ssh"):
            raise ConfigError(f"{path}: hosts.{name}.kind must be 'local' or 'ssh', got {kind!r}")
        if "host" in entry and "alias" in entry:
            raise ConfigError(f"{path}: hosts.{name}: give 'host' or 'alias', not both")
        if name == "local" and kind != "local":
            raise ConfigError(f"{path}: hosts.local is this machine; it cannot be kind {kind!r}")
        port = entry.get("port")
        if port is not None and not 0 < port < 65536:
            raise ConfigError(f"{path}: hosts.{name}.port {port} is not a port number")
        parsed[name] = HostConfig(
            name=name,
            kind=kind,
            host=entry.get("host", entry.get("alias")),
            user=entry.get("user"),
            port=port,
            identity_file=entry.get("identity_file"),
            python=entry.get("python"),
            workdir=entry.get("workdir"),
            source=str(path),
        )
    return parsed


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def load_hosts(
    user_file: Path | None = None, project_file: Path | None = None
) -> dict[str, HostConfig]:
    """Every named host: ``local``, then the user's file, then the project's."""
    user_file = user_file or user_config_path()
    project_file = project_file or Path.cwd() / PROJECT_FILE
    hosts = {"local": LOCAL}
    if user_file.is_file():
        data = _read_toml(user_file)
        # The user's file is ours alone, so anything but [hosts] is a mistake.
        for key in data:
            if key != "hosts":
                raise ConfigError(f"{user_file}: unknown key {key!r} (only [hosts.NAME] tables)")
        hosts.update(_parse_hosts(user_file, data))
    if project_file.is_file():
        # The project file may grow other sections; only [hosts] is read here.
        hosts.update(_parse_hosts(project_file, _read_toml(project_file)))
    return hosts


def get_host_config(name: str, hosts: dict[str, HostConfig] | None = None) -> HostConfig:
    hosts = load_hosts() if hosts is None else hosts
    if name not in hosts:
        known = ", ".join(sorted(hosts))
        where = user_config_path()
        raise ConfigError(f"no host named {name!r} (known: {known}); hosts are defined in {where}")
    return hosts[name]


def host_from_config(cfg: HostConfig) -> Host:
    if cfg.kind == "local":
        from remote.local import LocalHost

        return LocalHost(cfg.name, python=cfg.python, workdir=cfg.workdir)
    from remote.ssh import SSHHost  # paramiko only when an SSH host is used

    return SSHHost(
        cfg.name,
        cfg.host,
        user=cfg.user,
        port=cfg.port,
        identity_file=cfg.identity_file,
        python=cfg.python or "python3",
        workdir=cfg.workdir,
    )


def get_host(name: str, hosts: dict[str, HostConfig] | None = None) -> Host:
    """The :class:`~remote.host.Host` for a configured name (``local`` always works)."""
    return host_from_config(get_host_config(name, hosts))
