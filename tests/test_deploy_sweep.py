"""``emoconsole deploy --sweep FILE`` as a researcher types it: a sweep file with a bad key
stops before anything starts; a 2-run sweep (2 seeds, tiny settings) goes to the host
(this checkout's local host, whose notify_url is a loopback stand-in for Slack's webhook,
tests/webhooks.py), waits in the host's one-slot queue behind a stand-in run
(tests/test_queue.py's), starts when the slot frees, runs there detached, is listed as
the experiment's runs, found through the ledger, and its end is POSTed by the host."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from emoconsole.runref import host_for
from remote.layout import remote_run_dir
from remote.local import LocalHost
from tests.conftest import SMALL_MODEL, console
from tests.test_queue import hostctl, stand_in

if TYPE_CHECKING:
    from tests.webhooks import WebhookStandIn

pytest_plugins = ["tests.webhooks"]


def sweep_file(path: Path, cache: Path, *extra: str) -> Path:
    fixed = [*SMALL_MODEL, "train.epochs=1", f"data.cache_dir={cache}"]
    lines = ['model = "hybrid-attention"', "seeds = 2", "[fixed]"]
    for item in fixed:
        key, value = item.split("=", 1)
        lines.append(f'"{key}" = {value if value.isdigit() else json.dumps(value)}')
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


def test_deploy_sweep_checks_runs_lists_and_notifies(
    tmp_path, small_corpus, feature_cache, webhook: WebhookStandIn, monkeypatch
):
    (tmp_path / "hosts.toml").write_text(
        f'[hosts.local]\nkind = "local"\nnotify_url = "{webhook.url}"\nslots = 1\n'
    )
    env = {**os.environ, "EMOCONSOLE_CONFIG": str(tmp_path / "hosts.toml"),
           "EMOCONSOLE_STATE": str(tmp_path / "state"), "EMOCONSOLE_NOTIFY": "off"}  # fmt: skip
    data = ["--remote-data", str(small_corpus), "--env", "host"]
    runs = tmp_path / "runs"

    # A misspelt key: exit 2 naming it, checked on the host, nothing started.
    bad = sweep_file(tmp_path / "bad.toml", feature_cache, '"train.nope" = 1')
    out = console("deploy", "--sweep", str(bad), *data, "--run-id", "bad1", cwd=tmp_path, env=env)
    assert out.returncode == 2, out.stderr
    assert "train.nope" in out.stderr and str(bad) in out.stderr
    assert not (runs / "bad1").exists() and not (runs / ".launches" / "bad1").exists()

    # A stand-in run holds the host's one slot: the sweep waits in line, place 1.
    gate = tmp_path / "gate"
    code, holder = hostctl("launch", "--runs", str(runs), "--run-id", "holder", "--slots", "1",
                           "--", *stand_in(runs / "holder", gate))  # fmt: skip
    assert code == 0 and holder["queued"] is False and holder["pid"], holder
    webhook.posts.clear()
    good = sweep_file(tmp_path / "sweep.toml", feature_cache)
    try:
        out = console("deploy", "--sweep", str(good), *data, "--run-id", "exp1", cwd=tmp_path,
                      env=env)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "exp1"
        assert "experiment exp1 (2 runs) queued on local, place 1" in out.stderr
        assert "its runs: exp1:c00_s42, exp1:c00_s43" in out.stderr
        assert (tmp_path / "sweeps" / "exp1.toml").read_text() == good.read_text()
        listed = console("runs", "--host", "local", "--json", cwd=tmp_path, env=env)
        assert listed.returncode == 0, listed.stderr
        rows = {r["id"]: r for r in json.loads(listed.stdout)}
        assert (rows["exp1"]["status"], rows["exp1"]["place"]) == ("queued", 1)
        assert rows["holder"]["status"] == "running" and not (runs / "exp1").exists()
    finally:
        gate.touch()  # the slot frees: the queue's runner starts the sweep

    # The host tells the webhook when the sweep process ends (experiment.json's runs).
    (body,) = webhook.wait_posts(1, timeout=300)
    assert body["text"].startswith("experiment exp1 (hybrid-attention) on ")
    assert ": completed after " in body["text"] and "2/2 runs completed" in body["text"]
    experiment = json.loads((runs / "exp1" / "experiment.json").read_text())
    assert [r["status"] for r in experiment["runs"]] == ["completed", "completed"]
    holder_end = json.loads((runs / "holder" / "run.json").read_text())["ended_at"]
    assert experiment["created_at"] >= holder_end  # it started once the slot was free
    # The webhook URL (a secret) is in no output, ledger, launch record or run file.
    shown = out.stdout + out.stderr + (tmp_path / "state" / "deployments.jsonl").read_text()
    for path in [*(runs / ".launches" / "exp1").iterdir(), *(runs / "exp1").glob("*/*.*")]:
        if path.is_file() and path.suffix in (".json", ".log", ".out", ".jsonl"):
            shown += path.read_text()
    assert webhook.secret not in shown and "webhook: told http://127.0.0.1:" in shown

    # `runs` lists the experiment's runs together, by the names every command takes.
    listed = console("runs", "--host", "local", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"holder", "exp1:c00_s42", "exp1:c00_s43"}
    assert rows.pop("holder")["status"] == "completed"
    assert {(r["status"], r["experiment"], r["model"]) for r in rows.values()} == {
        ("completed", "exp1", "hybrid-attention")
    }
    # The ledger knows the experiment: a run of it is found with no --host, where it is.
    monkeypatch.setenv("EMOCONSOLE_STATE", env["EMOCONSOLE_STATE"])
    monkeypatch.chdir(tmp_path)
    assert host_for("exp1:c00_s43", None) == ("local", "exp1:c00_s43", True)
    assert remote_run_dir(LocalHost(), "exp1:c00_s43") == str(runs / "exp1" / "c00_s43")
    summary = json.loads((runs / "exp1" / "c00_s43" / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0
