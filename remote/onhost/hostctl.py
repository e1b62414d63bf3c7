"""On-host run control: launch detached, stop, list. Stdlib only.

    python -m remote.hostctl launch --runs DIR --run-id ID [--cwd DIR] [--pythonpath P] -- ARGV...
    python -m remote.hostctl stop RUN_DIR [--grace 30]
    python -m remote.hostctl list RUNS_DIR
    python -m remote.hostctl evaluations RUN_DIR

Every subcommand prints one JSON object on stdout and exits 0 when it did
what was asked (2 for bad usage, 1 when it could not).

Why this runs on the host rather than as a sequence of shell commands sent by
the console: each step must survive the console's connection dropping half
way. ``launch`` takes a lock by creating ``RUNS/.launches/ID`` with
``os.mkdir`` (atomic on every POSIX file system), so a retry of the same launch
after a lost connection finds the lock and reports the process the first try
started instead of starting a second one. The child gets a new session,
/dev/null as stdin and a file as stdout and stderr, so nothing ties it to the
SSH channel: closing the channel, or killing the console, leaves it running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from remote.onhost.proc import pid_alive, run_alive
from trainers.events import RunStatus
from trainers.rundir import RunDir
from trainers.runlog import RunLog

LAUNCHES = ".launches"
# Environment variables a launched run never inherits: credentials stay with the caller.
SCRUBBED_PREFIXES = ("AWS_",)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- launch ---------------------------------------------------------------------------------


def launch(
    runs: Path, run_id: str, argv: list[str], cwd: Path | None, pythonpath: str | None
) -> dict[str, Any]:
    lock = runs / LAUNCHES / run_id
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock.mkdir()
    except FileExistsError:
        return _existing_launch(lock, run_id)
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + (
            os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else ""
        )
    env["PYTHONUNBUFFERED"] = "1"
    (lock / "argv.json").write_text(json.dumps(argv))
    with open(lock / "output.log", "ab") as out, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=devnull,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    tmp = lock / ".pid.tmp"
    tmp.write_text(str(proc.pid))
    os.replace(tmp, lock / "pid")
    return {"run_id": run_id, "pid": proc.pid, "launched": True, "output": str(lock / "output.log")}


def _existing_launch(lock: Path, run_id: str, wait: float = 10.0) -> dict[str, Any]:
    """The launch an earlier try made; the pid file may lag the lock by a moment."""
    deadline = time.monotonic() + wait
    while True:
        try:
            pid = int((lock / "pid").read_text())
            break
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                return {
                    "run_id": run_id,
                    "launched": False,
                    "error": f"{lock} exists without a pid: an earlier launch died half way; "
                    "remove that directory to launch again",
                }
            time.sleep(0.1)
    return {
        "run_id": run_id,
        "pid": pid,
        "launched": False,
        "alive": pid_alive(pid),
        "output": str(lock / "output.log"),
    }


# -- stop -----------------------------------------------------------------------------------


def run_pid(run_dir: Path) -> int | None:
    """The training process of a run: run.json's pid, else the launch record's."""
    manifest = _read_json(run_dir / "run.json") or {}
    if manifest.get("pid"):
        return int(manifest["pid"])
    with contextlib.suppress(OSError, ValueError):
        return int((run_dir.parent / LAUNCHES / run_dir.name / "pid").read_text())
    return None


def stop(run_dir: Path, grace: float) -> dict[str, Any]:
    """SIGTERM (the engine checkpoints and writes its final status), SIGKILL after grace."""
    pid = run_pid(run_dir)
    status = (_read_json(run_dir / "run.json") or {}).get("status")
    if not pid_alive(pid):
        return {"run": str(run_dir), "pid": pid, "was_running": False, "status": status}
    if run_dir.name not in _cmdline(pid):  # the pid was reused by something else
        return {"run": str(run_dir), "pid": pid, "was_running": False, "status": status}
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    signal_used = "TERM"
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        signal_used = "KILL"
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # its own session: workers go with it
        while pid_alive(pid) and time.monotonic() < deadline + 10:
            time.sleep(0.1)
    status = (_read_json(run_dir / "run.json") or {}).get("status")
    return {
        "run": str(run_dir),
        "pid": pid,
        "was_running": True,
        "signal": signal_used,
        "status": status,
        "last_ckpt": (run_dir / "checkpoints" / "last.pt").exists(),
    }


# -- list -----------------------------------------------------------------------------------


def describe_run(run_dir: Path) -> dict[str, Any] | None:
    manifest = _read_json(run_dir / "run.json")
    if manifest is None:
        return None
    status = manifest.get("status")
    pid = manifest.get("pid")
    try:
        terminal = status is not None and RunStatus(status).is_terminal()
    except ValueError:  # a status this version does not know: trust the run
        terminal = True
    if not terminal and run_alive(manifest) is False:
        status = RunStatus.CRASHED.value
    row: dict[str, Any] = {
        "id": run_dir.name,
        "model": manifest.get("model"),
        "status": status,
        "pid": pid,
        "started_at": manifest.get("started_at"),
        "ended_at": manifest.get("ended_at"),
        "epochs": (manifest.get("config") or {}).get("train", {}).get("epochs"),
        "epoch": None,
        "best": None,
        "monitor": None,
    }
    with contextlib.suppress(OSError, ValueError):
        log = RunLog.read(run_dir / "events.jsonl")
        row.update(epoch=log.epoch, best=log.best, monitor=log.monitor)
    return row


def list_runs(runs: Path) -> dict[str, Any]:
    rows = []
    if runs.is_dir():
        for child in sorted(runs.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                row = describe_run(child)
                if row is not None:
                    rows.append(row)
    return {"runs_dir": str(runs), "runs": rows}


def evaluations(run_dir: Path) -> dict[str, Any]:
    """The run's evaluations on other data (``python -m trainers evaluate``), each
    ``evaluations/<name>/evaluation.json`` whole, plus the run's own test metrics
    and floor from summary.json to read them against."""
    run = RunDir(run_dir)
    if not run.run_json.is_file():
        return {"error": f"no run directory at {run_dir}"}
    summary = _read_json(run.summary) or {}
    return {
        "run_dir": str(run_dir),
        "test": summary.get("test"),
        "majority_floor": summary.get("majority_floor"),
        "evaluations": [{"name": name, **data} for name, data in run.read_evaluations()],
    }


# -- entry point ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote.hostctl")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("launch")
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--cwd", type=Path, default=None)
    p.add_argument("--pythonpath", default=None)
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p = sub.add_parser("stop")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--grace", type=float, default=30.0)
    p = sub.add_parser("list")
    p.add_argument("runs", type=Path)
    p = sub.add_parser("evaluations")
    p.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)

    if args.command == "launch":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            parser.error("launch needs a command after --")
        result = launch(args.runs.expanduser(), args.run_id, command, args.cwd, args.pythonpath)
    elif args.command == "stop":
        result = stop(args.run_dir.expanduser(), args.grace)
    elif args.command == "evaluations":
        result = evaluations(args.run_dir.expanduser())
    else:
        result = list_runs(args.runs.expanduser())
    _emit(result)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
