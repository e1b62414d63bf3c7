"""The on-host watcher: one run directory as a stream of JSON lines on stdout.

    python -m remote.watcher RUN_DIR --after-seq N [--events-offset E] --log-offset B
        --interval 2.0

It runs next to the training process (locally as a subprocess, remotely over
one SSH exec channel), so it may import only the standard library, the
stdlib-only run-directory modules of ``trainers`` and, when installed, psutil:
no torch, no paramiko. Every line is one object with a ``kind``:

- ``events``: ``{"offset": E, "events": [{...}, ...]}``, the events.jsonl lines with seq > N,
  in order, as many as one read brought (up to EVENTS_CHUNK bytes): one line
  and one decode per batch instead of per event is what lets a client keep up
  with 100,000 events/s. ``offset`` is the events.jsonl byte offset just after
  the batch's last line: a client that reconnects with ``--after-seq`` its last
  seq and ``--events-offset`` that offset is answered from there, without the
  file before it being read again (the line before the offset must carry that
  seq, else the whole file is scanned as without the option). (Older watchers
  sent one ``event`` line per event, and no offset; clients still read those.)
- ``log``: ``{"offset": B', "text": "..."}``, new train.log text; ``offset`` is
  the byte offset just after ``text`` and always at a character boundary, so a
  client that reconnects with ``--log-offset B'`` misses and repeats nothing;
- ``sys``: a system sample every interval (CPU, RAM, disk of the run dir, the
  training process's liveness, GPUs via nvidia-smi when present);
- ``heartbeat``: ``{"time": t}`` at least every interval, so silence means a
  dead connection, not a quiet run;
- ``crashed``: ``{"last_log": [...]}``, the process is gone and no terminal
  status was written;
- ``error``: ``{"message": "..."}``, nothing can be watched (e.g. no such run);
- ``end``: ``{"status": "..."}``, always the last line when the watcher stops on
  purpose. A stream that ends without it was cut and should be resumed.

Samples are not appended to events.jsonl: that file has one writer (the run),
which is what keeps its seq strictly increasing.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from remote.onhost.proc import run_alive
from trainers.events import EventCursor, EventType, RunStatus, cursor_at, read_new_raw
from trainers.rundir import RunDir, tail_lines

try:  # optional: richer samples where installed; /proc and os otherwise
    import psutil
except ImportError:  # pragma: no cover - depends on the host
    psutil = None  # type: ignore[assignment]

LAST_LOG_LINES = 50
LOG_CHUNK = 64 * 1024  # bytes per log item
LOG_PER_POLL = 1024 * 1024  # bytes read per poll, so heartbeats keep flowing
EVENTS_CHUNK = 256 * 1024  # events.jsonl bytes per read and flush
GPU_QUERY = "index,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw"


class LogTail:
    """New text of a growing UTF-8 file from a byte offset.

    An incremental decoder holds back the first bytes of a character whose rest
    has not been written yet, and ``offset`` counts only the bytes decoded, so
    it always lands on a character boundary.
    """

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset  # just after the last byte handed out as text
        self._read_to = offset  # just after the last byte read from the file
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.last_read = 0  # bytes the last read() got: less than asked means caught up

    def read(self, limit: int = LOG_CHUNK) -> str:
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < self._read_to:  # replaced or truncated: start over
                    self.offset = self._read_to = 0
                    self._decoder.reset()
                fh.seek(self._read_to)
                data = fh.read(limit)
        except FileNotFoundError:
            self.last_read = 0
            return ""
        self._read_to += len(data)
        self.last_read = len(data)
        text = self._decoder.decode(data)
        pending, _ = self._decoder.getstate()
        self.offset = self._read_to - len(pending)
        return text


def last_lines(path: Path, n: int = LAST_LOG_LINES) -> list[str]:
    return tail_lines(path, n)


# -- process liveness and system samples ---------------------------------------------------


def _read_manifest(run: RunDir) -> dict[str, Any]:
    try:
        return run.read_manifest()
    except (OSError, ValueError):
        return {}  # not written yet, or being replaced (it is renamed into place)


# Where the guard's uploader keeps its last push's outcome (written by
# remote.storage.uploader, which this stdlib-only module must not import;
# tests/test_storage.py writes it with state_path and reads it back through here).
STORAGE_STATE = Path(".storage") / "state.json"


def _storage_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((run_dir / STORAGE_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


class Sampler:
    def __init__(self, run: RunDir) -> None:
        self.run = run
        self._nvidia_smi = shutil.which("nvidia-smi")
        self._gpu_failures = 0
        self._proc_cpu: tuple[float, float] | None = None
        self._proc: Any = None
        self._children: dict[int, Any] = {}
        if psutil is not None:
            psutil.cpu_percent(None)  # the first call only starts the measurement
        else:
            self._proc_cpu = _proc_stat_cpu()

    def sample(self, manifest: dict[str, Any]) -> dict[str, Any]:
        sample: dict[str, Any] = {"time": time.time()}
        sample.update(self._cpu_mem())
        with contextlib.suppress(OSError):
            usage = shutil.disk_usage(self.run.path)
            sample.update(disk_free=usage.free, disk_total=usage.total)
        sample["pid"] = manifest.get("pid")
        sample["alive"] = run_alive(manifest)
        sample.update(self._process(manifest, sample["alive"]))
        gpus = self._gpus()
        if gpus is not None:
            sample["gpus"] = gpus
        storage = _storage_state(self.run.path)
        if storage is not None:
            keep = ("ok", "time", "error", "failures", "url")
            sample["storage"] = {k: storage.get(k) for k in keep}
        return sample

    def _cpu_mem(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with contextlib.suppress(OSError):
            out["load"] = list(os.getloadavg())
        if psutil is not None:
            mem = psutil.virtual_memory()
            out.update(
                cpu_percent=psutil.cpu_percent(None),
                ram_used=mem.total - mem.available,
                ram_total=mem.total,
                ram_percent=mem.percent,
            )
            return out
        now = _proc_stat_cpu()
        if now and self._proc_cpu:
            busy, total = now[0] - self._proc_cpu[0], now[1] - self._proc_cpu[1]
            out["cpu_percent"] = round(100.0 * busy / total, 1) if total > 0 else 0.0
        self._proc_cpu = now
        mem = _meminfo()
        if mem:
            total, avail = mem
            out.update(
                ram_used=total - avail,
                ram_total=total,
                ram_percent=round(100.0 * (total - avail) / total, 1),
            )
        return out

    def _process(self, manifest: dict[str, Any], alive: bool | None) -> dict[str, Any]:
        if psutil is None or not alive:
            return {}
        try:
            pid = manifest["pid"]
            if self._proc is None or self._proc.pid != pid:
                self._proc = psutil.Process(pid)
                self._proc.cpu_percent(None)
                self._children = {}
            cpu, rss = self._proc.cpu_percent(None), self._proc.memory_info().rss
            # Under torchrun the run's pid is the launcher; the ranks are its children.
            # Each child keeps its Process object so its cpu_percent has a previous call.
            alive: dict[int, Any] = {}
            for child in self._proc.children(recursive=True):
                known = self._children.get(child.pid, child)
                with contextlib.suppress(psutil.Error):
                    cpu += known.cpu_percent(None)
                    rss += known.memory_info().rss
                    alive[child.pid] = known
            self._children = alive
            return {"proc_cpu_percent": cpu, "proc_rss": rss, "procs": 1 + len(alive)}
        except (psutil.Error, KeyError):
            return {}

    def _gpus(self) -> list[dict[str, Any]] | None:
        if not self._nvidia_smi or self._gpu_failures >= 3:
            return None
        try:
            out = subprocess.run(
                [self._nvidia_smi, f"--query-gpu={GPU_QUERY}", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            self._gpu_failures += 1  # a driver that is gone stays gone; stop asking
            return None
        gpus = []
        for line in out.strip().splitlines():
            fields = [f.strip() for f in line.split(",")]
            if len(fields) != 7:
                continue
            index, name, util, used, total, temp, power = fields
            gpus.append(
                {
                    "index": _num(index),
                    "name": name,
                    "util_percent": _num(util),
                    "mem_used_mib": _num(used),
                    "mem_total_mib": _num(total),
                    "temp_c": _num(temp),
                    "power_w": _num(power),
                }
            )
        return gpus


def _num(text: str) -> float | int | None:
    """nvidia-smi prints "[N/A]" or "[Not Supported]" for what a board lacks."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else value


