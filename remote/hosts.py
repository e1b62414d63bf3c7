"""Hosts by name: the one factory from a configured name to a :class:`~remote.host.Host`.

:mod:`remote.config` parses hosts.toml and knows nothing of transports;
:mod:`remote.local`, :mod:`remote.ssh` and :mod:`remote.ec2` are the
transports and know nothing of the file. This module joins the two, so none
of them imports another to find a host. paramiko and boto3 are imported only
when a host of their kind is built: ``emoconsole hosts list`` and a local run
never load them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from remote.config import HostConfig, get_host_config, load_hosts
from remote.errors import ConfigError
from remote.host import Host

if TYPE_CHECKING:
    import paramiko

    from remote.ssh import SSHHost


def host_from_config(cfg: HostConfig) -> Host:
    if cfg.kind == "local":
        from remote.local import LocalHost

        local = LocalHost(cfg.name, python=cfg.python, workdir=cfg.workdir)
        local.slots = cfg.slots  # type: ignore[attr-defined]  # its run queue (remote.deploy)
        local.notify_url = cfg.notify_url  # its runs' guards tell this webhook of their end
        return local
    if cfg.kind == "ec2":
        assert cfg.ec2 is not None
        from remote.ec2.host import Ec2Host  # boto3 and paramiko only when an EC2 host is used

        return Ec2Host(cfg.ec2)
    from remote.ssh import SSHHost  # paramiko only when an SSH host is used

    host = SSHHost(
        cfg.name,
        cfg.host,
        user=cfg.user,
        port=cfg.port,
        identity_file=cfg.identity_file,
        python=cfg.python or "python3",
        workdir=cfg.workdir,
    )
    host.storage = cfg.storage  # runs there are pushed to it (remote.deploy.guard_for)
    host.slots = cfg.slots  # type: ignore[attr-defined]  # its run queue (remote.deploy.deploy)
    host.notify_url = cfg.notify_url  # its guard tells this webhook of each run's end
    return host


def get_host(name: str, hosts: dict[str, HostConfig] | None = None) -> Host:
    """The :class:`~remote.host.Host` for a configured name (``local`` always works)."""
    return host_from_config(get_host_config(name, hosts))


def ssh_host_named(name: str) -> SSHHost:
    """A configured SSH host, or else an ~/.ssh/config alias or hostname: the name
    a HostKeyError shows may be a ProxyJump hop that hosts.toml never lists."""
    from remote.ssh import SSHHost

    hosts = load_hosts()
    if name in hosts:
        if hosts[name].kind == "local":
            raise ConfigError(f"host {name!r} is this machine; it has no host key to trust")
        host = host_from_config(hosts[name])
        assert isinstance(host, SSHHost)
        return host
    return SSHHost(name)


def trust_host_key(name: str | SSHHost, typed_fingerprint: str) -> tuple[SSHHost, paramiko.PKey]:
    """``emoconsole hosts trust NAME --fingerprint SHA256:...``: see SSHHost.trust_host_key."""
    host = ssh_host_named(name) if isinstance(name, str) else name
    try:
        return host, host.trust_host_key(typed_fingerprint)
    finally:
        host.close()
