"""The watch stream: the on-host watcher and the reconnecting client, locally and
over a real sshd that gets killed mid-stream."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from remote.errors import (
    AuthenticationError,
    ChangedHostKeyError,
    CommandError,
    TransportError,
    WatchError,
)
from remote.local import LocalHost
from remote.onhost.watcher import LogTail
from remote.watch import (
    Backoff,
    ConnectionItem,
    CrashedItem,
    EventItem,
    HeartbeatItem,
    LogItem,
    SysItem,
    WatchItem,
    follow,
)
from trainers.events import EventType, EventWriter, RunStatus
from trainers.rundir import write_json_atomic

pytest_plugins = ["tests.sshd"]

FAST = Backoff(initial=0.1, cap=0.5, max_downtime=20)


class FakeRun(threading.Thread):
    """A run directory written the way the engine writes it (EventWriter, a
    flushed train.log), at a chosen pace, in a thread."""

    def __init__(self, run_dir: Path, steps: int, batch: int = 500, pause: float = 0.02):
        super().__init__(daemon=True)
        self.run_dir, self.steps, self.batch, self.pause = run_dir, steps, batch, pause
        run_dir.mkdir(parents=True, exist_ok=True)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with (
                EventWriter(self.run_dir / "events.jsonl") as events,
                open(self.run_dir / "train.log", "a", encoding="utf-8") as log,
            ):
                events.write(EventType.STATUS, status=RunStatus.RUNNING, device="cpu")
                for i in range(1, self.steps + 1):
                    events.write(
                        EventType.STEP, epoch=1, step=i, steps=self.steps, global_step=i,
                        loss=1.0 / i, lr=1e-3, data_s=0.0, compute_s=0.01,
                    )  # fmt: skip
                    if i % 250 == 0:
                        log.write(f"2025-01-01 00:00:00 INFO step {i} loss {1.0 / i:.4f} é✓\n")
                        log.flush()
                    if i % self.batch == 0:
                        time.sleep(self.pause)
                events.write(EventType.STATUS, status=RunStatus.COMPLETED, reason="max_epochs")
                log.write("2025-01-01 00:00:01 INFO done\n")
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            self.error = exc


def collect(items: Iterator[WatchItem], on_item=None, limit: float = 30.0) -> list[WatchItem]:
    got: list[WatchItem] = []
    deadline = time.monotonic() + limit
    for item in items:
        got.append(item)
        if on_item is not None:
            on_item(item, got)
        assert time.monotonic() < deadline, "follow did not end in time"
    return got


def seqs(items: list[WatchItem]) -> list[int]:
    return [i.seq for i in items if isinstance(i, EventItem)]


def log_text(items: list[WatchItem]) -> str:
    return "".join(i.text for i in items if isinstance(i, LogItem))


def connection_states(items: list[WatchItem]) -> list[str]:
    return [i.state for i in items if isinstance(i, ConnectionItem)]


def watcher_processes(run_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "remote.watcher" in cmd and str(run_dir) in cmd:
            found.append(proc)
    return found


def write_manifest(run_dir: Path, pid: int, status: str = "running") -> None:
    write_json_atomic(
        run_dir / "run.json",
        {"id": run_dir.name, "pid": pid, "host": socket.gethostname(), "status": status},
    )


# -- the watcher on its own ------------------------------------------------------------------


def test_log_tail_never_splits_a_character_written_byte_by_byte(tmp_path):
    path = tmp_path / "train.log"
    text = "naïve café ✓ 𝄞 done\n"
    tail, got, offsets = LogTail(path), [], []
    with open(path, "wb") as fh:
        for byte in text.encode("utf-8"):
            fh.write(bytes([byte]))
            fh.flush()
            got.append(tail.read())
            offsets.append(tail.offset)
    assert "".join(got) == text and "\ufffd" not in "".join(got)
    boundaries = {len(text[:i].encode()) for i in range(len(text) + 1)}
    assert set(offsets) <= boundaries  # every offset a client could resume from is clean
    # Resuming from any reported offset gives exactly the rest.
    for offset in sorted(set(offsets)):
        rest = LogTail(path, offset).read(1 << 20)
        assert rest == path.read_bytes()[offset:].decode("utf-8")


def test_watcher_reports_a_missing_run_directory(tmp_path):
    with pytest.raises(WatchError, match="no run directory"):
        collect(follow(LocalHost(), tmp_path / "nope", interval=0.2))


# -- following locally ---------------------------------------------------------------------


def test_local_follow_streams_events_log_and_samples_then_ends(tmp_path):
    run_dir = tmp_path / "run"
    writer = FakeRun(run_dir, steps=3000, batch=300, pause=0.02)
    writer.start()
    items = collect(follow(LocalHost(), run_dir, interval=0.2))
    writer.join()
    assert writer.error is None
    assert seqs(items) == list(range(1, 3003))
    last = [i for i in items if isinstance(i, EventItem)][-1]
    assert last.status is RunStatus.COMPLETED
    assert log_text(items) == (run_dir / "train.log").read_text(encoding="utf-8")
    assert any(isinstance(i, HeartbeatItem) for i in items)
    sample = next(i.sample for i in items if isinstance(i, SysItem))
    assert {"cpu_percent", "ram_total", "disk_free", "alive"} <= set(sample)
    assert sample["alive"] is None  # no run.json pid: liveness unknown, never a crash
    assert connection_states(items) == []


def test_follow_resumes_from_a_seq_and_a_log_offset_mid_character(tmp_path):
    run_dir = tmp_path / "run"
    FakeRun(run_dir, steps=600, pause=0).run()
    log_bytes = (run_dir / "train.log").read_bytes()
    cut = log_bytes.index("é".encode()) + 2  # just after é, before ✓ (a boundary)
    items = collect(follow(LocalHost(), run_dir, after_seq=590, log_offset=cut, interval=0.2))
    assert seqs(items) == list(range(591, 603))
    assert log_text(items) == log_bytes[cut:].decode("utf-8")


def test_utf8_split_across_reads_of_a_live_log(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log = run_dir / "train.log"
    log.write_bytes(b"abc")
    items: list[WatchItem] = []

    def writer() -> None:
        time.sleep(0.4)
        with open(log, "ab") as fh:
            for byte in "é✓\n".encode():  # one byte at a time, slower than the polls
                fh.write(bytes([byte]))
                fh.flush()
                time.sleep(0.15)
        with EventWriter(run_dir / "events.jsonl") as events:
            events.write(EventType.STATUS, status=RunStatus.COMPLETED, reason="max_epochs")

    thread = threading.Thread(target=writer)
    thread.start()
    items = collect(follow(LocalHost(), run_dir, interval=0.2, poll=0.03))
    thread.join()
    logs = [i for i in items if isinstance(i, LogItem)]
    assert log_text(items) == "abcé✓\n" and "\ufffd" not in log_text(items)
    offsets = [i.offset for i in logs]
    # Only whole characters, ever: offsets sit on boundaries (normally all of them,
    # [3, 5, 8, 9]; a poll delayed by a loaded machine may merge two).
    assert offsets == sorted(offsets) and set(offsets) <= {3, 5, 8, 9} and offsets[-1] == 9
    assert len(offsets) >= 3


def test_heartbeat_silence_counts_as_a_drop(tmp_path):
    run_dir = tmp_path / "run"
    writer = FakeRun(run_dir, steps=4000, batch=200, pause=0.05)
    stopped: list[psutil.Process] = []

    def freeze_watcher(item: WatchItem, got: list[WatchItem]) -> None:
        if not stopped and isinstance(item, EventItem) and item.seq >= 1000:
            (proc,) = watcher_processes(run_dir)
            proc.send_signal(signal.SIGSTOP)  # alive, connected, silent
            stopped.append(proc)

    writer.start()
    try:
        items = collect(follow(LocalHost(), run_dir, interval=0.2, backoff=FAST), freeze_watcher)
    finally:
        for proc in stopped:
            if proc.is_running():
                proc.kill()
    writer.join()
    assert stopped
    assert connection_states(items)[:3] == ["lost", "retrying", "restored"]
    lost = next(i for i in items if isinstance(i, ConnectionItem))
    assert re.fullmatch(r"silent for \d+ s", lost.reason), lost  # not the shell command
    assert "no output from" in lost.detail
    assert seqs(items) == list(range(1, 4003))  # every event exactly once
    assert log_text(items) == (run_dir / "train.log").read_text(encoding="utf-8")


# -- crashes -------------------------------------------------------------------------------


def _crashed_run(run_dir: Path, pid: int, lines: int = 80) -> None:
    run_dir.mkdir(parents=True)
    write_manifest(run_dir, pid)
    with EventWriter(run_dir / "events.jsonl") as events:
        events.write(EventType.STATUS, status=RunStatus.STARTING, pid=pid)
        events.write(EventType.STATUS, status=RunStatus.RUNNING, device="cpu")
    (run_dir / "train.log").write_text("".join(f"line {i}\n" for i in range(lines)))


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


def test_dead_process_without_terminal_status_is_crashed_with_its_last_lines(tmp_path):
    run_dir = tmp_path / "run"
    _crashed_run(run_dir, _dead_pid())
    items = collect(follow(LocalHost(), run_dir, interval=0.2))
    crashed = items[-1]
    assert isinstance(crashed, CrashedItem) and crashed.status is RunStatus.CRASHED
    assert crashed.last_log == [f"line {i}" for i in range(30, 80)]
    assert seqs(items) == [1, 2]


def test_a_process_that_dies_mid_watch_is_reported_crashed(tmp_path):
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    run_dir = tmp_path / "run"
    _crashed_run(run_dir, victim.pid, lines=3)
    alive_seen: list[bool] = []

    def kill_after_first_sample(item: WatchItem, got: list[WatchItem]) -> None:
        if isinstance(item, SysItem) and not alive_seen:
            alive_seen.append(item.sample["alive"])
            victim.kill()
            victim.wait()

    items = collect(follow(LocalHost(), run_dir, interval=0.2), kill_after_first_sample)
    assert alive_seen == [True]
    assert isinstance(items[-1], CrashedItem)
    assert items[-1].last_log == ["line 0", "line 1", "line 2"]


def test_a_terminal_status_written_before_exit_is_not_a_crash(tmp_path):
    run_dir = tmp_path / "run"
    _crashed_run(run_dir, _dead_pid())
    with EventWriter(run_dir / "events.jsonl") as events:
        events.write(EventType.STATUS, status=RunStatus.FAILED)
    items = collect(follow(LocalHost(), run_dir, interval=0.2))
    assert not any(isinstance(i, CrashedItem) for i in items)
    assert seqs(items) == [1, 2, 3]


# -- over SSH ------------------------------------------------------------------------------


def test_ssh_follow_matches_local_follow(trusted, tmp_path):
    run_dir = tmp_path / "run"
    writer = FakeRun(run_dir, steps=2000, batch=400, pause=0.02)
    writer.start()
    items = collect(follow(trusted, run_dir, interval=0.3, backoff=FAST))
    writer.join()
    assert seqs(items) == list(range(1, 2003))
    assert log_text(items) == (run_dir / "train.log").read_text(encoding="utf-8")
    assert connection_states(items) == []


def test_killing_sshd_mid_stream_loses_and_repeats_nothing(make_sshd, ssh_env, tmp_path):
    server = make_sshd()
    ssh_env.trust(server)
    host = server.ssh_host()
    run_dir = tmp_path / "run"
    steps = 100_000  # the figure
    writer = FakeRun(run_dir, steps=steps, batch=2000, pause=0.05)
    kills: list[int] = []

    def kill_twice(item: WatchItem, got: list[WatchItem]) -> None:
        if isinstance(item, EventItem) and item.seq >= 30_000 * (len(kills) + 1) and len(kills) < 2:
            assert watcher_processes(run_dir)
            server.kill()  # daemon, sessions and the watcher, all SIGKILLed
            kills.append(item.seq)
            assert not watcher_processes(run_dir)
            server.start()

    writer.start()
    try:
        items = collect(follow(host, run_dir, interval=0.5, backoff=FAST), kill_twice)
    finally:
        host.close()
    writer.join()
    assert len(kills) == 2
    assert connection_states(items).count("lost") == 2
    assert connection_states(items).count("restored") == 2
    assert seqs(items) == list(range(1, steps + 3))  # every seq exactly once, in order
    assert log_text(items) == (run_dir / "train.log").read_text(encoding="utf-8")


def test_a_host_key_that_changes_while_reconnecting_stops_the_follow(make_sshd, ssh_env, tmp_path):
    server = make_sshd()
    ssh_env.trust(server)
    host = server.ssh_host()
    run_dir = tmp_path / "run"
    FakeRun(run_dir, steps=10, pause=0).run()
    (run_dir / "events.jsonl").write_text(  # drop the final status: the run goes on
        "".join((run_dir / "events.jsonl").read_text().splitlines(keepends=True)[:-1])
    )
    got: list[WatchItem] = []
    with pytest.raises(ChangedHostKeyError):
        for item in follow(host, run_dir, interval=0.3, backoff=FAST):
            got.append(item)
            if isinstance(item, EventItem) and item.seq == 11:
                server.restart(new_host_key=True)  # the address now answers as someone else
    host.close()
    assert seqs(got) == list(range(1, 12))
    assert connection_states(got) == ["lost", "retrying"]


def test_follow_gives_up_after_its_attempts(make_sshd, ssh_env, tmp_path):
    server = make_sshd()
    ssh_env.trust(server)
    host = server.ssh_host(connect_timeout=1.0)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    got: list[WatchItem] = []
    with pytest.raises(TransportError, match="gave up reconnecting after 2 attempts"):
        for item in follow(host, run_dir, interval=0.3, backoff=Backoff(0.05, max_attempts=2)):
            got.append(item)
            if isinstance(item, HeartbeatItem) and server.proc is not None:
                server.kill()  # and it never comes back
    host.close()
    assert connection_states(got) == ["lost", "retrying", "retrying"]


def test_auth_failure_is_raised_at_once_and_never_retried(sshd, ssh_env, tmp_path):
    ssh_env.trust(sshd)
    host = sshd.ssh_host(identity_file=str(sshd.client_key.with_name("id_wrong")))
    run_dir = tmp_path / "run"
    FakeRun(run_dir, steps=10, pause=0).run()
    before = sshd.log.read_text().count("Connection from")
    got: list[WatchItem] = []
    with pytest.raises(AuthenticationError):
        for item in follow(host, run_dir, interval=0.2, backoff=FAST):
            got.append(item)
    assert got == []
    time.sleep(0.2)  # let sshd log anything in flight
    assert sshd.log.read_text().count("Connection from") - before == 1


def test_the_watcher_is_stdlib_only(tmp_path):
    """It runs on the GPU host: no torch, no paramiko, no console libraries."""
    run_dir = tmp_path / "run"
    FakeRun(run_dir, steps=3, pause=0).run()
    code = (
        "import sys, runpy, json\n"
        f"sys.argv = ['w', {str(run_dir)!r}, '--interval', '0.1']\n"
        "try:\n    runpy.run_module('remote.watcher', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "bad = {'torch', 'paramiko', 'typer', 'textual', 'boto3', 'rich', 'numpy'}\n"
        "print(json.dumps(sorted(bad & set(sys.modules))), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []
    msgs = [json.loads(line) for line in proc.stdout.splitlines()]
    events = [e for m in msgs if m["kind"] == "events" for e in m["events"]]
    assert msgs[-1]["kind"] == "end" and len(events) == 5


def test_a_watcher_that_cannot_start_is_an_error_not_a_retry_loop(tmp_path):
    run_dir = tmp_path / "run"
    FakeRun(run_dir, steps=3, pause=0).run()
    host = LocalHost(python=str(tmp_path / "no-such-python"))
    got: list[WatchItem] = []
    with pytest.raises(CommandError) as info:
        for item in follow(host, run_dir, interval=0.2, backoff=FAST):
            got.append(item)
    assert info.value.exit_code == 127 and "no-such-python" in info.value.output_tail
    assert got == []


# -- a real training run -------------------------------------------------------------------


@pytest.mark.slow
def test_follow_a_real_training_run_over_ssh_then_its_crash(
    trusted, small_corpus, feature_cache, tmp_path
):
    from tests.conftest import SMALL_MODEL, trainers_cmd

    def start(run_id: str, epochs: int) -> subprocess.Popen:
        sets = [*SMALL_MODEL, f"train.epochs={epochs}", f"data.cache_dir={feature_cache}"]
        argv = ["train", "hybrid-attention", "--data", str(small_corpus), "--out", str(tmp_path)]
        argv += ["--run-id", run_id] + [a for s in sets for a in ("--set", s)]
        proc = subprocess.Popen(
            trainers_cmd(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while not (tmp_path / run_id / "run.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        return proc

    proc = start("done", epochs=1)
    items = collect(follow(trusted, tmp_path / "done", interval=0.5, backoff=FAST), limit=240)
    assert proc.wait(60) == 0
    from trainers.events import read_events

    written = read_events(tmp_path / "done" / "events.jsonl")
    assert seqs(items) == [e["seq"] for e in written]
    assert [i for i in items if isinstance(i, EventItem)][-1].status is RunStatus.COMPLETED
    log = (tmp_path / "done" / "train.log").read_text(encoding="utf-8")
    assert log.startswith(log_text(items)) and "step" in log_text(items)
    assert any(isinstance(i, SysItem) and i.sample["alive"] for i in items)

    # kill -9 once it is training: the watcher sees the pid gone without a final status.
    proc = start("killed", epochs=5)

    def kill_at_first_step(item: WatchItem, got: list[WatchItem]) -> None:
        if isinstance(item, EventItem) and item.type == "step" and proc.poll() is None:
            proc.kill()
            proc.wait()

    items = collect(
        follow(trusted, tmp_path / "killed", interval=0.3, backoff=FAST), kill_at_first_step, 240
    )
    assert isinstance(items[-1], CrashedItem)
    assert items[-1].last_log and items[-1].last_log[-1] in (
        tmp_path / "killed" / "train.log"
    ).read_text(encoding="utf-8")
