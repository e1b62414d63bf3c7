"""W&B and MLflow as engine sinks, as a user meets them: `train` with the trackers on,
read back with each tracker's own reader (W&B's offline run file through wandb's
protobuf records; a real `mlflow server` through MlflowClient), `resume` continuing
both tracker runs, a dead tracking server, a missing package, a planted secret.

One module-scoped scenario pays for the server start and the training once; each
test asserts one part of what it left behind, so test order does not matter.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SMALL_MODEL
from tests.sshd import free_port
from trainers.events import read_events
from trainers.rundir import RunDir

pytestmark = pytest.mark.slow

CANARY = "canary-7d1e44b09a2f"
SECRETS = ("WANDB_API_KEY", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "HF_TOKEN")
CLASSES = ["neutral", "happy", "sad"]


# -- W&B's offline run file ------------------------------------------------------------------

LDB_BLOCK = 32768  # the .wandb file is a LevelDB-style log of wandb.proto Records


def wandb_records(path: Path) -> list[Any]:
    """Every Record of a .wandb file, parsed with wandb's own protobuf classes (wandb 0.31
    reads these files in its Go core only; this is the log framing it writes)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending, out = 7, b"", []
    while pos + 7 <= len(data):
        left = LDB_BLOCK - pos % LDB_BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        if kind in (1, 4):  # full, last
            record = pb.Record()
            record.ParseFromString(pending + chunk if kind == 4 else chunk)
            out.append(record)
            pending = b""
        else:  # first, middle
            pending = chunk if kind == 2 else pending + chunk
    return out


