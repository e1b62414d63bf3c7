"""Listing and reconnect cost against run length (issue 16, item 6).

For N runs of M events each, N in (100, 1000) and M in (1k, 100k), on the local
host: ``emoconsole runs --host local --json`` end to end (the CLI, which runs
``python -m remote.hostctl list`` on the host), and ``hostctl``'s ``list_runs``
in-process (the host's share, without two interpreters starting). Seconds per
run, and the ratio M=100k / M=1k (target <= 1.2; per run <= 2 ms on the host).
Every run directory is made by the real writers: one run of M events written
by ``trainers.events.EventWriter`` with the engine's ``ProgressRecord`` fed each
event, then N run directories whose events.jsonl is a hard link to it (1,000 x
100k distinct files would be 24 GB; with the record the listing never opens the
file, so identical contents change nothing) and whose run.json is its own.

Also listed: the same runs without the record (an engine from before it:
``RunLog.read_tail``, which reads back to the last val event, here up to one
10,000-step epoch), and the old way (``RunLog.read`` of the whole file, per
run) for comparison.

Then a watch reconnect: ``remote.watch.follow`` of a finished run whose client
holds all but its last 10 events, at the end of a 100k-event file with the byte
offset (what the client sends on a reconnect now), the same without it (the
old way: the watcher scans the file), against the same reconnect near the start
of a run (a 1,010-event file). Time until the follow ends (the last event and
the watcher's end). Target: the same time at the end as at the start.

    uv run python bench/listing.py [--n 100 1000] [--m 1000 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from remote.local import LocalHost  # noqa: E402
from remote.onhost.hostctl import list_runs  # noqa: E402
from remote.watch import EventItem, follow  # noqa: E402
from trainers.events import EventType, EventWriter, RunStatus  # noqa: E402
from trainers.rundir import RunDir, write_json_atomic  # noqa: E402
from trainers.runlog import PROGRESS, ProgressRecord, RunLog  # noqa: E402

STEPS_PER_EPOCH = 10_000  # a long epoch: the last val is far back in a tail


def write_template(run_dir: Path, m: int, finished: bool = False) -> RunDir:
    """One run of ``m`` events as the engine writes them: EventWriter and the engine's
    ProgressRecord sink, epochs of STEPS_PER_EPOCH steps closed by a val event."""
    run = RunDir(run_dir)
    run.path.mkdir(parents=True)
    manifest = {"id": run.path.name, "model": "bench", "pid": None, "status": "running"}
    manifest.update(started_at=time.time(), config={"train": {"epochs": 100}})
    write_json_atomic(run.run_json, manifest)
    (run.path / "train.log").write_text("bench\n")
    sink = ProgressRecord(run)
    with EventWriter(run.events) as writer:

        def emit(etype: EventType, **fields: object) -> None:
            sink.handle(writer.write(etype, **fields))

        emit(EventType.STATUS, status=RunStatus.RUNNING, device="cpu")
        n, epoch, best = 1, 0, 0.0
        end = m - 1 if finished else m
        while n < end:
            epoch += 1
            emit(EventType.EPOCH_START, epoch=epoch, epochs=100, steps=STEPS_PER_EPOCH)
            n += 1
            for step in range(1, STEPS_PER_EPOCH + 1):
                if n >= end:
                    break
                g = (epoch - 1) * STEPS_PER_EPOCH + step
                emit(EventType.STEP, epoch=epoch, step=step, global_step=g, loss=1 / g,
                     lr=1e-3, data_s=0.001, compute_s=0.01, samples=32)  # fmt: skip
                n += 1
            if n >= end:
                break
            value = 0.5 + epoch / 1000
            best = max(best, value)
            emit(EventType.VAL, epoch=epoch, split="val", loss=1.0, accuracy=value,
                 macro_f1=value, weighted_f1=value, uar=value, monitor="macro_f1", best=best,
                 best_epoch=epoch, per_class=[value] * 8, confusion=[[3] * 8] * 8)  # fmt: skip
            n += 1
        if finished:
            emit(EventType.STATUS, status=RunStatus.COMPLETED, reason="max_epochs")
    if finished:
        run.update_manifest(status="completed")
    return run


def make_runs(root: Path, template: RunDir, n: int, record: bool) -> Path:
    """``root/runs`` with ``n`` run directories: events.jsonl hard-linked to the
    template's, run.json its own (with or without the progress record)."""
    runs = root / "runs"
    runs.mkdir(parents=True)
    manifest = template.read_manifest()
    if not record:
        manifest.pop(PROGRESS, None)
    for i in range(n):
        run = runs / f"20260101-000000-bench-{i:04x}"
        run.mkdir()
        os.link(template.events, run / "events.jsonl")
        (run / "run.json").write_text(json.dumps({**manifest, "id": run.name}))
    return runs


