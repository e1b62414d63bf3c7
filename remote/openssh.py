"""The OpenSSH client, driven with the settings :class:`~remote.ssh.SSHHost` resolved.

paramiko carries commands and the watch stream; bulk bytes (downloads, data
uploads) go through ``ssh``/``scp``/``rsync``, which move 1 GiB on loopback in
about 3 s where paramiko's SFTP takes 9.5 s with prefetch. Those programs get
a generated ssh config file with the very host, port, user, identity files,
ProxyJump/ProxyCommand and strict host-key checking the console's own
connection uses, so the bulk path accepts no key the console would refuse.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from remote.ssh import SSHHost

TARGET_ALIAS = "emoconsole-target"
CONTROL_PERSIST_S = 30  # the shared connection outlives a crashed download by this much
# Hardware AES (every x86-64 and ARMv8 server) runs AES-GCM faster than OpenSSH's
# default first choice, chacha20-poly1305: scp of 1 GiB on loopback took 1.6-2.0 s
# instead of 2.0-3.7 s. OpenSSH's default set, reordered (not the "^" prefix
# syntax, which older clients reject): a server without AES-GCM still agrees.
CIPHERS = (
    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
    "aes128-ctr,aes192-ctr,aes256-ctr"
)
_DEFAULT_KEYS = ("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519")  # what paramiko looks for


def _cfg_value(value: str) -> str:
    # ssh_config expands %-tokens in paths and commands; a literal % is %%.
    return '"' + value.replace("%", "%%") + '"'


def openssh_config(host: SSHHost, control_path: str | None = None) -> str:
    """An ssh_config with the settings ``host`` connects with (see the module
    docstring): ``ssh -F FILE emoconsole-target`` reaches the same server with
    the same host-key policy. ``ssh -F`` hands the file to ProxyJump hops, so
    they are checked strictly too; paths come expanded from this process, since
    ssh reads ``~`` from the password database, not ``$HOME``.

    ``control_path``: share one connection between the many scp/rsync/ssh runs
    of a download (one handshake, through every jump, instead of one per file).
    The mux client hands its file descriptors to the master, so the bytes are
    not copied through one more process."""
    target = host.resolve()
    block = [
        f"Host {TARGET_ALIAS}",
        f"  HostName {target.hostname}",
        f"  Port {target.port}",
        f"  User {target.user or getpass.getuser()}",
    ]
    block += [f"  IdentityFile {_cfg_value(path)}" for path in target.identity_files]
    if target.identities_only:
        block.append("  IdentitiesOnly yes")
    if target.proxy_jump:
        block.append(f"  ProxyJump {target.proxy_jump}")
    elif target.proxy_command:
        block.append(f"  ProxyCommand {target.proxy_command.replace('%', '%%')}")
    if target.host_key_alias:
        block.append(f"  HostKeyAlias {target.host_key_alias}")
    if control_path:
        block += [
            "  ControlMaster auto",
            f"  ControlPath {_cfg_value(control_path)}",
            f"  ControlPersist {CONTROL_PERSIST_S}",
        ]
    known = [str(host.trusted_known_hosts), *target.known_hosts]
    block += [
        "Host *",
        "  BatchMode yes",
        "  StrictHostKeyChecking yes",
        "  UpdateHostKeys no",
        "  UserKnownHostsFile " + " ".join(_cfg_value(p) for p in known),
        # paramiko never reads the system-wide file: a key the console refuses must
        # not be accepted on the bulk path.
        "  GlobalKnownHostsFile /dev/null",
        f"  ConnectTimeout {max(1, round(host.connect_timeout))}",
        f"  ServerAliveInterval {max(1, round(host.keepalive))}",
        "  ServerAliveCountMax 3",
        f"  Ciphers {CIPHERS}",
    ]
    if not host.allow_agent:
        block.append("  IdentityAgent none")
    if not target.identities_only:
        home_ssh = Path(os.path.expanduser("~/.ssh"))
        block += [
            f"  IdentityFile {_cfg_value(str(home_ssh / name))}"
            for name in _DEFAULT_KEYS
            if (home_ssh / name).is_file()
        ]
    if host.ssh_config_path.is_file():
        block.append(f"  Include {_cfg_value(str(host.ssh_config_path))}")
    return "\n".join(block) + "\n"
