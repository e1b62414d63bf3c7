"""`emoconsole hosts ...` and `watch`, and what the remote layer may import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from emoconsole.cli import app
from emoconsole.hosts_cli import watch
from trainers.events import EventType, EventWriter, RunStatus

pytest_plugins = ["tests.sshd"]

runner = CliRunner()


@pytest.fixture
def box_config(sshd, ssh_env, monkeypatch, tmp_path):
    """hosts.toml naming the test sshd as `box` (its key not yet trusted)."""
    monkeypatch.chdir(tmp_path)
    path = ssh_env.config_dir / "emoconsole" / "hosts.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'[hosts.box]\nhost = "127.0.0.1"\nport = {sshd.port}\nuser = "{sshd.user}"\n'
        f'identity_file = "{sshd.client_key}"\npython = "{sys.executable}"\n'
    )
    return path


def test_hosts_list_shows_local_and_configured_hosts(box_config, sshd):
    result = runner.invoke(app, ["hosts", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("local") and "this machine" in lines[0]
    assert f"ssh {sshd.user}@127.0.0.1:{sshd.port}" in lines[1] and str(box_config) in lines[1]


def test_unknown_key_then_trust_then_check(box_config, sshd, ssh_env):
    first = runner.invoke(app, ["hosts", "check", "box"])
    assert first.exit_code == 1
    assert "Traceback" not in first.output
    assert sshd.fingerprint() in first.output
    assert f"emoconsole hosts trust box --fingerprint {sshd.fingerprint()}" in first.output

    wrong = runner.invoke(app, ["hosts", "trust", "box", "--fingerprint", "SHA256:" + "B" * 43])
    assert wrong.exit_code == 1 and "error:" in wrong.output and "Traceback" not in wrong.output
    assert not ssh_env.emoconsole_known_hosts.exists()

    ok = runner.invoke(app, ["hosts", "trust", "box", "--fingerprint", sshd.fingerprint()])
    assert ok.exit_code == 0, ok.output
    assert f"trusted ssh-ed25519 {sshd.fingerprint()} for {sshd.host_key_name}" in ok.output

    check = runner.invoke(app, ["hosts", "check", "box"])
    assert check.exit_code == 0, check.output
    assert check.output.startswith("box: ok, python 3.")


def test_unknown_host_is_one_line_and_a_hint(box_config):
    result = runner.invoke(app, ["hosts", "check", "gpu9"])
    assert result.exit_code == 1
    assert result.output.startswith("error: no host named 'gpu9'")
    assert "Traceback" not in result.output


def _watch_app() -> typer.Typer:
    # `watch` is a top-level command the console registers; tested on its own here.
    cli = typer.Typer()
    cli.command()(watch)
    cli.command("noop")(lambda: None)  # a second command keeps `watch` a named subcommand
    return cli


def test_watch_prints_events_and_log_and_exits_with_the_run(tmp_path):
    run_dir = tmp_path / "run"
    with EventWriter(run_dir / "events.jsonl") as events:
        events.write(EventType.STATUS, status=RunStatus.RUNNING, device="cpu")
        events.write(EventType.STATUS, status=RunStatus.COMPLETED, reason="max_epochs")
    (run_dir / "train.log").write_text("2025-01-01 00:00:00 INFO hello ✓\n")
    result = runner.invoke(_watch_app(), ["watch", str(run_dir), "--interval", "0.2"])
    assert result.exit_code == 0, result.output
    assert "[1] status status=running device=cpu" in result.output
    assert "[2] status status=completed reason=max_epochs" in result.output
    assert "INFO hello ✓" in result.output

    with EventWriter(run_dir / "events.jsonl") as events:
        events.write(EventType.STATUS, status=RunStatus.FAILED)
    failed = runner.invoke(_watch_app(), ["watch", str(run_dir), "--after-seq", "2"])
    assert failed.exit_code == 1 and "[3] status status=failed" in failed.output


def test_layering_remote_stays_headless():
    """The console lists hosts and watches local runs without paramiko; the remote
    layer never loads torch or a UI library."""

    def loaded(statement: str) -> set[str]:
        code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return set(json.loads(out.stdout.strip().splitlines()[-1]))

    light = loaded(
        "import remote.config, remote.host, remote.local, remote.watch, remote.onhost.watcher"
    )
    assert not {"paramiko", "torch", "typer", "textual", "boto3"} & light
    ssh = loaded("import remote.ssh")
    assert "paramiko" in ssh and not {"torch", "typer", "textual", "numpy"} & ssh
    cli = loaded("import emoconsole.hosts_cli")
    assert not {"paramiko", "torch"} & cli
