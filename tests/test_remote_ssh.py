"""SSHHost against a real OpenSSH server: host keys, ~/.ssh/config, jumps, auth."""

from __future__ import annotations

import shutil
import stat
import time

import pytest

from remote.errors import (
    AuthenticationError,
    ChangedHostKeyError,
    TransportError,
    UnknownHostKeyError,
)
from remote.ssh import FingerprintMismatchError, SSHHost

pytest_plugins = ["tests.sshd"]


def test_unknown_host_key_is_refused_with_the_fingerprint_ssh_keygen_shows(sshd, ssh_env):
    host = sshd.ssh_host("gpu1")
    with pytest.raises(UnknownHostKeyError) as info:
        host.run("true")
    err = info.value
    assert err.fingerprint == sshd.fingerprint()  # what `ssh-keygen -lf` prints
    assert err.fingerprint.startswith("SHA256:") and not err.fingerprint.endswith("=")
    assert (err.hostname, err.key_type) == (sshd.host_key_name, "ssh-ed25519")
    assert err.trust_command == f"emoconsole hosts trust gpu1 --fingerprint {sshd.fingerprint()}"
    assert err.trust_command in err.hint
    assert not ssh_env.emoconsole_known_hosts.exists()  # refusing writes nothing


def test_trust_checks_the_typed_fingerprint_then_connects(sshd, ssh_env):
    host = sshd.ssh_host("gpu1")
    wrong = "SHA256:" + "A" * 43
    with pytest.raises(FingerprintMismatchError) as info:
        host.trust_host_key(wrong)
    assert info.value.fingerprint == sshd.fingerprint()
    assert not ssh_env.emoconsole_known_hosts.exists()

    key = host.trust_host_key(sshd.fingerprint())
    assert key.fingerprint == sshd.fingerprint()
    path = ssh_env.emoconsole_known_hosts
    assert path.read_text().startswith(f"{sshd.host_key_name} ssh-ed25519 ")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert host.run("echo hi").stdout == "hi\n"
    host.close()


def test_the_users_known_hosts_is_honoured_and_never_written(sshd, ssh_env):
    user_file = ssh_env.home / ".ssh" / "known_hosts"
    user_file.write_text(sshd.known_hosts_line())
    before = user_file.read_text()
    with sshd.ssh_host() as host:
        assert host.run("echo ok").stdout == "ok\n"
    assert user_file.read_text() == before


def test_changed_host_key_is_refused_until_the_new_one_is_trusted(make_sshd, ssh_env):
    server = make_sshd()
    ssh_env.trust(server)
    host = server.ssh_host("gpu1")
    assert host.run("echo before").ok
    old = server.fingerprint()
    server.restart(new_host_key=True)  # a reinstalled machine, or someone in the middle
    with pytest.raises(ChangedHostKeyError) as info:
        host.run("true")
    err = info.value
    assert err.fingerprint == server.fingerprint() != old
    assert err.expected_fingerprint == old
    assert f"--fingerprint {server.fingerprint()}" in err.trust_command
    host.trust_host_key(server.fingerprint())  # replaces the old entry
    assert host.run("echo after").stdout == "after\n"
    assert ssh_env.emoconsole_known_hosts.read_text().count(server.host_key_name) == 1
    host.close()


def test_ssh_config_alias_gives_hostname_port_user_and_identity(sshd, ssh_env):
    shutil.copy(sshd.client_key, ssh_env.home / ".ssh" / "id_work")
    (ssh_env.home / ".ssh" / "config").write_text(
        f"Host workbox\n"
        f"  HostName 127.0.0.1\n"
        f"  Port {sshd.port}\n"
        f"  User {sshd.user}\n"
        f"  IdentityFile ~/.ssh/id_work\n"
        f"  IdentitiesOnly yes\n"
    )
    ssh_env.trust(sshd)
    host = SSHHost("work", "workbox", allow_agent=False, connect_timeout=5)
    target = host.resolve()
    assert (target.hostname, target.port, target.user) == ("127.0.0.1", sshd.port, sshd.user)
    assert target.identity_files == [str(ssh_env.home / ".ssh" / "id_work")]
    assert host.run("echo $USER").stdout.strip() == sshd.user
    host.close()


def test_proxy_jump_goes_through_the_jump_hosts_transport(sshd, ssh_env):
    shutil.copy(sshd.client_key, ssh_env.home / ".ssh" / "id_ed25519")  # a default key
    (ssh_env.home / ".ssh" / "config").write_text(
        f"Host bastion\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n\n"
        f"Host inner\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  ProxyJump bastion\n"
    )
    ssh_env.trust(sshd)
    host = SSHHost("inner", allow_agent=False, connect_timeout=5)
    assert host.run("echo through").stdout == "through\n"
    assert host._jump is not None and host._jump.connected()
    host.close()
    assert host._jump is None


def test_wrong_key_is_an_authentication_error_at_once(sshd, ssh_env):
    ssh_env.trust(sshd)
    host = sshd.ssh_host(identity_file=str(sshd.client_key.with_name("id_wrong")))
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as info:
        host.run("true")
    assert time.monotonic() - started < 5
    assert info.value.hint and "ssh-agent" in info.value.hint


def test_nothing_listening_is_a_transport_error(ssh_env):
    from tests.sshd import free_port  # after pytest_plugins has imported it (rewritten)

    host = SSHHost("gone", "127.0.0.1", port=free_port(), allow_agent=False, connect_timeout=2)
    with pytest.raises(TransportError):
        host.run("true")
