"""On-host run control: launch detached, stop, list. Stdlib only.

    python -m remote.hostctl launch --runs DIR --run-id ID [--cwd DIR] [--pythonpath P]
        [--storage s3://B/P] [--endpoint-url U] [--region R] [--imds URL] [--poll S]
        [--push-every S] [--shutdown-at EPOCH] [--shutdown-lead S] [--grace S]
        [--notify-url URL] [--guard-python PY] [--run-dir DIR] [--slots N|auto] [--gpus K]
        -- ARGV...
    python -m remote.hostctl stop RUN_DIR [--grace 30]
    python -m remote.hostctl list RUNS_DIR
    python -m remote.hostctl run-queue RUNS_DIR
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

With ``--storage``, ``--imds``, ``--shutdown-at`` or ``--notify-url``, ``launch``
also starts the run's guard (:mod:`remote.onhost.guard`) right after the trainer,
detached the same way: it pushes the run directory to storage, stops the trainer on
a spot interruption, a scheduled maintenance or the profile's shutdown timer, and
tells the webhook how the run ended. Its pid
is ``RUNS/.launches/ID/guard.pid``, its output ``guard.out`` beside it.

With ``--slots``, ``launch`` goes through the host's run queue
(:mod:`remote.onhost.queue`): the run starts at once when ``--gpus`` slots are free
and nobody waits ahead of it, else it waits (the answer says ``queued`` and its
``place``) and a detached ``run-queue`` process starts it later, through the same
``launch``. ``stop`` on a waiting run takes it out of the queue.
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
from remote.onhost.queue import QUEUED, Entry, RunQueue, cuda_devices, gpu_count, queued_rows
from remote.onhost.webhook import NOTIFY_URL_ENV
from trainers.events import RunStatus
from trainers.rundir import EXPERIMENT_JSON, RunDir
from trainers.runlog import read_progress

LAUNCHES = ".launches"
EXPERIMENT_SEP = ":"  # remote.layout's: an experiment's run is <exp-id>:<run-dir>
GUARD_MODULE = "remote.onhost.guard"
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
    runs: Path,
    run_id: str,
    argv: list[str],
    cwd: Path | None,
    pythonpath: str | None,
    guard_args: list[str] | None = None,
    guard_python: str | None = None,
    run_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
    notify_url: str | None = None,
) -> dict[str, Any]:
    """Start ``argv`` detached as launch ``run_id`` (once per id), then its guard when
    ``guard_args`` (the guard's options after RUN_DIR and --pid) are given. The guard
    watches ``run_dir``, by default ``runs/run_id``: a resume's launch id
    (``<run-id>.resume-<t>``) is not its run's directory name. ``extra_env``: set
    for the run (the queue's CUDA_VISIBLE_DEVICES). ``notify_url`` reaches the guard
    alone, in its environment: not in guard_argv.json, ps or the run's env."""
    lock = runs / LAUNCHES / run_id
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock.mkdir()
    except FileExistsError:
        return _existing_launch(lock, run_id)
    env = {**_run_env(pythonpath), **(extra_env or {})}
    env.pop(NOTIFY_URL_ENV, None)  # a webhook URL is a credential: the run never needs it
    (lock / "argv.json").write_text(json.dumps(argv))
    pid = _spawn(argv, cwd, env, lock / "output.log")
    _write_pid(lock / "pid", pid)
    answer: dict[str, Any] = {
        "run_id": run_id,
        "pid": pid,
        "launched": True,
        "output": str(lock / "output.log"),
    }
    if guard_args is not None:
        try:
            answer.update(
                _launch_guard(
                    lock,
                    run_dir or runs / run_id,
                    pid,
                    argv,
                    cwd,
                    {**env, NOTIFY_URL_ENV: notify_url} if notify_url else env,
                    guard_args,
                    guard_python,
                )
            )
        except OSError as exc:  # the run trains; say loudly that nothing guards it
            answer["guard_error"] = (
                f"the run started but its guard did not: {exc}; nothing pushes it to storage "
                "or stops it on a notice (stop it, fix the guard's python, launch again)"
            )
    return answer


def _run_env(pythonpath: str | None) -> dict[str, str]:
    """This process's environment less AWS_*, with the shipped code first on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + (
            os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else ""
        )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(argv: list[str], cwd: Path | None, env: dict[str, str], output: Path) -> int:
    """A detached process (own session, no terminal, output to a file); its pid."""
    with open(output, "ab") as out, open(os.devnull, "rb") as devnull:
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
    return proc.pid


def _write_pid(path: Path, pid: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(str(pid))
    os.replace(tmp, path)


def _launch_guard(
    lock: Path,
    run_dir: Path,
    pid: int,
    argv: list[str],
    cwd: Path | None,
    env: dict[str, str],
    guard_args: list[str],
    guard_python: str | None,
) -> dict[str, Any]:
    """The run's guard, detached like the run. Its Python: ``guard_python``, else the
    run's own when the run is ``PY -m ...`` (the environment that has boto3 for
    --storage), else this one. Its path: the shipped code first, as for the run, then
    the tree this hostctl runs from (which has remote.onhost.guard)."""
    python = guard_python or (argv[0] if argv[1:2] == ["-m"] else sys.executable)
    here = str(Path(__file__).resolve().parents[2])  # the tree that holds remote/
    env = dict(env)
    env["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + here if env.get("PYTHONPATH") else here
    guard_argv = [python, "-m", GUARD_MODULE, str(run_dir), "--pid", str(pid), *guard_args]
    (lock / "guard_argv.json").write_text(json.dumps(guard_argv))
    guard_pid = _spawn(guard_argv, cwd, env, lock / "guard.out")
    _write_pid(lock / "guard.pid", guard_pid)
    return {"guard_pid": guard_pid, "guard_output": str(lock / "guard.out")}


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
    answer: dict[str, Any] = {
        "run_id": run_id,
        "pid": pid,
        "launched": False,
        "alive": pid_alive(pid),
        "output": str(lock / "output.log"),
    }
    with contextlib.suppress(OSError, ValueError):
        answer["guard_pid"] = int((lock / "guard.pid").read_text())
    return answer


# -- the queue ------------------------------------------------------------------------------


def start_entry(runs: Path, entry: Entry, slot_ids: list[int]) -> dict[str, Any]:
    """Start a queued run through :func:`launch` on the GPUs of ``slot_ids``."""
    answer = launch(
        runs,
        entry.run_id,
        entry.argv,
        Path(entry.cwd) if entry.cwd else None,
        entry.pythonpath,
        guard_args=entry.guard_args,
        guard_python=entry.guard_python,
        run_dir=Path(entry.run_dir) if entry.run_dir else None,
        extra_env={"CUDA_VISIBLE_DEVICES": cuda_devices(slot_ids)},
        notify_url=entry.notify_url,
    )
    if not answer.get("launched", True) and "error" not in answer:
        # An earlier launch of this id (a retry after a lost connection) holds the lock.
        answer["error"] = f"{runs / LAUNCHES / entry.run_id} exists: launched before"
    answer["slot_ids"] = slot_ids
    return answer


def launch_queued(
    runs: Path, run_id: str, argv: list[str], slots: int, wants: int, **launch_args: Any
) -> dict[str, Any]:
    """``launch`` through the host's queue of ``slots`` GPU slots: start now when
    ``wants`` slots are free and nobody waits, else wait in line behind the others."""
    if (runs / LAUNCHES / run_id).exists():  # a retry of a launch that started it
        return _existing_launch(runs / LAUNCHES / run_id, run_id)
    if wants > slots:
        return {
            "run_id": run_id,
            "error": f"the run wants {wants} GPUs and this host has {slots} slot"
            f"{'s' if slots != 1 else ''}: "
            f"deploy it with --gpus {slots} or less, or raise slots in the host's config",
        }
    queue = RunQueue(runs)
    with queue.locked():
        waiting = queue.find(run_id)
        if waiting is not None and waiting.state == QUEUED:  # a retry of a queued launch
            return {"run_id": run_id, "launched": False, "queued": True,
                    "place": queue.place(run_id)}  # fmt: skip
        queue.set_slots(slots)
        args = {k: (str(v) if isinstance(v, Path) else v) for k, v in launch_args.items()}
        queue.add(Entry(run_id=run_id, argv=argv, wants=wants, **args))
        started = queue.step(lambda entry, ids: start_entry(runs, entry, ids))
        place = queue.place(run_id)
    if run_id in started:
        return {**started[run_id], "queued": False}
    if place is None:  # gone meanwhile: started and ended, or stopped
        return {"run_id": run_id, "launched": False, "queued": False}
    if not queue.runner_alive():
        here = str(Path(__file__).resolve().parents[2])  # the tree that holds remote/
        env = dict(os.environ)
        env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
        runner = [sys.executable, "-m", "remote.onhost.hostctl", "run-queue", str(runs)]
        _spawn(runner, None, env, queue.dir / "runner.out")
    return {"run_id": run_id, "launched": True, "queued": True, "place": place, "pid": None}


def run_queue(runs: Path, poll: float = 0.5) -> dict[str, Any]:
    """The queue's runner (detached by ``launch_queued``): until nothing waits."""
    queue = RunQueue(runs)
    queue.run(lambda entry, ids: start_entry(runs, entry, ids), poll=poll)
    return {"runs_dir": str(runs), "queued": len(queue.queued())}


def resolve_slots(text: str | None) -> int | None:
    """``--slots``: a count, ``auto`` (the GPUs nvidia-smi lists, none: no queue) or
    absent (no queue: a resume, a node of a multi-node job)."""
    if text is None:
        return None
    if text == "auto":
        return gpu_count() or None
    return int(text)


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
    """SIGTERM (the engine checkpoints and writes its final status), SIGKILL after grace;
    a run still waiting in the host's queue is taken out and never starts."""
    if RunQueue(run_dir.parent).remove_queued(run_dir.name):
        return {"run": str(run_dir), "pid": None, "was_running": False, "was_queued": True,
                "status": "removed from the queue"}  # fmt: skip
    return stop_process(run_dir, run_pid(run_dir), grace)


def stop_process(run_dir: Path, pid: int | None, grace: float) -> dict[str, Any]:
    """Stop the run's process ``pid`` as ``stop`` does and wait for it to be gone: the
    one way a run is stopped, whether a user asks or the guard acts on a notice."""
    status = (_read_json(run_dir / "run.json") or {}).get("status")
    if not pid_alive(pid):
        return {"run": str(run_dir), "pid": pid, "was_running": False, "status": status}
    # The pid was reused by something else unless its command names the run (or, for a
    # run of an experiment, the experiment: its pid is the sweep's, which forwards the
    # stop to the run in progress and then starts no more).
    names = {run_dir.name}
    if (run_dir.parent / EXPERIMENT_JSON).is_file():
        names.add(run_dir.parent.name)
    if not any(name in _cmdline(pid) for name in names):
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
    """One row of ``list``: run.json's fields and the run's progress (epoch in
    progress, best so far and its epoch, the monitored metric); None without run.json."""
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
        "best_epoch": None,
        "monitor": None,
        # The instances a managed run ran on (remote.recovery): the runs table's cost.
        "instances": manifest.get("instances"),
        "recoveries": manifest.get("recoveries"),
    }
    # The engine's progress record in run.json, else the events file's tail: never the
    # whole file, so a row costs the same whatever the run's length.
    progress = read_progress(run_dir, manifest)
    for key in ("epoch", "best", "best_epoch", "monitor"):
        row[key] = progress.get(key)
    if row["epochs"] is None:
        row["epochs"] = progress.get("epochs")
    return row


