"""Resume a stopped, crashed or failed run on its host, detached, like a deploy.

``python -m trainers resume RUN_DIR`` continues from ``checkpoints/last.pt``
(from scratch when the run stopped before its first checkpoint). This module
starts that command through the same on-host launcher as
:func:`remote.deploy.deploy` (:mod:`remote.onhost.hostctl`), so the resumed process
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

import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from remote.deploy import DeployError, hostctl, list_runs
from remote.host import Host
from remote.layout import (
    PROJECT_ROOT,
    HostLayout,
    is_this_checkout,
    launched_python,
    read_host_json,
    resolve_layout,
)

RESUMABLE = ("stopped", "crashed", "failed", "preempted")


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
    output: str  # the process's stdout and stderr, on the host


def _origin(
    host: Host, layout: HostLayout, run_id: str, manifest: dict[str, Any]
) -> tuple[str, str]:
    """(python, code dir) the run was started with, if the host still has them."""
    if is_this_checkout(host):
        return sys.executable, str(PROJECT_ROOT)
    python, code_dir = launched_python(host, layout, run_id), layout.current
    main = (manifest.get("argv") or [""])[0]
    if isinstance(main, str) and main.endswith("/trainers/__main__.py"):
        candidate = str(PurePosixPath(main).parent.parent)
        if host.run(["test", "-f", f"{candidate}/.complete"], timeout=60).ok:
            code_dir = candidate
    return python, code_dir


def resume_run(
    host: Host, run_id: str, *, timeout: float = 180.0, guard: list[str] | None = None
) -> Resumed:
    """Start ``trainers resume`` for ``run_id`` (an id under the host's runs/) and
    return once the new process has registered the resume (its entry in run.json's
    ``resumes``: the run directory and its config checked out). It takes the run
    over (its pid in run.json, its events) only after building the model and the
    data, which can take minutes on a cold feature cache: :func:`wait_taken_over`."""
    layout = resolve_layout(host)
    row = next((r for r in list_runs(host) if r.get("id") == run_id), None)
    if row is None:
        raise ResumeError(f"{host.name}: no run {run_id} under {layout.runs}")
    if row.get("status") not in RESUMABLE:
        raise ResumeError(
            f"{host.name}: {run_id} is {row.get('status')}; only a stopped, crashed, "
            "failed or preempted run can be resumed"
        )
    run_dir = layout.run_dir(run_id)
    manifest = read_host_json(host, f"{run_dir}/run.json") or {}
    python, code_dir = _origin(host, layout, run_id, manifest)
    launch_id = f"{run_id}.resume-{int(time.time())}"
    argv = [python, "-m", "trainers", "resume", run_dir]
    answer = hostctl(
        host,
        code_dir,
        ["launch", "--runs", layout.runs, "--run-id", launch_id, "--cwd", layout.root,
         "--pythonpath", code_dir, *_guarding(guard, run_dir), "--", *argv],
    )  # fmt: skip
    resumed = Resumed(run_id, host.name, run_dir, int(answer.get("pid") or 0), python, code_dir,
                      f"{layout.launches}/{launch_id}/output.log")  # fmt: skip
    _wait(host, resumed, timeout, _registered, "registered the resume")
    return resumed


def _guarding(guard: list[str] | None, run_dir: str) -> list[str]:
    """The guard's options, watching the run's own directory (the launch id is not it)."""
    return [*guard, "--run-dir", run_dir] if guard else []


def wait_taken_over(host: Host, resumed: Resumed, timeout: float = 1800.0) -> None:
    """Until the resumed process names itself in run.json (``pid``): from then on the
    watcher follows it; before, it would take the old, dead pid for a crash."""
    _wait(host, resumed, timeout, lambda m, pid: m.get("pid") == pid, "took the run over")


def _registered(manifest: dict[str, Any], pid: int) -> bool:
    entries = manifest.get("resumes") or []
    return bool(entries) and isinstance(entries[-1], dict) and entries[-1].get("pid") == pid


def _wait(
    host: Host,
    resumed: Resumed,
    timeout: float,
    done: Callable[[dict[str, Any], int], bool],
    what: str,
) -> None:
    """Poll run.json until ``done``; a process that died first is reported with its
    output (a checkpoint that no longer loads, a missing data set)."""
    deadline = time.monotonic() + timeout
    alive = f"kill -0 {resumed.pid} 2>/dev/null && echo alive || echo dead"
    while True:
        manifest = read_host_json(host, f"{resumed.run_dir}/run.json") or {}
        if done(manifest, resumed.pid):
            return
        state = host.run(alive, timeout=60).stdout.strip()
        if state == "dead" or time.monotonic() > deadline:
            out = host.run(["tail", "-n", "20", resumed.output], timeout=60).stdout.strip()
            why = "exited" if state == "dead" else f"had not {what} after {timeout:.0f} s"
            raise ResumeError(
                f"{host.name}: resume of {resumed.run_id} {why}; its output "
                f"({shlex.quote(resumed.output)}):\n{out or '(none)'}"
            )
        time.sleep(0.3)
