"""A running tagged instance as an :class:`~remote.ssh.SSHHost`, looked up on each connect."""

from __future__ import annotations

from typing import Any

from remote.config import Ec2Profile
from remote.ec2.api import Instance, profile_client, running_instance
from remote.ec2.launch import connect_address
from remote.errors import ConfigError
from remote.ssh import SSHHost, SSHTarget

# -- the host ---------------------------------------------------------------------------------


class Ec2Host(SSHHost):
    """The running instance of a profile, as an SSH host.

    Each connection looks the instance up (tagged, of this profile, running),
    so a stopped or terminated instance gives a clear error instead of a TCP
    timeout. Its host key is recorded under the instance id (HostKeyAlias), not
    the address: EC2 recycles public addresses, and a key trusted for one
    instance must never vouch for another that later gets the same address.
    """

    def __init__(self, profile: Ec2Profile, *, client: Any = None, **kwargs: Any) -> None:
        super().__init__(
            profile.name,
            profile.name,
            user=profile.user,
            python=profile.python,
            workdir=profile.workdir,
            **kwargs,
        )
        self.profile = profile
        self.instance: Instance | None = None
        self._ec2 = client

    def __repr__(self) -> str:
        return f"Ec2Host({self.name!r})"

    def ec2(self) -> Any:
        if self._ec2 is None:
            self._ec2 = profile_client(self.profile)
        return self._ec2

    def resolve(self) -> SSHTarget:
        instance = running_instance(self.ec2(), self.profile)
        host, port = connect_address(self.profile, instance)
        key = self.profile.key_path
        if not key.is_file():
            raise ConfigError(
                f"ec2 profile {self.profile.name}: private key {key} is not on this machine "
                "(it stays on the machine that launched the instance); set identity_file"
            )
        self.instance = instance
        self.alias, self.port, self.identity_file = host, port, str(key)
        target = super().resolve()
        target.host_key_alias = instance.id
        return target