def wandb_history(records: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row = {}
            for item in r.history.item:
                row[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            rows.append(row)
    return rows


def of_kind(records: list[Any], kind: str) -> list[Any]:
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def offline_runs(run: RunDir) -> list[Path]:
    return sorted((run.path / "wandb").glob("offline-run-*/run-*.wandb"))


# -- a real MLflow tracking server ----------------------------------------------------------


class MlflowServer:
    """`mlflow server` on loopback with a SQLite store, in its own session: it starts
    worker processes that outlive a killed parent, so the whole group is killed."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.log = open(root / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"), "server",
                "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                "--default-artifact-root", str(root / "artifacts"),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            ],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip

    def wait(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "mlflow server exited: see server.log"
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"mlflow server not healthy after {timeout} s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()


# -- the scenario ----------------------------------------------------------------------------


def tracker_env(home: Path) -> dict[str, str]:
    """Canary secrets planted, and W&B's own home folders kept inside the test's tmp."""
    env = {name: CANARY for name in SECRETS}
    for name, sub in (("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache")):
        env[name] = str(home / sub)
    env["WANDB_CONFIG_DIR"] = str(home / "config")
    return env


def feed_synthetic_run(root: Path, track: dict[str, Any]) -> tuple[RunDir, list[dict]]:
    """The engine's events, samples included (the engine's contract), fed straight to
    the sinks of a run directory with no training behind it."""
    from PIL import Image

    from trainers.config import set_value
    from trainers.engine.trackers import tracker_sinks
    from trainers.registry import get_entry

    run = RunDir(root).create()
    cfg = get_entry("hybrid-attention").default_config()
    for key, value in track.items():
        set_value(cfg, key, value)
    run.write_manifest({"id": root.name, "config": {}})
    (run.path / "samples").mkdir()
    Image.new("RGB", (24, 24), (200, 30, 30)).save(run.path / "samples/val_0003.png")
    warnings: list[dict] = []
    sinks = tracker_sinks(cfg, run, False, lambda **w: warnings.append(w))
    per_class = {c: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2} for c in CLASSES}
    events = [
        {"type": "status", "status": "starting"},
        {"type": "step", "epoch": 1, "step": 1, "global_step": 1, "loss": 1.1, "lr": 1e-3,
         "data_s": 0.01, "compute_s": 0.1, "grad_norm": 2.5, "grad_norms": {"head": 1.5}},
        {"type": "val", "epoch": 1, "split": "val", "global_step": 1, "loss": 1.0,
         "accuracy": 0.5, "macro_f1": 0.4, "weighted_f1": 0.45, "uar": 0.5,
         "per_class": per_class, "confusion": [[1, 1, 0], [0, 2, 0], [1, 0, 1]]},
        {"type": "samples", "epoch": 1, "global_step": 1, "split": "val", "classes": CLASSES,
         "samples": [
             {"index": 3, "name": "03-01-03.mp4", "label": 1, "pred": 1,
              "probs": [0.1, 0.8, 0.1], "image": "samples/val_0003.png"},
             {"index": 7, "name": "03-01-04.mp4", "label": 2, "pred": 0,
              "probs": [0.6, 0.1, 0.3], "image": None},
         ]},
        {"type": "status", "status": "completed"},
    ]  # fmt: skip
    for seq, event in enumerate(events, start=1):
        event = {"seq": seq, "time": time.time(), **event}
        for sink in sinks:
            sink.handle(event)
    for sink in sinks:
        sink.close()
    return run, warnings


def train_args(data: Path, cache: Path, extra: list[str]) -> list[str]:
    out = []
    for item in [*SMALL_MODEL, f"data.cache_dir={cache}", *extra]:
        out += ["--set", item]
    return out


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainers", *args],
        capture_output=True, text=True, timeout=600, env={**os.environ, **env},
    )  # fmt: skip


def resume_here(run: RunDir) -> int:
    """`python -m trainers resume RUN` in this process; the engine's stop handlers
    (SIGINT, SIGTERM...) are put back afterwards."""
    from trainers.cli import main
    from trainers.engine.signals import stop_signals

    saved = {sig: signal.getsignal(sig) for sig in stop_signals()}
    try:
        return main(["resume", str(run.path)])
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def mlflow_readback(url: str, run_id: str) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    info = client.get_run(run_id)

    def artifacts(path: str | None = None) -> list[str]:
        found = []
        for item in client.list_artifacts(run_id, path):
            found += artifacts(item.path) if item.is_dir else [item.path]
        return found

    keys = list(info.data.metrics)
    return {
        "status": info.info.status,
        "params": dict(info.data.params),
        "history": {
            k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys
        },
        "artifacts": artifacts(),
        "client": client,
    }


@pytest.fixture(scope="module")
def scenario(small_corpus, feature_cache, tmp_path_factory):
    base = tmp_path_factory.mktemp("trackers")
    server = MlflowServer(base)
    env = tracker_env(base / "wandb-home")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the in-process sinks of the synthetic run see them too
    try:
        # While the server starts: the synthetic run's W&B side (offline, no server).
        wb_unit, wb_unit_warnings = feed_synthetic_run(
            base / "unit-wandb", {"track.wandb": True, "track.wandb_mode": "offline"}
        )
        server.wait()
        ml_unit, ml_unit_warnings = feed_synthetic_run(
            base / "unit-mlflow", {"track.mlflow_uri": server.url}
        )
        ml_unit_id = ml_unit.read_manifest()["trackers"]["mlflow"]["run_id"]
        ml_unit_back = mlflow_readback(server.url, ml_unit_id)
        ml_unit_back["samples"] = ml_unit_back["client"].download_artifacts(
            ml_unit_id, "samples/val_epoch001.json", str(base / "dl")
        )

        out = base / "runs"
        tracked = [
            "train.epochs=2",
            "track.wandb=true",
            "track.wandb_mode=offline",
            f"track.mlflow_uri={server.url}",
        ]
        args = train_args(small_corpus, feature_cache, tracked)
        first = cli(
            "train", "hybrid-attention", "--data", str(small_corpus), "--out", str(out),
            "--run-id", "tracked", *args, env=env,
        )  # fmt: skip
        assert first.returncode == 0, first.stderr[-3000:]
        run = RunDir(out / "tracked")
        first_events = read_events(run.events)
        first_manifest = run.read_manifest()
        back = mlflow_readback(server.url, first_manifest["trackers"]["mlflow"]["run_id"])

        # The server dies; the resumed run must still complete, with one warning. In this
        # process (torch, wandb and mlflow are imported already: a second CLI process
        # would compile them again); the first run's process checked the console output.
        server.kill()
        assert resume_here(run) == 0
        yield {
            "run": run,
            "first": first,
            "first_events": first_events,
            "events": read_events(run.events),
            "first_manifest": first_manifest,
            "manifest": run.read_manifest(),
            "mlflow": back,
            "wb_unit": (wb_unit, wb_unit_warnings),
            "ml_unit": (ml_unit, ml_unit_warnings, ml_unit_back),
        }
    finally:
        server.kill()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def val_events(events: list[dict], split: str = "val") -> list[dict]:
    return [e for e in events if e["type"] == "val" and e["split"] == split]


def test_wandb_offline_run_holds_the_events_metrics_and_the_model(scenario):
    run, events = scenario["run"], scenario["first_events"]
    record = scenario["first_manifest"]["trackers"]["wandb"]
    assert record["mode"] == "offline" and record["url"] is None
    files = offline_runs(run)
    assert files and str(files[0].parent.relative_to(run.path)) == record["dir"]
    records = wandb_records(files[0])
    assert [r.run_id for r in of_kind(records, "run")] == [record["id"]]
    history = wandb_history(records)
    for event in val_events(events):
        row = next(
            h for h in history if h.get("global_step") == event["global_step"] and "val/loss" in h
        )
        for key in ("loss", "accuracy", "macro_f1", "weighted_f1", "uar"):
            assert row[f"val/{key}"] == pytest.approx(event[key], rel=1e-12), key
        for name, stats in event["per_class"].items():
            assert row[f"val_recall/{name}"] == pytest.approx(stats["recall"])
            assert row[f"val_f1/{name}"] == pytest.approx(stats["f1"])
        # W&B's own confusion-matrix chart: its table, with the matrix's counts.
        table = row["val/confusion_matrix_table/path"]
        data = json.loads((files[0].parent / "files" / table).read_text())
        counts = {(a, p): n for a, p, n in data["data"]}
        classes = list(event["per_class"])
        for i, line in enumerate(event["confusion"]):
            for j, n in enumerate(line):
                assert counts.get((classes[i], classes[j]), 0) == n
    steps = [e for e in events if e["type"] == "step"]
    logged = [h for h in history if "train/loss" in h]
    assert [h["global_step"] for h in logged] == [e["global_step"] for e in steps]
    assert [h["train/loss"] for h in logged] == pytest.approx([e["loss"] for e in steps])
    (test,) = val_events(events, "test")
    assert any(h.get("test/accuracy") == pytest.approx(test["accuracy"]) for h in history)
    models = [a for a in of_kind(records, "artifact") if a.type == "model"]
    assert len(models) == 1
    paths = {entry.path for entry in models[0].manifest.contents}
    assert {"best.pt", "export/model.safetensors", "export/config.json", "summary.json"} <= paths
    config = {u.key: json.loads(u.value_json) for u in of_kind(records, "run")[0].config.update}
    assert config["train.epochs"] == 2 and config["track.wandb_mode"] == "offline"


def test_mlflow_run_holds_every_val_metric_and_the_artifacts(scenario):
    back, events = scenario["mlflow"], scenario["first_events"]
    record = scenario["first_manifest"]["trackers"]["mlflow"]
    assert record["tracking_uri"].startswith("http://127.0.0.1:")
    assert back["status"] == "FINISHED"
    vals = val_events(events)
    for key in ("loss", "accuracy", "macro_f1", "weighted_f1", "uar"):
        assert back["history"][f"val/{key}"] == [
            (e["global_step"], pytest.approx(e[key])) for e in vals
        ]
    for name in vals[0]["per_class"]:
        assert [v for _, v in back["history"][f"val_f1/{name}"]] == pytest.approx(
            [e["per_class"][name]["f1"] for e in vals]
        )
    (test,) = val_events(events, "test")
    assert back["history"]["test/accuracy"] == [(test["global_step"], test["accuracy"])]
    assert back["params"]["train.epochs"] == "2" and back["params"]["model.d_model"] == "32"
    arts = set(back["artifacts"])
    assert {"summary.json", "checkpoints/best.pt", "model/model.safetensors"} <= arts
    assert {f"confusion/val_epoch{e['epoch']:03d}.json" for e in vals} <= arts


def test_resume_continues_both_runs_and_a_dead_server_is_one_warning(scenario):
    run, events, manifest = scenario["run"], scenario["events"], scenario["manifest"]
    assert manifest["status"] == "completed"
    before = scenario["first_manifest"]["trackers"]
    assert manifest["trackers"]["mlflow"] == before["mlflow"]
    assert manifest["trackers"]["wandb"]["id"] == before["wandb"]["id"]
    later = events[len(scenario["first_events"]) :]
    warnings = [e for e in later if e["type"] == "warning" and e["kind"] == "tracker"]
    assert [w["tracker"] for w in warnings] == ["mlflow"], warnings
    assert "MLflow failed, the run goes on without it" in warnings[0]["message"]
    # The warning may come before or after `completed`: the dead server is found at the
    # sink's first call to it, which may be the final artifacts' (trackers/base.py).
    assert [e["status"] for e in later if e["type"] == "status"][-1] == "completed"
    assert "WARNING MLflow failed, the run goes on without it" in run.train_log.read_text()
    # The W&B run continues under the same id: a second offline run file of that id,
    # whose steps restart at the checkpoint's global step, below the ones logged before.
    files = offline_runs(run)
    assert len(files) == 2
    records = wandb_records(files[1])
    wid = manifest["trackers"]["wandb"]["id"]
    assert [r.run_id for r in of_kind(records, "run")] == [wid]
    (test,) = val_events(later, "test")
    history = wandb_history(records)
    assert any(
        h.get("test/accuracy") == pytest.approx(test["accuracy"])
        and h["global_step"] == test["global_step"]
        for h in history
    )


def test_samples_become_a_wandb_table_with_images(scenario):
    run, warnings = scenario["wb_unit"]
    assert warnings == []
    (path,) = offline_runs(run)
    records = wandb_records(path)
    history = wandb_history(records)
    row = next(h for h in history if "val/samples/path" in h)
    assert row["global_step"] == 1
    # A run's table lives in a run_table artifact with its media (the files/ copy W&B
    # keeps for display has placeholders); offline, the artifact's files wait in staging.
    (art,) = [
        a for a in of_kind(records, "artifact") if a.name.startswith(f"run-{a.run_id}-valsamples")
    ]
    entries = {c.path: Path(c.local_path) for c in art.manifest.contents}
    table = json.loads(entries["val/samples.table.json"].read_text())
    cols = table["columns"]
    assert cols[:7] == ["epoch", "index", "name", "label", "pred", "correct", "image"]
    assert cols[7:] == [f"p_{c}" for c in CLASSES]
    first, second = (dict(zip(cols, r, strict=True)) for r in table["data"])
    assert (first["label"], first["pred"], first["correct"]) == ("happy", "happy", True)
    assert (second["label"], second["pred"], second["correct"]) == ("sad", "neutral", False)
    assert first["image"]["_type"] == "image-file" and second["image"] is None
    assert first["image"]["path"] in entries and entries[first["image"]["path"]].is_file()
    assert second["p_neutral"] == pytest.approx(0.6)
    grads = next(h for h in history if "train/grad_norm" in h)
    assert grads["train/grad_norm"] == 2.5 and grads["grad_norm/head"] == 1.5


def test_samples_become_an_mlflow_json_artifact(scenario):
    _run, warnings, back = scenario["ml_unit"]
    assert warnings == []
    assert back["status"] == "FINISHED"
    assert "samples/samples/val_0003.png" in back["artifacts"]
    assert "confusion/val_epoch001.json" in back["artifacts"]
    saved = json.loads(Path(back["samples"]).read_text())
    assert saved["classes"] == CLASSES
    assert [s["index"] for s in saved["samples"]] == [3, 7]
    assert back["history"]["train/grad_norm"] == [(1, 2.5)]


def test_no_secret_reaches_the_run_directory_or_the_console(scenario):
    run = scenario["run"]
    proc = scenario["first"]
    assert CANARY not in proc.stdout and CANARY not in proc.stderr
    checked = 0
    for path in run.path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert CANARY.encode() not in path.read_bytes(), path
            checked += 1
    assert checked > 20  # W&B's own logs and files among them


def test_a_missing_tracker_package_stops_the_cli_before_anything_starts(
    tmp_path, monkeypatch, capsys
):
    """`train` in-process with wandb unimportable (None in sys.modules makes `import
    wandb` raise ImportError): a subprocess would pay the CLI's torch import again."""
    from trainers.cli import main

    monkeypatch.setitem(sys.modules, "wandb", None)
    out = tmp_path / "runs"
    argv = ["train", "hybrid-attention", "--data", str(tmp_path), "--out", str(out)]
    assert main([*argv, "--set", "track.wandb=true"]) == 2
    err = capsys.readouterr().err
    assert "track.wandb=true needs the wandb package" in err
    assert "pip install 'emoconsole[wandb]'" in err
    assert not out.exists()


def test_credentials_in_the_tracking_uri_are_refused(capsys):
    from trainers.cli import main

    uri = "https://me:s3cret@mlflow.example"
    assert main(["config", "hybrid-attention", "--set", f"track.mlflow_uri={uri}"]) == 2
    err = capsys.readouterr().err
    assert "track.mlflow_uri" in err and "MLFLOW_TRACKING_PASSWORD" in err
    assert "s3cret" not in err


def test_a_tracked_run_is_read_back_without_the_tracker_but_not_resumed(scenario, monkeypatch):
    """predict/export read the saved config on machines without wandb or mlflow; resume
    starts a run again, so there the package must import (exit 2 naming the extra)."""
    from trainers.inference.bundle import load_bundle
    from trainers.session import RunManifestError, trainer_from_manifest

    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    run = scenario["run"]
    bundle = load_bundle(run.path, "best", trust_pickle=True)
    assert bundle.model_name == "hybrid-attention"
    with pytest.raises(RunManifestError, match=r"pip install 'emoconsole\[wandb\]'"):
        trainer_from_manifest(run)
