"""``emoconsole demo``: the whole loop on this machine, on generated data.

Training runs as its own process (``python -m trainers train``), exactly as it
would on a remote host, and the demo only reads the run directory: what it
shows is what any run shows, not an in-process shortcut.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trainers.events import EventCursor, EventType, RunStatus, read_new_events
from trainers.rundir import RunDir, new_run_id
from trainers.runlog import RunLog

MODEL = "hybrid-attention"
# The recipe's defaults, capped at 30 epochs: about 6 minutes on 2 CPU cores for the
# 12-actor corpus (bench/accuracy.py measured its best epoch at 25).
DEMO_SETTINGS = ["train.epochs=30"]


class DemoError(Exception):
    pass


def ensure_corpus(data_dir: Path, actors: int, seed: int, console: Console) -> None:
    marker = data_dir / "synth_manifest.json"
    if marker.exists():
        meta = json.loads(marker.read_text())
        if meta.get("actors") == actors and meta.get("seed") == seed:
            console.print(f"[dim]corpus: reusing {data_dir}[/]")
            return
        raise DemoError(
            f"{data_dir} holds a corpus with other settings "
            f"(actors={meta.get('actors')}, seed={meta.get('seed')}): "
            "pass --data-dir elsewhere or delete it"
        )
    try:
        from trainers.data.synth import write_corpus
    except ImportError as exc:
        raise DemoError(
            f"the demo needs the training stack ({exc.name} is missing): "
            "run it from the repository with `uv run`, or `pip install emoconsole[train]`"
        ) from None
    with Progress(
        TextColumn("generating corpus"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("synth", total=None)

        def report(done: int, total: int, _what: str) -> None:
            progress.update(task, completed=done, total=total)

        write_corpus("ravdess", data_dir, actors=actors, seed=seed, progress=report)


class RunView:
    """Turns the run's events into a rich renderable."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.cursor = EventCursor()
        self.status = "starting"
        self.progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
        )
        self.prep = self.progress.add_task("prepare", total=None, info="")
        self.epochs = self.progress.add_task("epochs", total=None, info="", visible=False)
        self.steps = self.progress.add_task("steps", total=None, info="", visible=False)
        self.runlog = RunLog()  # the epochs' rows, as the run ends up (resumes applied)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.runlog.rows

    def poll(self) -> list[dict[str, Any]]:
        events = read_new_events(self.run.events, self.cursor)
        for event in events:
            self.apply(event)
        return events

    def apply(self, e: dict[str, Any]) -> None:
        self.runlog.add(e)
        etype = e["type"]
        if etype == EventType.STATUS:
            self.status = e["status"]
            if "done" in e:
                self.progress.update(self.prep, completed=e["done"], total=e["total"])
            if e["status"] == RunStatus.RUNNING:
                self.progress.update(self.prep, visible=False)
        elif etype == EventType.EPOCH_START:
            self.progress.update(
                self.epochs, visible=True, total=e["epochs"], completed=e["epoch"] - 1
            )
            self.progress.update(self.steps, visible=True, total=e["steps"], completed=0)
        elif etype == EventType.STEP:
            self.progress.update(self.steps, completed=e["step"], info=f"loss {e['loss']:.3f}")
        elif etype == EventType.VAL and e["split"] == "val":
            self.progress.update(
                self.epochs, completed=e["epoch"], info=f"best {e['monitor']} {e['best']:.3f}"
            )

    def render(self) -> Group:
        table = Table(title=f"{self.run.path.name}  [{self.status}]", expand=False)
        for col in ("epoch", "train loss", "val loss", "accuracy", "macro-F1", "UAR", ""):
            table.add_column(col, justify="right")
        for r in self.rows[-12:]:
            table.add_row(
                str(r["epoch"]),
                f"{r['train_loss']:.4f}",
                f"{r['loss']:.4f}",
                f"{r['accuracy']:.4f}",
                f"{r['macro_f1']:.4f}",
                f"{r['uar']:.4f}",
                "best" if r.get("is_best") else "",
            )
        return Group(self.progress, table)


def print_summary(run: RunDir, console: Console) -> None:
    summary = run.read_summary()
    if summary is None:
        return
    test = summary["test"]
    table = Table(title=f"test set (held-out actors), best epoch {summary['best_epoch']}")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right")
    for name, s in test["per_class"].items():
        table.add_row(
            name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"])
        )
    console.print(table)
    floor = summary.get("majority_floor") or {}
    console.print(
        f"accuracy [bold]{test['accuracy']:.4f}[/]  macro-F1 {test['macro_f1']:.4f}  "
        f"weighted-F1 {test['weighted_f1']:.4f}  UAR {test['uar']:.4f}  "
        f"(majority-class floor: accuracy {floor.get('accuracy', 0):.3f})"
    )
    t = summary["timings"]
    console.print(
        f"{summary['epochs_run']} epochs ({summary['stop_reason']}) in {t['total_s']:.0f}s; "
        f"run directory: {run.path}"
    )


