"""summary.md and its plots from a real (tiny) training run, and `emoconsole
download` end to end over a real sshd: checkpoints, logs and tb/ arrive with
verified hashes, and summary.md carries summary.json's numbers."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from emoconsole.download_cli import download
from emoconsole.report import (
    CONFUSION_PNG,
    LEARNING_CURVES_PNG,
    epoch_metrics,
    plot_learning_curves,
    write_report,
)
from tests.conftest import SMALL_MODEL, run_trainers
from trainers.events import EventType, EventWriter, RunStatus, read_events
from trainers.rundir import RunDir

pytest_plugins = ["tests.sshd"]

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk: a real image, not just the magic."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def fmt(value: float) -> str:
    return f"{value:.4f}"


@pytest.fixture(scope="module")
def real_run(small_corpus, feature_cache, tmp_path_factory) -> Path:
    """hybrid-attention at the tests' small size, 2 epochs, through the CLI."""
    out = tmp_path_factory.mktemp("runs")
    cache = feature_cache
    settings = [*SMALL_MODEL, "train.epochs=2", f"data.cache_dir={cache}"]
    proc = run_trainers(
        "train", "hybrid-attention", "--data", str(small_corpus), "--out", str(out),
        "--run-id", "tiny", *[arg for s in settings for arg in ("--set", s)],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "tiny"


def test_summary_md_carries_the_runs_numbers_and_real_plots(real_run, tmp_path):
    run = Path(shutil.copytree(real_run, tmp_path / "tiny"))
    summary = RunDir(run).read_summary()
    assert summary is not None
    md = write_report(run).read_text()

    assert f"best epoch **{summary['best_epoch']}** of 2" in md
    for split in ("val", "test"):
        m = summary[split]
        row = f"| {split} | {fmt(m['accuracy'])} | {fmt(m['macro_f1'])} | {fmt(m['weighted_f1'])} |"
        assert row in md
    for name, m in summary["test"]["per_class"].items():
        assert f"| {name} | {fmt(m['precision'])} | {fmt(m['recall'])} | {fmt(m['f1'])} |" in md
    assert "majority-class floor" in md
    for png in (LEARNING_CURVES_PNG, CONFUSION_PNG):
        assert f"]({png})" in md
        width, height = png_size(run / png)
        assert width >= 300 and height >= 300


def test_learning_curves_follow_the_val_events(real_run):
    rows = epoch_metrics(read_events(RunDir(real_run).events))
    vals = [
        e
        for e in read_events(RunDir(real_run).events)
        if e["type"] == EventType.VAL and e["split"] == "val"
    ]
    assert [r["epoch"] for r in rows] == [1, 2]
    for row, event in zip(rows, vals, strict=True):
        assert row["train_loss"] == event["train_loss"] and row["loss"] == event["loss"]
        assert row["macro_f1"] == event["macro_f1"]


def test_epochs_repeated_after_a_resume_replace_the_killed_ones(tmp_path):
    with EventWriter(tmp_path / "events.jsonl") as events:
        for epoch in (1, 2, 3):
            events.write(
                EventType.VAL, epoch=epoch, split="val", loss=1.0, accuracy=0.1 * epoch,
                macro_f1=0.1, weighted_f1=0.1, uar=0.1, train_loss=1.0,
            )  # fmt: skip
        events.write(EventType.STATUS, status=RunStatus.RESUMED, from_epoch=1, global_step=5)
        events.write(
            EventType.VAL, epoch=2, split="val", loss=0.5, accuracy=0.9,
            macro_f1=0.9, weighted_f1=0.9, uar=0.9, train_loss=0.4,
        )  # fmt: skip
        events.write(
            EventType.VAL, epoch=2, split="test", loss=0.5, accuracy=0.2,
            macro_f1=0.2, weighted_f1=0.2, uar=0.2,
        )  # fmt: skip
    rows = epoch_metrics(read_events(tmp_path / "events.jsonl"))
    assert [(r["epoch"], r["accuracy"]) for r in rows] == [(1, 0.1), (2, 0.9)]


def test_learning_curves_tick_whole_epochs(tmp_path, monkeypatch):
    """Two epochs: matplotlib's default locator would tick 1.0, 1.2, 1.4, ..."""
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at
    rows = [{"epoch": e, "train_loss": 1.0, "loss": 1.0, "accuracy": 0.5, "macro_f1": 0.5,
             "weighted_f1": 0.5} for e in (1, 2)]  # fmt: skip
    plot_learning_curves(rows, 2, tmp_path / LEARNING_CURVES_PNG)
    (fig,) = figures
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_a_run_without_summary_gets_curves_and_says_why(real_run, tmp_path):
    run = tmp_path / "live"
    run.mkdir()
    (run / "events.jsonl").write_bytes((real_run / "events.jsonl").read_bytes())
    (run / "run.json").write_text(json.dumps({"id": "live", "status": "running"}))
    md = write_report(run).read_text()
    assert "No summary.json" in md and "running" in md
    assert png_size(run / LEARNING_CURVES_PNG)[0] > 0
    assert not (run / CONFUSION_PNG).exists()


def test_cli_download_over_ssh_brings_a_verified_run_and_its_summary(
    real_run, sshd, ssh_env, tmp_path, monkeypatch
):
    ssh_env.trust(sshd)
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        f'[hosts.box]\nkind = "ssh"\nhost = "127.0.0.1"\nport = {sshd.port}\n'
        f'user = "{sshd.user}"\nidentity_file = "{sshd.client_key}"\n'
        f'python = "{sys.executable}"\nworkdir = "{REPO}"\n'
    )
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(hosts))
    monkeypatch.chdir(tmp_path)  # no project emoconsole.toml in the way
    app = typer.Typer()
    app.command()(download)
    result = CliRunner().invoke(app, [str(real_run), "--host", "box", "--to", "dl"])
    assert result.exit_code == 0, result.output
    local = tmp_path / "dl" / "tiny"
    for rel in ("checkpoints/best.pt", "summary.json", "train.log", "events.jsonl", "run.json"):
        assert (local / rel).read_bytes() == (real_run / rel).read_bytes(), rel
    tb = sorted(p.name for p in (real_run / "tb").iterdir())
    assert tb and sorted(p.name for p in (local / "tb").iterdir()) == tb
    md = (local / "summary.md").read_text()
    best = hashlib.sha256((real_run / "checkpoints" / "best.pt").read_bytes()).hexdigest()
    assert f"| checkpoints/best.pt | {(real_run / 'checkpoints/best.pt').stat().st_size} |" in md
    assert best in md
    assert png_size(local / CONFUSION_PNG) and png_size(local / LEARNING_CURVES_PNG)
    assert "every file SHA-256 checked" in result.output and "summary:" in result.output

    again = CliRunner().invoke(app, [str(real_run), "--host", "box", "--to", "dl"])
    assert again.exit_code == 0 and "0 fetched" in again.output


def test_cli_names_a_missing_run(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("EMOCONSOLE_STATE", str(tmp_path / "state"))  # no deploy ledger
    monkeypatch.chdir(tmp_path)
    app = typer.Typer()
    app.command()(download)
    result = CliRunner().invoke(app, [str(tmp_path / "gone"), "--to", "dl"])
    assert result.exit_code == 1
    assert "no run directory at" in result.output
    assert "Traceback" not in result.output
