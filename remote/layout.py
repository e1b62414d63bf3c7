"""Where things live on a host, and how a command finds the shipped code there.

Under a host's workdir (``~/emoconsole`` by default over SSH)::

    code/<digest>/     one directory per shipped source tree, never modified
    code/current       symlink to the last one shipped (what the watcher imports)
    venv/              the uv environment, when the host has no interpreter of its own
    data/<name>/       data sets uploaded by deploy
    runs/<run-id>/     run directories; runs/.launches/<run-id>/ the launch records
    runs/<exp-id>/     an experiment (``python -m trainers sweep``): experiment.json and
                       its run directories, named ``<exp-id>:<run-dir>`` by every command

On this machine (the ``local`` host without a workdir) nothing is shipped:
runs start from this checkout with this interpreter, under ``./runs``.

Every module that builds a path or a command for a host asks this one, so the
layout, the quoting of ``~`` and the ``PYTHONPATH`` recipe are written once.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from remote.errors import CommandError, RemoteError
from remote.host import Command, Host
from remote.local import LocalHost

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = "~/emoconsole"
RUNS_SUBDIR = "runs"
# An experiment's run is named EXPERIMENT_ID:RUN_DIR (runs/<exp-id>/<run-dir> on the host):
# not "/", which already means a path given as is.
EXPERIMENT_SEP = ":"


def run_subpath(run: str) -> str:
    """A run id's directory under runs/: ``exp:run`` is ``exp/run``."""
    return run.replace(EXPERIMENT_SEP, "/", 1)


def quote_path(path: str) -> str:
    """Quote a host path for its shell, leaving a leading ~ to expand there
    (which is what makes it the remote user's home, not ours)."""
    if path == "~":
        return "~"
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(path)


def is_this_checkout(host: Host) -> bool:
    """The local host without a workdir runs from this source tree: nothing to ship."""
    return isinstance(host, LocalHost) and not host.workdir


def is_run_path(run: str) -> bool:
    """A run given as a path on the host rather than as a run id."""
    return "/" in run or run.startswith(("~", "."))


@dataclass(frozen=True)
class HostLayout:
    root: str  # absolute path on the host

    def code(self, digest: str) -> str:
        return f"{self.root}/code/{digest}"

    @property
    def current(self) -> str:
        return f"{self.root}/code/current"

    @property
    def runs(self) -> str:
        return f"{self.root}/{RUNS_SUBDIR}"

    @property
    def launches(self) -> str:
        return f"{self.runs}/.launches"

    @property
    def venv(self) -> str:
        return f"{self.root}/venv"

    def data(self, name: str) -> str:
        return f"{self.root}/data/{name}"

    def run_dir(self, run: str) -> str:
        """A run id's directory; a path is taken as given."""
        return run if is_run_path(run) else f"{self.runs}/{run_subpath(run)}"


def resolve_layout(host: Host) -> HostLayout:
    """The host's workdir as an absolute path, created if missing (one round trip)."""
    if is_this_checkout(host):
        return HostLayout(str(Path.cwd()))
    workdir = host.workdir or DEFAULT_WORKDIR
    cmd = f"mkdir -p {quote_path(workdir)} && cd {quote_path(workdir)} && pwd"
    result = host.run(cmd, timeout=600)
    if not result.ok:
        raise CommandError(cmd, result.exit_code, result.tail())
    return HostLayout(result.stdout.strip().splitlines()[-1])


def read_host_json(host: Host, path: str) -> object | None:
    """A JSON file on the host, or None when it is missing or not JSON."""
    result = host.run(["cat", path], timeout=60)
    if not result.ok:
        return None
    try:
        return json.loads(result.stdout)
    except ValueError:
        return None


def launched_python(host: Host, layout: HostLayout, run_id: str) -> str:
    """The interpreter a deployed run was started with (its launch record's argv: it
    has torch, which the host's configured python may not), else the host's own."""
    argv = read_host_json(host, f"{layout.launches}/{run_id}/argv.json")
    if isinstance(argv, list) and argv and isinstance(argv[0], str):
        return argv[0]
    return host.python


def remote_run_dir(host: Host, run: str) -> str:
    """The run directory on ``host`` for ``run`` without asking the host: a path
    as given, ``<workdir>/runs/<id>`` (``~`` left to the host's shell), or
    ``./runs/<id>`` for this checkout."""
    run = run.strip()
    if not run:
        raise RemoteError("no run given: pass a run id or a run directory path")
    if is_run_path(run):
        return run
    if is_this_checkout(host):
        return str(Path.cwd() / RUNS_SUBDIR / run_subpath(run))
    base = (host.workdir or DEFAULT_WORKDIR).rstrip("/") or "/"
    return f"{base}/{RUNS_SUBDIR}/{run_subpath(run)}"


def python_module(
    host: Host,
    module: str,
    args: list[str],
    *,
    code_dir: str | None = None,
    python: str | None = None,
) -> Command:
    """``python -m MODULE ARGS`` on the host, importing the shipped code.

    With ``code_dir`` (a deploy that just shipped it) that tree is on
    PYTHONPATH. Without, the command runs in the workdir, which holds either a
    checkout (``-m`` finds it in the cwd) or deployed code under
    ``code/current``; ``exec``, so that the program is what a stream reaches
    and what a closed channel hangs up. In this checkout, the argv as is.
    """
    argv = [python or host.python, "-m", module, *args]
    if code_dir is not None:
        return ["env", f"PYTHONPATH={code_dir}", *argv]
    if is_this_checkout(host):
        return argv
    workdir = quote_path(host.workdir or DEFAULT_WORKDIR)
    return (
        f"cd {workdir} && PYTHONPATH=code/current${{PYTHONPATH:+:$PYTHONPATH}} "
        f"exec {shlex.join(argv)}"
    )
