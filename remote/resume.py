"""Resume a stopped, crashed or failed run on its host, detached, like a deploy.

``python -m trainers resume RUN_DIR`` continues from ``checkpoints/last.pt``
(from scratch when the run stopped before its first checkpoint). This module
starts that command through the same on-host launcher as
:func:`remote.deploy.deploy` (:mod:`remote.hostctl`), so the resumed process
also gets its own session and survives the console going away.

Which interpreter and code: the ones the run was started with, when the host
still has them. The launch record (``runs/.launches/<id>/argv.json``) names
the interpreter, and the run's manifest ``argv[0]`` is
``<code dir>/trainers/__main__.py`` (``python -m`` puts the module's path
there). A run this module cannot trace back falls back to ``code/current``
and the host's interpreter.

Each resume is its own launch record, ``<run-id>.resume-<unix time>``: the
launch lock is per record, so a retried resume is idempotent only within the
same second, and a second resume of a run that is already running is refused
before anything starts.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from remote.deploy import (
    PROJECT_ROOT,
    DeployError,
    HostLayout,
    hostctl,
    is_this_checkout,
    list_runs,
    resolve_layout,
)
from remote.host import Host

RESUMABLE = ("stopped", "crashed", "failed")


class ResumeError(DeployError):
    """The run cannot be resumed: unknown, still running, or its process died at once."""


@dataclass(frozen=True)
class Resumed:
    run_id: str
    host: str
    run_dir: str
    pid: int
    python: str
    code_dir: str


def _read_json(host: Host, path: str) -> Any:
    result = host.run(["cat", path], timeout=60)
    if not result.ok:
        return None
    try:
        return json.loads(result.stdout)
    except ValueError:
        return None


def _origin(
    host: Host, layout: HostLayout, run_id: str, manifest: dict[str, Any]
) -> tuple[str, str]:
    """(python, code dir) the run was started with, if the host still has them."""
    if is_this_checkout(host):
        return sys.executable, str(PROJECT_ROOT)
    python, code_dir = host.python, layout.current
    argv = _read_json(host, f"{layout.runs}/.launches/{run_id}/argv.json")
    if isinstance(argv, list) and argv and isinstance(argv[0], str):
        python = argv[0]
    main = (manifest.get("argv") or [""])[0]
    if isinstance(main, str) and main.endswith("/trainers/__main__.py"):
        candidate = str(PurePosixPath(main).parent.parent)
        if host.run(["test", "-f", f"{candidate}/.complete"], timeout=60).ok:
            code_dir = candidate
    return python, code_dir


def resume_run(host: Host, run_id: str, *, started_timeout: float = 180.0) -> Resumed:
    """Start ``trainers resume`` for ``run_id`` (an id under the host's runs/) and
    return once the new process has taken the run over (its pid in run.json)."""
    layout = resolve_layout(host)
    row = next((r for r in list_runs(host) if r.get("id") == run_id), None)
    if row is None:
        raise ResumeError(f"{host.name}: no run {run_id} under {layout.runs}")
    if row.get("status") not in RESUMABLE:
        raise ResumeError(
            f"{host.name}: {run_id} is {row.get('status')}; only a stopped, crashed or "
            "failed run can be resumed"
        )
    run_dir = layout.run_dir(run_id)
    manifest = _read_json(host, f"{run_dir}/run.json") or {}
    python, code_dir = _origin(host, layout, run_id, manifest)
    old_pid = manifest.get("pid")
    launch_id = f"{run_id}.resume-{int(time.time())}"
    argv = [python, "-m", "trainers", "resume", run_dir]
    answer = hostctl(
        host,
        code_dir,
        ["launch", "--runs", layout.runs, "--run-id", launch_id, "--cwd", layout.root,
         "--pythonpath", code_dir, "--", *argv],
    )  # fmt: skip
    pid = int(answer.get("pid") or 0)
    _wait_taken_over(host, layout, run_dir, launch_id, pid, old_pid, started_timeout)
    return Resumed(run_id, host.name, run_dir, pid, python, code_dir)


def _wait_taken_over(
    host: Host,
    layout: HostLayout,
    run_dir: str,
    launch_id: str,
    pid: int,
    old_pid: Any,
    timeout: float,
) -> None:
    """Until run.json names the new process; a process that died first is reported
    with its output (a checkpoint that no longer loads, a missing data set)."""
    deadline = time.monotonic() + timeout
    alive = f"kill -0 {pid} 2>/dev/null && echo alive || echo dead"
    while True:
        manifest = _read_json(host, f"{run_dir}/run.json") or {}
        if manifest.get("pid") == pid and pid != old_pid:
            return
        state = host.run(alive, timeout=60).stdout.strip()
        if state == "dead" or time.monotonic() > deadline:
            log = f"{layout.runs}/.launches/{launch_id}/output.log"
            out = host.run(["tail", "-n", "20", log], timeout=60).stdout.strip()
            why = "exited" if state == "dead" else f"did not take over within {timeout:.0f} s"
            raise ResumeError(
                f"{host.name}: resume of {PurePosixPath(run_dir).name} {why}; its output "
                f"({shlex.quote(log)}):\n{out or '(none)'}"
            )
        time.sleep(0.3)