def _proc_stat_cpu() -> tuple[float, float] | None:
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [float(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    return sum(values) - idle, sum(values)


def _meminfo() -> tuple[int, int] | None:
    try:
        rows = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return int(rows["MemTotal"].split()[0]) * 1024, int(rows["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


# -- the loop ------------------------------------------------------------------------------


class Emitter:
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def __call__(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"kind": kind, **fields}, separators=(",", ":"), default=str)
        self.out.write(line.encode("ascii") + b"\n")

    def events(self, lines: list[bytes], offset: int | None = None) -> None:
        """events.jsonl lines, forwarded as written in one ``events`` line: each is
        already one ASCII JSON object (EventWriter escapes non-ASCII), so encoding
        them again would only cost. ``offset``: the file's byte offset after them."""
        head = b'{"kind":"events",' + (b'"offset":%d,' % offset if offset is not None else b"")
        self.out.write(head + b'"events":[' + b",".join(lines) + b"]}\n")

    def flush(self) -> None:
        self.out.flush()


class Watcher:
    def __init__(
        self,
        run_dir: Path,
        emit: Emitter,
        *,
        after_seq: int = 0,
        events_offset: int = 0,
        log_offset: int = 0,
        interval: float = 2.0,
        poll: float = 0.2,
        grace: float | None = None,
    ) -> None:
        self.run = RunDir(run_dir)
        self.emit = emit
        self.after_seq = after_seq
        self.interval = interval
        self.poll = min(poll, interval)
        # After a terminal status, how long to wait for the process to exit and
        # its last log lines to land before ending the stream.
        self.grace = min(interval, 5.0) if grace is None else grace
        # Without an offset the whole file is scanned so that the last status is known
        # even when the client already holds it; only seq > after_seq is sent. With one
        # (a reconnect), reading starts there: the client holds everything before it
        # and, since it reconnects, no terminal status (see _status_before).
        self.events_offset = events_offset
        self.cursor = EventCursor()
        self.skipped = 0  # bytes of events.jsonl not read: before the client's offset
        self.log = LogTail(self.run.train_log, log_offset)
        self.status: RunStatus | None = None

    def seek_events(self) -> None:
        """Start after the client's offset when the line before it is its last seq."""
        cursor = cursor_at(self.run.events, self.events_offset, self.after_seq)
        if cursor is not None:
            self.cursor, self.skipped = cursor, cursor.offset

    def _status_before(self) -> None:
        """The last status in the part skipped, when none came after it: asked only
        before calling a run crashed, the one decision a status the client already
        held (a caller that passed an offset past a terminal status) could change."""
        if not self.skipped or self.status is not None:
            return
        cursor = EventCursor()
        while cursor.offset < self.skipped:
            before = cursor.offset
            for _seq, line in read_new_raw(self.run.events, cursor, EVENTS_CHUNK):
                if b'"status"' in line:
                    event = json.loads(line)
                    if event.get("type") == EventType.STATUS:
                        with contextlib.suppress(ValueError):
                            self.status = RunStatus(event.get("status"))
            if cursor.offset == before:
                break
        self.skipped = 0

    def pump_events(self) -> None:
        # In pieces of EVENTS_CHUNK bytes, each flushed: the client decodes the first
        # while the next is read, instead of waiting for a whole long file.
        while True:
            before = self.cursor.offset
            batch = []
            for seq, line in read_new_raw(self.run.events, self.cursor, EVENTS_CHUNK):
                if b'"status"' in line:  # cheap filter; only status events are decoded
                    event = json.loads(line)
                    if event.get("type") == EventType.STATUS:
                        with contextlib.suppress(ValueError):
                            self.status = RunStatus(event.get("status"))
                if seq > self.after_seq:
                    batch.append(line.strip())
            if batch:
                self.emit.events(batch, self.cursor.offset)
            self.emit.flush()
            if self.cursor.offset == before:  # nothing new, or only half a line yet
                return

    def pump_log(self) -> None:
        for _ in range(LOG_PER_POLL // LOG_CHUNK):
            text = self.log.read(LOG_CHUNK)
            if text:
                self.emit("log", offset=self.log.offset, text=text)
            if self.log.last_read < LOG_CHUNK:
                return

    def terminal(self) -> bool:
        return self.status is not None and self.status.is_terminal()

    def run_forever(self) -> int:
        if not self.run.path.is_dir():
            self.emit("error", message=f"no run directory at {self.run.path}")
            self.emit.flush()
            return 2
        # Said before the first scan, which can take a while on a long run's
        # events.jsonl: the client counts silence from the moment it connects.
        self.emit("heartbeat", time=time.time())
        self.emit.flush()
        self.seek_events()
        sampler = Sampler(self.run)
        next_sample = 0.0
        terminal_since: float | None = None
        while True:
            self.pump_events()
            self.pump_log()
            now = time.monotonic()
            if self.terminal():
                terminal_since = terminal_since or now
                alive = run_alive(_read_manifest(self.run))
                if alive is not True or now - terminal_since >= self.grace:
                    self.pump_events()
                    self.pump_log()
                    if next_sample == 0.0:  # a run that ended before we came: one sample
                        self.emit("sys", **sampler.sample(_read_manifest(self.run)))
                    self.emit("end", status=str(self.status))
                    self.emit.flush()
                    return 0
            if now >= next_sample:
                manifest = _read_manifest(self.run)
                sample = sampler.sample(manifest)
                self.emit("sys", **sample)
                self.emit("heartbeat", time=time.time())
                next_sample = now + self.interval
                if sample["alive"] is False and not self.terminal():
                    # Read once more: a terminal status written just before exiting
                    # must win over a crash inferred from the exit.
                    self.pump_events()
                    self.pump_log()
                    self._status_before()
                    if not self.terminal():
                        self.emit("crashed", last_log=last_lines(self.run.train_log))
                        self.emit("end", status=str(RunStatus.CRASHED))
                        self.emit.flush()
                        return 0
                    continue
            self.emit.flush()
            time.sleep(self.poll)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m remote.watcher",
        description="Stream a run directory's events, log and system samples as JSON lines.",
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--after-seq", type=int, default=0, help="send events after this seq")
    parser.add_argument(
        "--events-offset",
        type=int,
        default=0,
        help="events.jsonl byte offset just after the line with --after-seq: read from there",
    )
    parser.add_argument("--log-offset", type=int, default=0, help="send train.log from this byte")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between file polls")
    args = parser.parse_args(argv)
    emit = Emitter(sys.stdout.buffer)
    watcher = Watcher(
        args.run_dir.expanduser(),
        emit,
        after_seq=args.after_seq,
        events_offset=args.events_offset,
        log_offset=args.log_offset,
        interval=args.interval,
        poll=args.poll,
    )
    try:
        return watcher.run_forever()
    except (BrokenPipeError, KeyboardInterrupt):
        # The client went away (closed channel or pipe): nothing left to tell anyone.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
