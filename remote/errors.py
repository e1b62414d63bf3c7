"""The remote layer's one error hierarchy.

The split follows what a caller must *do*: a host-key or authentication problem
needs a person (retrying cannot help and may lock an account), a transport
problem is worth retrying with backoff, and a command error is the command's own
verdict. Each message is one line a CLI can print as it is, with a hint where a
person has something to type.
"""

from __future__ import annotations


class RemoteError(Exception):
    """Base of every error the remote layer raises on purpose."""

    hint: str | None = None


class ConfigError(RemoteError):
    """hosts.toml / emoconsole.toml is wrong, or names a host that is not there."""


class HostKeyError(RemoteError):
    """The server's host key could not be verified; the connection was refused.

    Carries everything a person needs to check the key out of band (the
    fingerprint in OpenSSH's ``SHA256:...`` format, so it can be compared with
    ``ssh-keygen -lf``) and the exact command that trusts it.
    """

    def __init__(self, name: str, hostname: str, key_type: str, fingerprint: str) -> None:
        self.name = name
        self.hostname = hostname
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.trust_command = f"emoconsole hosts trust {name} --fingerprint {fingerprint}"
        self.hint = f"if you have checked the fingerprint, trust it with: {self.trust_command}"
        super().__init__(self._message())

    def _message(self) -> str:
        return f"host key of {self.hostname} ({self.key_type} {self.fingerprint}) is not trusted"


class UnknownHostKeyError(HostKeyError):
    """No known_hosts file has a key for this host."""

    def _message(self) -> str:
        return (
            f"unknown host key for {self.hostname}: {self.key_type} {self.fingerprint}; "
            f"refusing to connect"
        )


class ChangedHostKeyError(HostKeyError):
    """The host presents a key other than the one on record: a reinstalled machine,
    a recycled cloud address, or someone in the middle. Never accepted silently."""

    def __init__(
        self,
        name: str,
        hostname: str,
        key_type: str,
        fingerprint: str,
        expected_fingerprint: str | None = None,
    ) -> None:
        self.expected_fingerprint = expected_fingerprint
        super().__init__(name, hostname, key_type, fingerprint)

    def _message(self) -> str:
        was = f" (on record: {self.expected_fingerprint})" if self.expected_fingerprint else ""
        return (
            f"HOST KEY CHANGED for {self.hostname}: now {self.key_type} {self.fingerprint}{was}; "
            f"refusing to connect"
        )


class AuthenticationError(RemoteError):
    """The server refused every credential offered. Never retried: a retry loop
    against a refusing server only gets the caller's address banned."""

    hint = "check the user, IdentityFile and your ssh-agent (ssh-add -l)"


class TransportError(RemoteError):
    """The connection could not be made or was lost. Worth retrying."""


class StreamSilentError(TransportError):
    """A stream produced no output for longer than its idle timeout: the far end
    may be stopped or the network black-holed, which looks like a drop."""


class CommandError(RemoteError):
    """A command ran and failed (non-zero exit with ``check=True``, or a timeout)."""

    def __init__(self, command: str, exit_code: int | None, output_tail: str) -> None:
        self.command = command
        self.exit_code = exit_code
        self.output_tail = output_tail
        status = "timed out" if exit_code is None else f"exited with {exit_code}"
        tail = output_tail.strip().splitlines()[-1:] if output_tail.strip() else []
        last = f": {tail[0]}" if tail else ""
        super().__init__(f"command {command!r} {status}{last}")


class CommandTimeoutError(CommandError):
    """The command did not finish within its timeout and was killed."""

    def __init__(self, command: str, timeout: float, output_tail: str) -> None:
        self.timeout = timeout
        super().__init__(command, None, output_tail)


class WatchError(RemoteError):
    """The watcher on the host reported a problem it cannot recover from
    (e.g. the run directory does not exist)."""