def list_runs(runs: Path) -> dict[str, Any]:
    rows = []
    if runs.is_dir():
        for child in sorted(runs.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                row = describe_run(child)
                if row is not None:
                    rows.append(row)
                elif (child / EXPERIMENT_JSON).is_file():
                    rows.extend(experiment_rows(child))
    rows += queued_rows(runs)
    return {"runs_dir": str(runs), "runs": rows}


def experiment_rows(exp_dir: Path) -> list[dict[str, Any]]:
    """An experiment's runs as rows of ``list``, in its order: ids ``<exp-id>:<run-dir>``
    (remote.layout's naming), so they sort together; a run not started yet is
    ``pending``. The experiment's own status (its sweep process) is not a row."""
    experiment = _read_json(exp_dir / EXPERIMENT_JSON) or {}
    planned = [r for r in experiment.get("runs") or [] if isinstance(r, dict) and r.get("dir")]
    rows = []
    for entry in planned:
        row = describe_run(exp_dir / str(entry["dir"]))
        if row is None:
            row = {"model": experiment.get("model"), "status": "pending", "pid": None,
                   "started_at": None, "ended_at": None, "epochs": None, "epoch": None,
                   "best": None, "best_epoch": None, "monitor": None}  # fmt: skip
        row["id"] = f"{exp_dir.name}{EXPERIMENT_SEP}{entry['dir']}"
        row["experiment"] = exp_dir.name
        rows.append(row)
    return rows


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

# launch's options handed on to the guard as they are (its own parser checks them).
GUARD_OPTIONS = (
    "storage",
    "endpoint_url",
    "region",
    "imds",
    "poll",
    "push_every",
    "shutdown_at",
    "shutdown_lead",
    "grace",
)


def guard_args(args: argparse.Namespace) -> list[str] | None:
    """The guard's options from launch's, or None when nothing asks for a guard
    (--notify-url asks for one, but travels in its environment, not in these)."""
    wanted = (args.storage, args.imds, args.shutdown_at, getattr(args, "notify_url", None))
    if all(value is None for value in wanted):
        return None
    out: list[str] = []
    for name in GUARD_OPTIONS:
        value = getattr(args, name)
        if value is not None:
            out += ["--" + name.replace("_", "-"), str(value)]
    return out


def _looks_like_s3(text: str) -> bool:
    """The guard parses the URL fully; this refuses what can only be a mistake before
    anything starts (a run without the storage it was meant to have)."""
    return text.startswith("s3://") and bool(text[5:].split("/", 1)[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote.hostctl")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("launch")
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--cwd", type=Path, default=None)
    p.add_argument("--pythonpath", default=None)
    guard = p.add_argument_group(
        "guard",
        "remote.onhost.guard beside the run (with --storage, --imds, --shutdown-at or "
        "--notify-url)",
    )
    guard.add_argument("--storage", default=None, help="s3://bucket/prefix to push the run to")
    guard.add_argument("--endpoint-url", default=None, help="S3 endpoint (a test server)")
    guard.add_argument("--region", default=None, help="the bucket's region")
    guard.add_argument("--imds", default=None, help="poll this instance metadata service")
    guard.add_argument("--poll", type=float, default=None, help="seconds between IMDS polls")
    guard.add_argument("--push-every", type=float, default=None, help="seconds between pushes")
    guard.add_argument("--shutdown-at", type=float, default=None, help="the instance's shutdown")
    guard.add_argument("--shutdown-lead", type=float, default=None, help="stop this much before")
    guard.add_argument("--grace", type=float, default=None, help="SIGKILL this long after TERM")
    guard.add_argument(
        "--notify-url",
        default=None,
        help="webhook the guard POSTs the run's end to (Slack's format)",
    )
    guard.add_argument("--guard-python", default=None, help="the guard's interpreter")
    guard.add_argument(
        "--run-dir", type=Path, default=None, help="the run the guard watches (RUNS/RUN_ID)"
    )
    queue = p.add_argument_group("queue", "the host's run queue (remote.onhost.queue)")
    queue.add_argument(
        "--slots", default=None, help="the host's GPU slots, or auto (its GPUs); absent: no queue"
    )
    queue.add_argument("--gpus", type=int, default=1, help="slots this run takes (>= 1)")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p = sub.add_parser("run-queue")
    p.add_argument("runs", type=Path)
    p.add_argument("--poll", type=float, default=0.5)
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
        if args.storage is not None and not _looks_like_s3(args.storage):
            parser.error(f"--storage {args.storage!r}: expected s3://bucket/prefix")
        if args.notify_url is not None and not args.notify_url.startswith(("http://", "https://")):
            parser.error("--notify-url: expected an http(s):// URL")  # not echoed: a secret
        try:
            slots = resolve_slots(args.slots)
        except ValueError:
            parser.error(f"--slots {args.slots!r}: expected a count >= 1 or auto")
        if (slots is not None and slots < 1) or args.gpus < 1:
            parser.error(f"--slots {args.slots} --gpus {args.gpus}: both >= 1")
        options: dict[str, Any] = {
            "guard_args": guard_args(args),
            "run_dir": args.run_dir.expanduser() if args.run_dir else None,
            "guard_python": args.guard_python,
            "notify_url": args.notify_url,
        }
        if slots is None:
            result = launch(
                args.runs.expanduser(), args.run_id, command, args.cwd, args.pythonpath, **options
            )
        else:
            result = launch_queued(
                args.runs.expanduser(), args.run_id, command, slots, args.gpus,
                cwd=args.cwd, pythonpath=args.pythonpath, **options,
            )  # fmt: skip
    elif args.command == "run-queue":
        result = run_queue(args.runs.expanduser(), args.poll)
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
