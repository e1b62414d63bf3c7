"""One Host interface, the same semantics locally and over a real sshd."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from remote.config import (
    ConfigError,
    known_hosts_path,
    load_hosts,
    user_config_path,
)
from remote.errors import CommandError, CommandTimeoutError, StreamSilentError
from remote.host import Host, Result
from remote.hosts import get_host
from remote.local import LocalHost

pytest_plugins = ["tests.sshd"]


@pytest.fixture(params=["local", "ssh"])
def host(request) -> Host:
    if request.param == "local":
        return LocalHost()
    return request.getfixturevalue("trusted")


def test_result_tail_joins_stdout_and_stderr():
    result = Result(False, 1, "a\nb\nc\n", "boom\n")
    assert result.tail(2) == "c\nboom"
    assert Result(True, 0, "", "").tail() == ""


def test_run_has_the_same_meaning_on_every_host(host):
    # A string is a shell line; a list is argv, delivered unchanged (spaces, quotes, UTF-8).
    assert host.run("echo one | tr o O").stdout == "One\n"
    argv = host.run(["printf", "%s|", "two words", "it's", "é", "$HOME"])
    assert argv.stdout == "two words|it's|é|$HOME|"
    failed = host.run("echo out; echo err >&2; exit 3")
    assert (failed.ok, failed.exit_code, failed.stdout, failed.stderr) == (
        False,
        3,
        "out\n",
        "err\n",
    )
    env = host.run(["sh", "-c", 'echo "$EMO_A/$EMO_B"'], env={"EMO_A": "x y", "EMO_B": "é"})
    assert env.stdout == "x y/é\n"
    with pytest.raises(CommandError) as info:
        host.run("echo why >&2; exit 4", check=True)
    assert info.value.exit_code == 4 and "why" in info.value.output_tail
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError):
        host.run("echo partial; sleep 30", timeout=0.5)
    assert time.monotonic() - started < 5


def test_stream_yields_lines_as_they_come_and_closes_from_the_caller(host):
    with host.stream("echo first; echo 'sécond'; exit 5") as lines:
        assert list(lines) == ["first", "sécond"]
        assert lines.wait_exit(5) == 5
    # An endless command: the caller stops reading and closing ends it.
    started = time.monotonic()
    with host.stream("while true; do echo tick; sleep 0.05; done") as lines:
        assert next(lines) == "tick"
    assert time.monotonic() - started < 5
    # Silence past the idle timeout is an error, not a hang.
    with host.stream("echo hello; sleep 30", idle_timeout=0.5) as lines:
        assert next(lines) == "hello"
        with pytest.raises(StreamSilentError):
            next(lines)


def test_put_and_get_round_trip_a_file(host, tmp_path):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    remote_path = str(tmp_path / "remote" / "copy.bin")
    host.run(["mkdir", "-p", str(tmp_path / "remote")], check=True)
    host.put(str(src), remote_path)
    digest = host.run(["sha256sum", remote_path], check=True).stdout.split()[0]
    assert digest == hashlib.sha256(payload).hexdigest()
    back = tmp_path / "back" / "copy.bin"
    host.get(remote_path, str(back))
    assert back.read_bytes() == payload
    assert not back.with_name("copy.bin.part").exists()


# -- configuration -------------------------------------------------------------------------


@pytest.fixture
def config_env(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("EMOCONSOLE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "xdg" / "emoconsole").mkdir(parents=True)
    return tmp_path / "xdg" / "emoconsole" / "hosts.toml"


def test_local_always_exists_and_files_are_found_where_documented(config_env, monkeypatch):
    assert list(load_hosts()) == ["local"]
    assert isinstance(get_host("local"), LocalHost)
    assert user_config_path() == config_env
    assert known_hosts_path() == config_env.parent / "known_hosts"
    config_env.write_text(
        '[hosts.gpu1]\nkind = "ssh"\nhost = "gpu1.example"\nuser = "ubuntu"\nport = 2222\n'
        'identity_file = "~/.ssh/id_ed25519"\npython = "/opt/venv/bin/python"\n'
        'workdir = "~/emoconsole"\n'
    )
    hosts = load_hosts()
    gpu = hosts["gpu1"]
    assert (gpu.kind, gpu.host, gpu.user, gpu.port) == ("ssh", "gpu1.example", "ubuntu", 2222)
    assert gpu.describe() == "ssh ubuntu@gpu1.example:2222"
    # The project file replaces the user's entry of the same name, whole.
    Path("emoconsole.toml").write_text(
        '[hosts.gpu1]\nhost = "other"\n\n[hosts.here]\nkind = "local"\nworkdir = "/srv"\n'
        "[train]\nepochs = 3\n"
    )
    hosts = load_hosts()
    assert hosts["gpu1"].host == "other" and hosts["gpu1"].user is None
    assert hosts["here"].kind == "local"
    # $EMOCONSOLE_CONFIG moves the user's file.
    elsewhere = config_env.parent.parent / "elsewhere.toml"
    elsewhere.write_text('[hosts.box]\nalias = "box-alias"\n')
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(elsewhere))
    assert load_hosts()["box"].host == "box-alias"


def test_get_host_builds_an_ssh_host_without_connecting(config_env):
    config_env.write_text('[hosts.gpu1]\nhost = "203.0.113.9"\npython = "/venv/bin/python"\n')
    host = get_host("gpu1")
    assert type(host).__name__ == "SSHHost"
    assert (host.name, host.python, host.workdir) == ("gpu1", "/venv/bin/python", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[hosts.gpu1]\nhots = "x"\n', "unknown key hosts.gpu1.hots"),
        ('[hosts.gpu1]\nport = "22"\n', "hosts.gpu1.port must be a int"),
        ('[hosts.gpu1]\nkind = "ec2"\n', "hosts.gpu1.kind must be 'local' or 'ssh'"),
        ('[hosts.local]\nkind = "ssh"\n', "hosts.local is this machine"),
        ("[machines.gpu1]\n", "unknown key 'machines'"),
        ("[hosts.gpu1\n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_file_and_the_key(config_env, text, message):
    config_env.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_hosts()
    assert str(config_env) in str(info.value) and message in str(info.value)


def test_unknown_host_name_lists_the_known_ones(config_env):
    with pytest.raises(ConfigError, match=r"no host named 'gpu9' \(known: local\)"):
        get_host("gpu9")
