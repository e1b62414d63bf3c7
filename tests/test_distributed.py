"""The engine under torchrun on CPU (gloo): the same run as one process, one run
directory written once, a rank's death, elastic restart, resume on another world size.

Each torchrun job costs three torch start-ups (launcher and two ranks), so the
module runs three jobs and asks several questions of each."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from remote.deploy import deploy
from remote.local import LocalHost
from remote.watch import follow
from tests.conftest import SMALL_MODEL, run_trainers
from tests.sshd import free_port
from trainers.engine.sync_bn import GlobalBatchNorm, convert
from trainers.engine.trainer import epoch_batches
from trainers.events import read_events
from trainers.rundir import RunDir

# Dropout off and no class weights: two ranks of batch 4 then compute exactly the
# gradients one process of batch 8 does (same global batches, statistics of the
# global batch via train.sync_bn), so the curves may differ by rounding alone.
EXACT = [
    "model.tcn_dropout=0",
    "model.attn_dropout=0",
    "model.dropout=0",
    "train.class_weights=none",
    "train.sync_bn=true",
    "train.lr=3e-3",
]
pytest_plugins = ["tests.sshd"]
LOSS_TOLERANCE = 5e-3  # measured: at most 4.4e-4 (train loss, epoch 3)


def settings(cache: Path, *extra: str) -> list[str]:
    out: list[str] = []
    for item in [*SMALL_MODEL, f"data.cache_dir={cache}", *extra]:
        out += ["--set", item]
    return out


def val_events(run: Path, split: str = "val") -> list[dict]:
    return [
        e for e in read_events(run / "events.jsonl") if e["type"] == "val" and e["split"] == split
    ]


# -- in-process pieces -----------------------------------------------------------------


def test_ranks_draw_the_global_batches_of_one_process():
    one = epoch_batches(30, 8, seed=4, epoch=3, drop_last=True)
    ranks = [epoch_batches(30, 4, 4, 3, True, rank=r, world=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one) == 3
    for i, batch in enumerate(one):
        assert sorted(ranks[0][i] + ranks[1][i]) == sorted(batch)
    assert not set(ranks[0][0]) & set(ranks[1][0])
    # set_epoch: another epoch, another order
    assert epoch_batches(30, 4, 4, 4, True, rank=0, world=2) != ranks[0]


def test_weighted_epochs_are_dealt_out_to_ranks_without_overlap():
    weights = np.linspace(1, 3, 20)
    ranks = [epoch_batches(20, 5, 1, 2, False, weights, rank=r, world=2) for r in range(2)]
    one = epoch_batches(20, 10, 1, 2, False, weights)
    dealt = [i for rank in ranks for batch in rank for i in batch]
    assert sorted(dealt) == sorted(i for batch in one for i in batch)


def test_global_batch_norm_is_batch_norm_on_one_process():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    x = torch.randn(5, 3, 8, 8)
    reference = model(x)
    converted, n = convert(model, cuda=False)
    assert n == 1 and isinstance(converted[1], GlobalBatchNorm)
    torch.testing.assert_close(converted(x), reference)
    assert set(converted.state_dict()) == set(model.state_dict())


# -- torchrun ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ddp_runs(small_corpus, feature_cache, tmp_path_factory):
    """hybrid-attention for 3 epochs: one process of batch 8, and 2 ranks of batch 4."""
    out = tmp_path_factory.mktemp("ddp")
    common = ["--data", str(small_corpus), "--out", str(out)]
    one = run_trainers(
        "train",
        "hybrid-attention",
        *common,
        "--run-id",
        "one",
        *settings(feature_cache, *EXACT, "train.epochs=3", "train.batch_size=8"),
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_trainers(
        "train",
        "hybrid-attention",
        *common,
        "--run-id",
        "two",
        "--nproc-per-node",
        "2",
        *settings(feature_cache, *EXACT, "train.epochs=3", "train.batch_size=4"),
    )
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    return out / "one", out / "two", two


def test_two_ranks_match_one_process_with_the_same_global_batch(ddp_runs):
    one, two, _ = ddp_runs
    a, b = val_events(one), val_events(two)
    assert [e["epoch"] for e in a] == [e["epoch"] for e in b] == [1, 2, 3]
    for x, y in zip(a, b, strict=True):
        assert abs(x["train_loss"] - y["train_loss"]) < LOSS_TOLERANCE, (x, y)
        assert abs(x["loss"] - y["loss"]) < LOSS_TOLERANCE, (x, y)
        assert abs(x["accuracy"] - y["accuracy"]) <= 1 / 15 + 1e-9  # one sample of 15
    # the losses did move: the comparison is not between two untrained models
    assert a[0]["train_loss"] - a[-1]["train_loss"] > 0.05
    # The gradient norm is the all-reduced one: each rank's own half-batch gradient
    # would differ from the one process's by far more than the arithmetic does.
    norms = [
        [e["grad_norm"] for e in read_events(r / "events.jsonl") if e["type"] == "step"]
        for r in (one, two)
    ]
    assert len(norms[0]) == len(norms[1]) == 9
    # measured: equal to 5 digits in epoch 1, then drifting like the losses (2.5% at step 9)
    assert norms[1][:3] == pytest.approx(norms[0][:3], rel=1e-3)
    assert norms[1] == pytest.approx(norms[0], rel=0.1)
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (one, two))
    assert sb["world_size"] == 2 and sa["world_size"] == 1
    assert abs(sa["test"]["loss"] - sb["test"]["loss"]) < LOSS_TOLERANCE


def test_rank_zero_alone_writes_the_run_directory(ddp_runs):
    one, two, proc = ddp_runs
    events = read_events(two / "events.jsonl")
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [e["status"] for e in events if e["type"] == "status"].count("completed") == 1
    assert len(val_events(two)) == 3 and len(val_events(two, "test")) == 1
    # every event from rank 0; rank 1 kept its own log only
    assert {e.get("rank", 0) for e in events} == {0}
    assert sorted(p.name for p in (two / "ranks").iterdir()) == ["rank1.log"]
    assert "epoch 3 val" in (two / "ranks" / "rank1.log").read_text()
    rows = (two / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == 30  # val + test once each, not once per rank
    # Sample predictions once per epoch, from every rank's gathered rows: the same
    # samples, and nearly the same probabilities, as the one-process run's.
    shown = [e for e in events if e["type"] == "samples"]
    alone = [e for e in read_events(one / "events.jsonl") if e["type"] == "samples"]
    assert [e["epoch"] for e in shown] == [e["epoch"] for e in alone] == [1, 2, 3]
    for x, y in zip(shown, alone, strict=True):
        assert [s["index"] for s in x["samples"]] == [s["index"] for s in y["samples"]]
        for a, b in zip(x["samples"], y["samples"], strict=True):
            assert a["probs"] == pytest.approx(b["probs"], abs=5e-3)
    pictures = sorted(p.name for p in (two / "samples").iterdir())
    assert pictures == sorted(s["image"].split("/")[1] for s in shown[0]["samples"])
    manifest = RunDir(two).read_manifest()
    assert manifest["distributed"]["nproc_per_node"] == 2
    assert manifest["status"] == "completed"
    assert proc.stdout.count("done: best epoch") == 1
    assert "torchrun --nproc-per-node=2" in proc.stdout


EPOCHS = 5


def _kill_twice(launcher: int, run: Path, kills: list[int], rank: int = 1) -> None:
    """Kill ``rank`` at rank 0's first checkpoint, then again at the first checkpoint
    after torchrun's restart resumed; each kill's pid goes to ``kills``."""
    after, deadline = 0, time.monotonic() + 240
    while len(kills) < 2 and time.monotonic() < deadline:
        events = read_events(run / "events.jsonl") if (run / "events.jsonl").exists() else []
        if kills:
            resumed = [e["seq"] for e in events if e.get("status") == "resumed"]
            after = resumed[0] if resumed else None
        if after is not None and any(
            e["seq"] > after and e["type"] == "checkpoint" and e["kind"] == "last" for e in events
        ):
            kills.append(_kill_rank(launcher, rank))
            after = None
        time.sleep(0.05)


def _kill_rank(pid: int, rank: int) -> int:
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank):
                child.send_signal(signal.SIGKILL)
                return child.pid
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no rank {rank} among {pid}'s children")


def test_a_dead_rank_restarts_then_crashes_the_run_which_resumes_on_one_process(
    small_corpus, feature_cache, tmp_path
):
    """`deploy --gpus 2 --max-restarts 1` on a host. Rank 1 killed once: torchrun
    restarts both ranks from the checkpoint. Killed again, with no restart left:
    the run is crashed, naming rank 1 and its last log lines. The two-rank
    checkpoint then resumes on one process and finishes. The watch stream saw
    the launcher's process tree throughout."""
    host = LocalHost("box", workdir=str(tmp_path / "work"))
    overrides = [*SMALL_MODEL, f"data.cache_dir={feature_cache}", f"train.epochs={EPOCHS}"]
    launch = deploy(
        host,
        "hybrid-attention",
        data=str(small_corpus),
        overrides=[*overrides, "train.batch_size=4"],
        run_id="dies",
        gpus=2,
        max_restarts=1,
    )
    run = Path(launch.run_dir)
    assert launch.pid and RunDir(run).read_manifest()["pid"] == launch.pid  # the launcher
    # The killer reads events.jsonl itself: the stream may lag behind the run under load.
    kills: list[int] = []
    killer = threading.Thread(target=_kill_twice, args=(launch.pid, run, kills), daemon=True)
    killer.start()
    items = list(follow(host, launch.run_dir, interval=0.5))
    killer.join(timeout=10)
    trail = [(e["type"], e.get("status") or e.get("kind") or e.get("message")) for e in
             (i.event for i in items if i.kind == "event") if e["type"] != "step"]  # fmt: skip
    assert len(kills) == 2, trail[-30:]
    events = [i.event for i in items if i.kind == "event"]
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert statuses.count("resumed") == 1 and statuses[-1] == "crashed", statuses
    resumed = next(e for e in events if e.get("status") == "resumed")
    assert resumed["from_epoch"] >= 1
    final = [e for e in events if e["type"] == "status"][-1]
    assert final["rank"] == 1 and final["last_log"]
    (report,) = [e for e in events if e["type"] == "error" and "exitcode" in e]
    assert report["message"] == "rank 1 killed by SIGKILL" and report["rank"] == 1
    assert any(" val: loss" in line for line in report["last_log"])  # rank 1's own log
    manifest = RunDir(run).read_manifest()
    assert manifest["status"] == "crashed" and manifest["failed_rank"] == 1
    assert max(i.sample.get("procs", 0) for i in items if i.kind == "sys") >= 3

    # The two-rank checkpoint resumes on one process (another world size) and finishes.
    done = run_trainers("resume", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 1 and summary["epochs_run"] == EPOCHS
    after = read_events(run / "events.jsonl")
    last_resume = [e for e in after if e.get("status") == "resumed"][-1]
    start = last_resume["from_epoch"]
    epochs = [e["epoch"] for e in after if e["seq"] > last_resume["seq"] and e["type"] == "val"]
    assert epochs[:-1] == list(range(start + 1, EPOCHS + 1))  # then the test split's
    assert RunDir(run).read_manifest()["status"] == "completed"


def test_two_loopback_nodes_train_one_job_through_the_console(
    make_sshd, ssh_env, tmp_path, small_corpus, feature_cache
):
    """Two sshd "hosts" on this machine, one rank each, as a researcher types it:
    `emoconsole deploy --host node0,node1 --gpus 1` ships to both, starts torchrun
    --nnodes 2 with the c10d rendezvous on node0, and `emoconsole monitor` follows
    the job with a system line per node."""
    servers = [make_sshd(), make_sshd()]
    hosts_toml = ""
    for i, server in enumerate(servers):
        ssh_env.trust(server)
        hosts_toml += (
            f"[hosts.node{i}]\nkind = 'ssh'\nhost = '127.0.0.1'\nport = {server.port}\n"
            f"user = '{server.user}'\nidentity_file = '{server.client_key}'\n"
            f"python = '{sys.executable}'\nworkdir = '{tmp_path / f'node{i}'}'\n"
        )
    (ssh_env.config_dir / "emoconsole" / "hosts.toml").write_text(hosts_toml)
    env = {**os.environ, "EMOCONSOLE_STATE": str(tmp_path / "state")}
    sets = [f"--set={item}" for item in
            [*SMALL_MODEL, f"data.cache_dir={feature_cache}", "train.epochs=2"]]  # fmt: skip
    deployed = _console(
        "deploy", "hybrid-attention", "--host", "node0,node1", "--gpus", "1",
        "--remote-data", str(small_corpus), "--env", "host", "--run-id", "pair",
        "--rdzv-port", str(free_port()), *sets, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    assert deployed.stdout.strip() == "pair"
    assert "rendezvous 127.0.0.1:" in deployed.stderr

    followed = _console("monitor", "pair", "--interval", "0.5", env=env, cwd=tmp_path)
    assert followed.returncode == 0, followed.stderr[-3000:]
    assert "completed" in followed.stdout and "test: accuracy" in followed.stdout
    for node in ("node0", "node1"):  # a system line per node
        assert re.search(rf"^{node}\s+system: cpu", followed.stdout, re.M), followed.stdout

    runs = [tmp_path / f"node{i}" / "runs" / "pair" for i in range(2)]
    primary = next(i for i, r in enumerate(runs) if (r / "events.jsonl").exists())
    summary = json.loads((runs[primary] / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_run"] == 2
    other = runs[1 - primary]
    assert not (other / "events.jsonl").exists() and not (other / "summary.json").exists()
    # that node's launcher marks its copy of run.json when its torchrun returns
    deadline = time.monotonic() + 60
    while json.loads((other / "run.json").read_text())["status"] != "completed":
        assert time.monotonic() < deadline, (other / "run.json").read_text()
        time.sleep(0.2)
    assert "epoch 2 val" in (other / "ranks" / "rank1.log").read_text()


def _console(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emoconsole", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
