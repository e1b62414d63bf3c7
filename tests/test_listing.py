"""Listing and watching cost the same whatever a run's length (issue 16, item 6).

``hostctl list`` reads the progress record the engine keeps in run.json
(:class:`trainers.runlog.ProgressRecord`), else the events file's tail, never the
whole file; a watch that reconnects starts at the client's events.jsonl byte offset.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remote.local import LocalHost
from remote.onhost.hostctl import describe_run, list_runs
from remote.onhost.watcher import Emitter, Watcher
from remote.watch import EventItem, ResumePoint, follow, watcher_command
from tests.test_remote_watch import (
    FAST,
    FakeRun,
    _crashed_run,
    _dead_pid,
    collect,
    seqs,
    watcher_processes,
)
from trainers.events import EventType, EventWriter, RunStatus, cursor_at
from trainers.rundir import RunDir, write_json_atomic
from trainers.runlog import PROGRESS, ProgressRecord, RunLog

STEPS_PER_EPOCH = 10_000


def run_events(steps: int, per_epoch: int = STEPS_PER_EPOCH) -> Iterator[dict[str, Any]]:
    """A run's events as the engine writes them (no seq/time yet): epochs of
    ``per_epoch`` steps, each closed by a val event, ``steps`` events in all."""
    yield {"type": "status", "status": "running", "device": "cpu"}
    n, epoch, best, best_epoch = 1, 0, None, 0
    while n < steps:
        epoch += 1
        yield {"type": "epoch_start", "epoch": epoch, "epochs": 99, "steps": per_epoch}
        n += 1
        for step in range(1, per_epoch + 1):
            if n >= steps:
                return
            g = (epoch - 1) * per_epoch + step
            yield {
                "type": "step",
                "epoch": epoch,
                "step": step,
                "global_step": g,
                "loss": 1 / g,
                "lr": 1e-3,
                "data_s": 0.001,
                "compute_s": 0.01,
                "samples": 32,
            }
            n += 1
        if n >= steps:
            return
        value = 0.5 + epoch / 100
        if best is None or value > best:
            best, best_epoch = value, epoch
        yield {
            "type": "val",
            "epoch": epoch,
            "split": "val",
            "loss": 1.0,
            "accuracy": value,
            "macro_f1": value,
            "weighted_f1": value,
            "uar": value,
            "monitor": "macro_f1",
            "best": best,
            "best_epoch": best_epoch,
            "confusion": [[1] * 8] * 8,
        }
        n += 1


def make_run(runs: Path, run_id: str, steps: int, *, record: bool = True) -> RunDir:
    """A run directory of ``steps`` events, written fast in EventWriter's format (seq
    first, compact JSON); with ``record`` fed through the engine's ProgressRecord."""
    run = RunDir(runs / run_id)
    run.path.mkdir(parents=True)
    manifest = {"id": run_id, "model": "m", "status": "running", "started_at": 1.0}
    manifest["config"] = {"train": {"epochs": 99}}
    write_json_atomic(run.run_json, manifest)
    sink = ProgressRecord(run) if record else None
    with open(run.events, "w", encoding="utf-8") as fh:
        for seq, fields in enumerate(run_events(steps), start=1):
            event = {"seq": seq, "time": 1e9 + seq, **fields}
            fh.write(json.dumps(event, separators=(",", ":")) + "\n")
            if sink is not None:
                sink.handle(event)
    return run