def time_cli(root: Path, rounds: int, n: int = 0) -> float:
    """``emoconsole runs --host local --json`` in ``root`` (the local host lists ./runs)."""
    exe = Path(sys.executable).with_name("emoconsole")
    env = {**os.environ, "EMOCONSOLE_CONFIG": str(root / "no-hosts.toml")}
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        out = subprocess.run([str(exe), "runs", "--host", "local", "--json"], cwd=root, env=env,
                             capture_output=True, text=True, check=True)  # fmt: skip
        times.append(time.perf_counter() - start)
        assert len(json.loads(out.stdout)) == n, out.stdout[:200]
    return min(times)


def time_inproc(runs: Path, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        list_runs(runs)
        times.append(time.perf_counter() - start)
    return min(times)


def listing(work: Path, ns: list[int], ms: list[int], rounds: int) -> None:
    templates = {m: write_template(work / "templates" / f"m{m}", m) for m in ms}
    empty = work / "empty"
    (empty / "runs").mkdir(parents=True)
    cli_base = time_cli(empty, rounds)
    print(f"emoconsole runs --host local with no runs (two interpreters start): {cli_base:.3f} s")
    print("CLI: the whole command (best of rounds), over N; host: hostctl's list_runs")
    print("in-process over N, the per-run cost on the host.\n")
    print(f"{'record':<10}{'N':>6}{'M':>8}  {'CLI s':>7}  {'CLI ms/run':>10}  "
          f"{'host ms/run':>11}")  # fmt: skip
    figures: dict[tuple[str, int, int], tuple[float, float]] = {}
    for record in (True, False):
        label = "run.json" if record else "tail"
        for n in ns:
            for m in ms:
                root = work / f"{label}-{n}-{m}"
                runs = make_runs(root, templates[m], n, record)
                cli = time_cli(root, rounds, n)
                host = time_inproc(runs, rounds)
                figures[label, n, m] = (cli, host / n)
                print(f"{label:<10}{n:>6}{m:>8}  {cli:7.3f}  {1e3 * cli / n:10.3f}  "
                      f"{1e3 * host / n:11.3f}")  # fmt: skip
                shutil.rmtree(root)
    lo, hi = min(ms), max(ms)
    print(f"\nratio M={hi} / M={lo} (target <= 1.2): the CLI's time and the host's per run")
    for record in ("run.json", "tail"):
        for n in ns:
            (cli_lo, host_lo), (cli_hi, host_hi) = figures[record, n, lo], figures[record, n, hi]
            print(
                f"  {record:<9} N={n:<5} CLI {cli_hi / cli_lo:5.2f}   host {host_hi / host_lo:5.2f}"
            )
    print("\nthe old way, RunLog.read of the whole file (in-process, per run):")
    for m in ms:
        start = time.perf_counter()
        for _ in range(5):
            RunLog.read(templates[m].events)
        print(f"  M={m:<7} {1e3 * (time.perf_counter() - start) / 5:9.3f} ms/run")


def time_follow(run: RunDir, after: int, offset: int, rounds: int) -> float:
    times = []
    total = len(run.events.read_bytes().splitlines())
    for _ in range(rounds):
        start = time.perf_counter()
        got = [
            i.seq
            for i in follow(LocalHost(), run.path, after, events_offset=offset, interval=1.0)
            if isinstance(i, EventItem)
        ]
        times.append(time.perf_counter() - start)
        assert got == list(range(after + 1, total + 1)), (got[:3], got[-3:])
    return min(times)


def reconnect(work: Path, rounds: int) -> None:
    print("\nwatch reconnect holding all but the last 10 events (follow to its end):")
    for m, label in ((1_010, "start (1,010-event file)"), (100_010, "end (100,010-event file)")):
        run = write_template(work / f"watch-{m}", m, finished=True)
        lines = run.events.read_bytes().splitlines(keepends=True)
        after = len(lines) - 10
        offset = len(b"".join(lines[:after]))
        with_offset = time_follow(run, after, offset, rounds)
        without = time_follow(run, after, 0, rounds)
        print(f"  at the {label}: with the offset {with_offset:.3f} s, "
              f"scanning (the old way) {without:.3f} s")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--m", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="emo-bench-listing-"))
    try:
        listing(work, args.n, args.m, args.rounds)
        reconnect(work, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
