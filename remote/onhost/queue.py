"""A host's run queue: runs wait for GPU slots and start in order. Stdlib only.

A host has ``slots`` (its GPUs, or the ``slots`` of its hosts.toml entry). Each
run takes as many as its ``--gpus`` (at least one). ``hostctl launch --slots N``
puts the run in the queue and starts at once what fits; what does not fit waits
for a detached runner (``python -m remote.hostctl run-queue RUNS``) that starts
the next runs, in arrival order, as the runs holding slots end.

Why the queue is files on the host and its runner a process there: the console
may exit, lose its connection or run on another laptop tomorrow; the queue must
go on without it and look the same to whoever asks next. Everything lives under
``RUNS/.queue/``:

- ``<seq>-<run id>.json``: one entry per run, named so that a listing sorts in
  arrival order; written whole by tmp + rename, so a reader never sees half.
- ``lock``: every change to the entries happens under ``flock`` on this file
  (launches, stops and the runner are different processes).
- ``runner.lock``: the runner holds ``flock`` on it for its life, so there is
  never more than one; a launch that can take it knows no runner is alive.
- ``slots``: the host's slot count, as the last launch gave it.

A started entry stays until its process is gone: that is how a runner started
later (the last one exits when nothing waits) knows which slots are held and
never gives a GPU twice. Runs started without the queue (by hand, a resume)
are not counted.

This module keeps the entries and decides what starts; starting a run is
hostctl's ``launch`` (the launch lock, the guard, output.log), handed in as a
function, so the two modules do not import each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from remote.onhost.proc import pid_alive, process_start_time
from trainers.rundir import EXPERIMENT_JSON, RUN_JSON

QUEUE_DIR = ".queue"
# A started entry's directory that holds one of these is listed from it, not the queue:
# a run's run.json, a sweep's experiment.json (``hostctl list`` names its runs).
DESCRIBED_BY = (RUN_JSON, EXPERIMENT_JSON)
QUEUED = "queued"
STARTED = "started"
# A started entry's process must be born before this long after the entry says it
# started; one born later holds a reused pid (the entry's run is gone).
REUSE_SLACK_S = 5.0


@dataclass
class Entry:
    """One run in the queue: what hostctl's ``launch`` needs to start it later, the
    slots it wants and, once started, the slot ids it holds and its pid."""

    run_id: str
    argv: list[str]
    cwd: str | None = None
    pythonpath: str | None = None
    guard_args: list[str] | None = None
    guard_python: str | None = None
    run_dir: str | None = None
    # The host's webhook for the guard (a secret: the entry files are the user's only).
    notify_url: str | None = None
    wants: int = 1
    state: str = QUEUED
    seq: int = 0
    queued_at: float = 0.0
    started_at: float | None = None
    slot_ids: list[int] = field(default_factory=list)
    pid: int | None = None

    @property
    def file_name(self) -> str:
        return f"{self.seq:020d}-{self.run_id}.json"

    @property
    def model(self) -> str | None:
        """The model of a ``python -m trainers train MODEL`` run, for the runs table."""
        argv = self.argv
        for i in range(len(argv) - 3):
            if argv[i : i + 3] == ["-m", "trainers", "train"]:
                return argv[i + 3]
        return None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def gpu_count() -> int:
    """GPUs ``nvidia-smi -L`` lists; 0 without nvidia-smi or when it fails."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def cuda_devices(slot_ids: list[int], gpus: int | None = None) -> str:
    """CUDA_VISIBLE_DEVICES for a run holding ``slot_ids``. Slot i is GPU i of those
    this host shows (the caller's CUDA_VISIBLE_DEVICES, else all); with more slots
    than GPUs (several runs share one), slots wrap round the GPUs. On a host without
    GPUs the slot ids themselves: nothing reads them there, and they say which slot."""
    gpus = gpu_count() if gpus is None else gpus
    if gpus <= 0:
        return ",".join(str(i) for i in slot_ids)
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    devices = visible or [str(i) for i in range(gpus)]
    chosen: list[str] = []
    for i in slot_ids:
        device = devices[i % len(devices)]
        if device not in chosen:
            chosen.append(device)
    return ",".join(chosen)


def _entry_alive(entry: Entry) -> bool:
    if not pid_alive(entry.pid):
        return False
    born = process_start_time(entry.pid or 0)
    return not (born is not None and entry.started_at and born > entry.started_at + REUSE_SLACK_S)


# Starts one entry on the given slot ids; returns hostctl launch's answer (with "pid").
Starter = Callable[[Entry, list[int]], dict[str, Any]]