def corrupt_head(run: RunDir, size: int = 4096) -> None:
    """The file's first ``size`` bytes made unreadable: a reader of the whole file fails."""
    with open(run.events, "r+b") as fh:
        fh.write(b"#" * (size - 1) + b"\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """runs/short (1,000 events), runs/long (100,000: ~20 MB), both with the record;
    tests change copies (:func:`copy_run`), never these."""
    base = tmp_path_factory.mktemp("listing") / "runs"
    make_run(base, "short", 1_000)
    make_run(base, "long", 100_000)
    return base


def copy_run(source: RunDir, dest: Path, *, record: bool) -> RunDir:
    """A copy of a run directory, with or without run.json's progress record."""
    run = RunDir(dest)
    run.path.mkdir(parents=True)
    shutil.copyfile(source.events, run.events)
    manifest = source.read_manifest()
    if not record:
        manifest.pop(PROGRESS)
    write_json_atomic(run.run_json, manifest)
    return run


def _timed(fn, repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# -- the progress record -----------------------------------------------------------------------


def test_a_listing_reads_the_record_whatever_the_run_length(runs, tmp_path, monkeypatch):
    long = copy_run(RunDir(runs / "long"), tmp_path / "long", record=True)
    corrupt_head(long)  # a reader of the whole file would fail now

    def never(*_a: Any, **_k: Any) -> RunLog:
        raise AssertionError("the events file was read")

    monkeypatch.setattr(RunLog, "read", never)
    monkeypatch.setattr(RunLog, "read_tail", never)
    row = describe_run(long.path)
    assert row is not None
    assert (row["epoch"], row["best_epoch"], row["monitor"]) == (10, 9, "macro_f1")
    assert row["best"] == pytest.approx(0.59)
    assert row["epochs"] == 99 and row["status"] == "running" and row["id"] == "long"
    short_s = _timed(lambda: describe_run(runs / "short"))
    long_s = _timed(lambda: describe_run(long.path))
    assert long_s < 3 * short_s + 0.002, (short_s, long_s)  # ~100 µs each
    assert [r["id"] for r in list_runs(runs)["runs"]] == ["long", "short"]


def test_the_record_says_what_the_whole_file_says_across_a_resume(tmp_path, monkeypatch):
    """Fed every event as the engine feeds it, the record matches RunLog.read of the
    file after each epoch start, val and resume (epoch 3 repeated), written only then."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    write_json_atomic(run.run_json, {"id": "run", "status": "running"})
    writes: list[dict[str, Any]] = []
    real = RunDir.write_manifest
    monkeypatch.setattr(
        RunDir, "write_manifest", lambda self, m: (writes.append(m), real(self, m))[1]
    )

    def epoch(writer: EventWriter, sink: ProgressRecord, n: int, value: float, best: float):
        for fields in [
            {"type": "epoch_start", "epoch": n, "epochs": 4, "steps": 5},
            *[
                {
                    "type": "step",
                    "epoch": n,
                    "step": s,
                    "global_step": s,
                    "loss": 1.0,
                    "lr": 0.1,
                    "data_s": 0.0,
                    "compute_s": 0.0,
                }
                for s in range(1, 6)
            ],
            {
                "type": "val",
                "epoch": n,
                "split": "val",
                "loss": 1.0,
                "accuracy": value,
                "macro_f1": value,
                "weighted_f1": value,
                "uar": value,
                "monitor": "uar",
                "best": best,
                "best_epoch": n if value == best else n - 1,
            },
        ]:
            etype = fields.pop("type")
            sink.handle(writer.write(etype, **fields))
            if etype != "step":
                check()

    def check() -> None:
        record = dict(run.read_manifest()[PROGRESS])
        assert record.pop("updated_at") > 0
        assert record == RunLog.read(run.events).progress()

    with EventWriter(run.events) as writer:
        sink = ProgressRecord(run)
        for n, value in [(1, 0.5), (2, 0.6), (3, 0.7)]:
            epoch(writer, sink, n, value, value)
    with EventWriter(run.events) as writer:  # killed after epoch 3's val; resumed from 2
        sink = ProgressRecord(run)  # the engine's on resume: the file as it is
        sink.handle(writer.write(EventType.STATUS, status=RunStatus.RESUMED, from_epoch=2))
        check()
        assert run.read_manifest()[PROGRESS]["best"] == 0.6  # epoch 3's val taken back
        epoch(writer, sink, 3, 0.55, 0.6)
        epoch(writer, sink, 4, 0.65, 0.65)
    assert len(writes) == 5 * 2 + 1  # epoch starts, vals and the resume: never per step
    row = describe_run(run.path)
    assert (row["epoch"], row["best"], row["best_epoch"]) == (4, 0.65, 4)


# -- without the record: the tail ---------------------------------------------------------------


def test_a_run_without_the_record_is_listed_from_its_tail(runs, tmp_path):
    # An engine from before the record.
    old = copy_run(RunDir(runs / "long"), tmp_path / "runs" / "old", record=False)
    corrupt_head(old)  # only the end of the file is read
    row = describe_run(old.path)
    assert (row["epoch"], row["best_epoch"], row["monitor"]) == (10, 9, "macro_f1")
    assert row["best"] == pytest.approx(0.59)

    # The last val is ~1.5 MB back (3/4 of an epoch since): the tail reads further.
    mid = make_run(tmp_path / "runs", "mid", 17_500, record=False)
    row = describe_run(mid.path)
    assert (row["epoch"], row["best_epoch"]) == (2, 1)
    assert RunLog.read_tail(mid.events).progress()["seq"] == 17_500  # the last line's

    # Killed before its first epoch ended: the epoch, no best yet.
    early = make_run(tmp_path / "runs", "early", 500, record=False)
    row = describe_run(early.path)
    assert (row["epoch"], row["best"], row["monitor"]) == (1, None, None)

    # No events file at all (killed before its first event): run.json's fields.
    early.events.unlink()
    row = describe_run(early.path)
    assert (row["epoch"], row["best"], row["status"]) == (None, None, "running")


# -- watching from a byte offset -----------------------------------------------------------------


def _watcher(run: RunDir, after_seq: int, offset: int) -> tuple[Watcher, io.BytesIO]:
    out = io.BytesIO()
    watcher = Watcher(run.path, Emitter(out), after_seq=after_seq, events_offset=offset)
    watcher.seek_events()
    return watcher, out


def _sent(out: io.BytesIO) -> tuple[list[int], list[int]]:
    """The seqs the watcher sent and the offsets its events lines carried."""
    got, offsets = [], []
    for line in out.getvalue().splitlines():
        msg = json.loads(line)
        if msg["kind"] == "events":
            got += [e["seq"] for e in msg["events"]]
            offsets.append(msg["offset"])
    return got, offsets


def test_a_reconnect_at_the_end_of_a_long_file_reads_only_what_is_new(runs, tmp_path):
    run = copy_run(RunDir(runs / "long"), tmp_path / "long", record=False)
    data = run.events.read_bytes()
    held = 99_990
    offset = len(b"".join(data.splitlines(keepends=True)[:held]))
    assert cursor_at(run.events, offset, held) is not None
    corrupt_head(run)  # a scan from the start would fail

    watcher, out = _watcher(run, held, offset)
    assert watcher.cursor.offset == offset and watcher.skipped == offset
    watcher.pump_events()
    got, offsets = _sent(out)
    assert got == list(range(held + 1, 100_001)) and offsets[-1] == len(data)
    with open(run.events, "a", encoding="utf-8") as fh:  # the run goes on
        fh.write('{"seq":100001,"type":"status","time":2e9,"status":"completed"}\n')
    watcher.pump_events()
    assert _sent(out)[0][-1] == 100_001 and watcher.terminal()

    # An offset that does not end on the held seq's line (another file, a wrong
    # offset): the whole file is scanned, as without one, and only seq > N is sent.
    fresh = make_run(tmp_path / "runs", "fresh", 2_000, record=False)
    for wrong in (offset, 17, 10**9):
        watcher, out = _watcher(fresh, 1_990, wrong)
        assert watcher.cursor.offset == 0
        watcher.pump_events()
        assert _sent(out)[0] == list(range(1_991, 2_001))


def test_a_status_before_the_offset_still_decides_crashed_or_not(tmp_path):
    """The process is gone and nothing follows the offset: the status before it (not
    read when seeking) decides. A terminal one ends the stream, no crash reported."""
    for last, expected in ((RunStatus.COMPLETED, "completed"), (None, "crashed")):
        run_dir = tmp_path / str(expected)
        _crashed_run(run_dir, _dead_pid())
        if last is not None:
            with EventWriter(run_dir / "events.jsonl") as writer:
                writer.write(EventType.STATUS, status=last, reason="max_epochs")
        data = (run_dir / "events.jsonl").read_bytes()
        held = data.count(b"\n")
        out = io.BytesIO()
        watcher = Watcher(run_dir, Emitter(out), after_seq=held, events_offset=len(data))
        assert watcher.run_forever() == 0 and watcher.skipped == 0
        kinds = [json.loads(line)["kind"] for line in out.getvalue().splitlines()]
        assert json.loads(out.getvalue().splitlines()[-1]) == {"kind": "end", "status": expected}
        assert ("crashed" in kinds) == (expected == "crashed") and "events" not in kinds


def test_follow_sends_the_offset_it_holds_when_it_reconnects(tmp_path):
    """A watcher frozen mid-stream (silence: a drop); the next one is asked from the
    offset of the last line the client holds, and every seq still comes once."""
    run_dir = tmp_path / "run"
    writer = FakeRun(run_dir, steps=4000, batch=200, pause=0.03)
    commands: list[list[str]] = []

    class Recording(LocalHost):
        def stream(self, cmd, **kwargs):
            commands.append(list(cmd))
            return super().stream(cmd, **kwargs)

    stopped = []

    def freeze(item: Any, got: list[Any]) -> None:
        if not stopped and isinstance(item, EventItem) and item.seq >= 1000:
            (proc,) = watcher_processes(run_dir)
            proc.send_signal(signal.SIGSTOP)
            stopped.append(proc)

    writer.start()
    try:
        items = collect(follow(Recording(), run_dir, interval=0.2, backoff=FAST), freeze)
    finally:
        for proc in stopped:
            if proc.is_running():
                proc.kill()
    writer.join()
    assert seqs(items) == list(range(1, 4003))  # every event exactly once
    assert len(commands) >= 2 and "--events-offset" not in commands[0]
    again = commands[1]
    seq = int(again[again.index("--after-seq") + 1])
    offset = int(again[again.index("--events-offset") + 1])
    lines = (run_dir / "events.jsonl").read_bytes().splitlines(keepends=True)
    assert offset == len(b"".join(lines[:seq]))  # just after the line with that seq


def test_the_offset_is_kept_only_when_a_batch_ends_on_the_held_seq():
    from remote.watch import _items

    point = ResumePoint()
    msg = {"kind": "events", "offset": 120, "events": [{"seq": 1}, {"seq": 2}]}
    assert [i.seq for i in _items(msg, point)] == [1, 2] and point.events_offset == 120
    # A batch the client held already (a reconnect scanned again): the offset is not its.
    list(_items({"kind": "events", "offset": 60, "events": [{"seq": 1}]}, point))
    assert (point.seq, point.events_offset) == (2, 120)
    command = watcher_command(LocalHost(), "run", point, 1.0)
    at = command.index("--after-seq")
    assert command[at : at + 4] == ["--after-seq", "2", "--events-offset", "120"]
    assert "--events-offset" not in watcher_command(LocalHost(), "run", point, 1.0, offsets=False)


def test_a_watcher_shipped_before_the_offset_is_asked_again_without_it(tmp_path):
    """Code deployed by an older console has no --events-offset: its argparse refusal
    is not a failed watch; the follow asks again with the seq alone."""
    run_dir = tmp_path / "run"
    _crashed_run(run_dir, _dead_pid())
    with EventWriter(run_dir / "events.jsonl") as writer:
        writer.write(EventType.STATUS, status=RunStatus.COMPLETED, reason="max_epochs")
    commands: list[list[str]] = []

    class OldCode(LocalHost):
        def stream(self, cmd, **kwargs):
            commands.append(list(cmd))
            if "--events-offset" in cmd:
                refusal = "echo 'watcher: error: unrecognized arguments: --events-offset' >&2"
                cmd = ["sh", "-c", refusal + "; exit 2"]
            return super().stream(cmd, **kwargs)

    offset = len(b"".join((run_dir / "events.jsonl").read_bytes().splitlines(True)[:1]))
    items = collect(follow(OldCode(), run_dir, after_seq=1, events_offset=offset, interval=0.2))
    assert seqs(items) == [2, 3] and len(commands) == 2
    assert "--events-offset" in commands[0] and "--events-offset" not in commands[1]