def run_demo(
    data_dir: Path,
    runs: Path,
    *,
    actors: int,
    seed: int,
    overrides: list[str],
    dashboard: bool = False,
) -> RunDir:
    """Generate (or reuse) the corpus, start training as its own process, follow it in
    the dashboard (``dashboard``) or as rich live output, then print the summary."""
    console = Console()
    ensure_corpus(data_dir, actors, seed, console)
    run_id = new_run_id(MODEL)
    run = RunDir(runs / run_id)
    runs.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "trainers", "train", MODEL,
        "--data", str(data_dir), "--out", str(runs), "--run-id", run_id,
    ]  # fmt: skip
    for item in [*DEMO_SETTINGS, *overrides]:
        argv += ["--set", item]
    log_path = runs / f".{run_id}.stdout"
    with open(log_path, "wb") as out:
        # Its own session: the terminal's signals (hangup, Ctrl-C, Ctrl-Z) reach the demo
        # only, which stops the run with SIGTERM, the one way `q` and `stop` do.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    restore_hangup = _stop_on_hangup(proc)
    try:
        if dashboard:
            _wait_for_run_dir(proc, run, console)
            _follow_in_dashboard(run, runs)
        else:
            _follow_live(proc, run, console)
    except KeyboardInterrupt:
        pass
    finally:
        restore_hangup()
    if proc.poll() is None and _finished(run):
        # The run wrote its final status and is only exiting (closing TensorBoard's
        # writer, say): let it, rather than stop a run that is already done.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
    if proc.poll() is None:
        # Ctrl-C, or the dashboard closed while the run goes on: stop it cleanly (the
        # engine saves a checkpoint) rather than leave an orphan training here.
        console.print("stopping the run (a checkpoint is saved)...")
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        console.print(f"stopped; continue with: python -m trainers resume {run.path}")
        raise DemoError("interrupted")
    output = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-15:])
        raise DemoError(f"training exited with code {proc.returncode}:\n{tail}")
    log_path.unlink()
    print_summary(run, console)
    return run


def _stop_on_hangup(proc: subprocess.Popen) -> Callable[[], object]:
    """On SIGHUP (the terminal closed) stop the run with SIGTERM, as `q` does: it saves a
    checkpoint and records "stopped" on its own; the demo, with no terminal left to
    report to, exits 129 at once. Where SIGHUP is ignored (nohup) the demo and its run
    go on. Returns what puts the previous handler back."""
    previous = signal.getsignal(signal.SIGHUP)
    if previous is signal.SIG_IGN:
        return lambda: None

    def hangup(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        os._exit(128 + signum)

    signal.signal(signal.SIGHUP, hangup)
    restore = previous if previous is not None else signal.SIG_DFL
    return lambda: signal.signal(signal.SIGHUP, restore)


def _finished(run: RunDir) -> bool:
    try:
        return RunStatus(run.read_manifest().get("status")).is_terminal()
    except (OSError, ValueError):
        return False


def _follow_live(proc: subprocess.Popen, run: RunDir, console: Console) -> None:
    view = RunView(run)
    with Live(view.render(), console=console, refresh_per_second=4) as live:
        while proc.poll() is None:
            view.poll()
            live.update(view.render())
            time.sleep(0.25)
        view.poll()
        live.update(view.render())


def _wait_for_run_dir(proc: subprocess.Popen, run: RunDir, console: Console) -> None:
    """Until the training process has written run.json: the dashboard's watcher wants
    a run directory to watch, and the process takes seconds to import torch."""
    with console.status("starting the training process (importing torch)..."):
        while not run.run_json.exists() and proc.poll() is None:
            time.sleep(0.1)


def _follow_in_dashboard(run: RunDir, runs: Path) -> None:
    """The dashboard, opened on this run's view (Escape: every run on every host).

    The local host lists ``./runs`` of the working directory; a run elsewhere is
    opened by its path, so its view works wherever ``--runs`` points."""
    from emoconsole.dashboard.app import Dashboard

    in_cwd = runs.resolve() == (Path.cwd() / "runs").resolve()
    target = run.path.name if in_cwd else str(run.path.resolve())
    Dashboard(open_run=("local", target), interval=1.0).run()