class RunQueue:
    """The entries under ``RUNS/.queue``. Read anywhere; change only inside
    :meth:`locked`."""

    def __init__(self, runs: Path) -> None:
        self.runs = runs
        self.dir = runs / QUEUE_DIR

    @property
    def exists(self) -> bool:
        return self.dir.is_dir()

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunQueue]:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # entries may hold a webhook
        with open(self.dir / "lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- the entries ----------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every entry, in arrival order (an entry being removed is skipped)."""
        if not self.exists:
            return []
        out = []
        for path in sorted(self.dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                out.append(Entry.from_json(json.loads(path.read_text(encoding="utf-8"))))
        return out

    def queued(self) -> list[Entry]:
        return [e for e in self.entries() if e.state == QUEUED]

    def find(self, run_id: str) -> Entry | None:
        return next((e for e in self.entries() if e.run_id == run_id), None)

    def place(self, run_id: str) -> int | None:
        """1 for the run that starts next, None for a run not waiting."""
        ids = [e.run_id for e in self.queued()]
        return ids.index(run_id) + 1 if run_id in ids else None

    def write(self, entry: Entry) -> None:
        path = self.dir / entry.file_name
        tmp = self.dir / f".{entry.file_name}.tmp"
        tmp.write_text(json.dumps(asdict(entry)), encoding="utf-8")
        os.replace(tmp, path)

    def remove(self, entry: Entry) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / entry.file_name).unlink()

    def add(self, entry: Entry) -> Entry:
        """Append ``entry`` behind every entry there (under the lock)."""
        last = max((e.seq for e in self.entries()), default=0)
        entry.seq = max(time.time_ns(), last + 1)
        entry.queued_at = time.time()
        self.write(entry)
        return entry

    # -- slots ----------------------------------------------------------------------------

    @property
    def slots(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            return max(1, int((self.dir / "slots").read_text()))
        return 1

    def set_slots(self, slots: int) -> None:
        tmp = self.dir / ".slots.tmp"
        tmp.write_text(str(slots))
        os.replace(tmp, self.dir / "slots")

    def free_slots(self) -> list[int]:
        """Slot ids no live started entry holds; started entries whose process is
        gone are dropped on the way (their slots are free again)."""
        held: set[int] = set()
        for entry in self.entries():
            if entry.state != STARTED:
                continue
            if _entry_alive(entry):
                held.update(entry.slot_ids)
            else:
                self.remove(entry)
        return [i for i in range(self.slots) if i not in held]

    def step(self, start: Starter) -> dict[str, dict[str, Any]]:
        """Start the waiting runs that fit, in order (under the lock): the first that
        does not fit waits, and so does everything behind it, so a run wanting every
        GPU is not overtaken for ever by runs wanting one. Returns launch answers by
        run id; a run that failed to start leaves the queue, its answer says why."""
        started: dict[str, dict[str, Any]] = {}
        free = self.free_slots()
        for entry in self.queued():
            wants = min(max(1, entry.wants), self.slots)
            if wants > len(free):
                break
            ids, free = free[:wants], free[wants:]
            entry.state, entry.slot_ids, entry.started_at = STARTED, ids, time.time()
            try:
                answer = start(entry, ids)
            except Exception as exc:  # one bad entry must not stop the runner and its queue
                answer = {"run_id": entry.run_id, "error": f"could not start: {exc!r}"}
            started[entry.run_id] = answer
            if answer.get("pid") and "error" not in answer:
                entry.pid = int(answer["pid"])
                self.write(entry)
            else:  # nothing runs: give the slots back, drop the entry
                self.remove(entry)
                free = sorted(free + ids)
        return started

    def remove_queued(self, run_id: str) -> bool:
        """Take a waiting run out (``stop`` on a queued run); False when it is not
        waiting (never queued, or already started)."""
        if not self.exists:
            return False
        with self.locked():
            entry = self.find(run_id)
            if entry is None or entry.state != QUEUED:
                return False
            self.remove(entry)
            return True

    # -- the runner -----------------------------------------------------------------------

    @property
    def runner_lock(self) -> Path:
        return self.dir / "runner.lock"

    def runner_alive(self) -> bool:
        """Whether a runner holds its lock. Probing takes the lock for an instant: a
        runner starting at that instant gives up, which is why a caller that finds
        none always starts one."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.runner_lock, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False

    def run(
        self, start: Starter, poll: float = 0.5, say: Callable[[str], None] | None = None
    ) -> int:
        """The runner's loop: start what fits, wait, again; return once nothing waits.

        Its lock is dropped while the queue lock is held, so a launch that queues a
        run after the runner decided to go finds no runner and starts a new one."""
        say = say or (lambda line: print(line, flush=True))  # to runner.out, as it happens
        self.dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.runner_lock, "a+")  # noqa: SIM115 - held for the runner's life
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            say("another runner holds the queue")
            return 0
        (self.dir / "runner.pid").write_text(str(os.getpid()))
        try:
            while True:
                with self.locked():
                    for run_id, answer in self.step(start).items():
                        say(f"{time.strftime('%H:%M:%S')} {run_id}: {json.dumps(answer)}")
                    if not self.queued():
                        fcntl.flock(fh, fcntl.LOCK_UN)
                        return 0
                _reap_children()
                time.sleep(poll)
        finally:
            fh.close()


def _reap_children() -> None:
    """The runner is the parent of the runs it starts: collect the ended ones, or
    they stay zombies until it exits."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def queued_rows(runs: Path) -> list[dict[str, Any]]:
    """``hostctl list``'s rows for runs the queue holds that have no run.json yet:
    waiting ones (``queued``, with ``place``, 1 = next) and ones just started. A
    waiting sweep is one row, by its experiment id, until its experiment.json lists
    its runs."""
    queue = RunQueue(runs)
    rows = []
    place = 0
    for entry in queue.entries():
        if entry.state == QUEUED:
            place += 1
        elif any((Path(entry.run_dir or runs / entry.run_id) / name).exists()
                 for name in DESCRIBED_BY):  # fmt: skip
            continue  # the run (or the experiment, listed as its runs) describes itself
        elif not _entry_alive(entry):
            continue  # died before its run.json: its launch's output.log says why
        rows.append(
            {
                "id": entry.run_id,
                "model": entry.model,
                "status": QUEUED if entry.state == QUEUED else "starting",
                "place": place if entry.state == QUEUED else None,
                "pid": entry.pid,
                "wants": entry.wants,
                "queued_at": entry.queued_at,
                "started_at": None,
                "ended_at": None,
                "epochs": None,
                "epoch": None,
                "best": None,
                "best_epoch": None,
                "monitor": None,
                "instances": None,
                "recoveries": None,
            }
        )
    return rows
