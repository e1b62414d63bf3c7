"""``emoconsole deploy --sweep FILE``: an experiment (``python -m trainers sweep``) sent to a host.

The same steps as a run's deploy (:func:`remote.deploy.prepare_host`: code, data,
Python), then the sweep file is copied to ``<workdir>/sweeps/<exp-id>.toml`` and
checked there with ``--dry-run`` (every run's config built on the host, whose
trainers and data are the ones that count): a bad key stops the deploy with exit 2
and nothing started. Then the sweep process is launched detached by ``hostctl
launch`` as launch ``<exp-id>``, with the guard when the host asks for one, so
``emoconsole stop <exp-id>`` SIGTERMs it (it forwards the stop to the run in
progress and starts no more) and a webhook hears of the experiment's end.

The sweep process goes through the host's run queue (:mod:`remote.onhost.queue`)
as a run does, taking one slot: its runs train one at a time, each one process
on one GPU. When the slots are taken it waits in line (``runs`` lists it as
``<exp-id>``, status ``queued``, with its place) and the deploy returns at once.

The experiment's runs are ``runs/<exp-id>/<run-dir>/`` on the host; ``hostctl list``
names them ``<exp-id>:<run-dir>`` (:data:`remote.layout.EXPERIMENT_SEP`), and the
ledger's record of the experiment lets ``monitor``, ``download`` and ``stop`` find
them without ``--host``.
"""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from remote import ledger
from remote.deploy import (
    DeployError,
    Progress,
    RequestError,
    guard_for,
    hostctl,
    prepare_host,
    wait_for_file,
)
from remote.host import Host
from remote.layout import EXPERIMENT_SEP, HostLayout, python_module
from trainers.rundir import EXPERIMENT_JSON


@dataclass
class ExperimentLaunch:
    exp_id: str
    host: str
    exp_dir: str  # on the host
    pid: int | None
    launched: bool  # False: an earlier try of the same launch had started it
    sweep_file: str  # the copy on the host
    runs: list[str] = field(default_factory=list)  # the run ids, <exp-id>:<run-dir>
    argv: list[str] = field(default_factory=list)
    guard_error: str | None = None
    # Waiting in the host's run queue for a slot: no pid yet; ``place`` 1 starts next.
    queued: bool = False
    place: int | None = None


def read_model(sweep_file: Path) -> str | None:
    """The sweep file's ``model`` (for the experiment's id and the ledger); the file is
    checked whole on the host. A missing or unreadable file is a request error."""
    try:
        with open(sweep_file, "rb") as fh:
            tree = tomllib.load(fh)
    except OSError as exc:
        raise RequestError(f"--sweep {sweep_file}: {exc.strerror}", field="sweep") from None
    except tomllib.TOMLDecodeError as exc:
        raise RequestError(f"--sweep {sweep_file}: not valid TOML: {exc}", field="sweep") from None
    model = tree.get("model")
    return model if isinstance(model, str) else None


def _sweep_args(file: str, data: str | None, layout: HostLayout, exp_id: str,
                overrides: list[str]) -> list[str]:  # fmt: skip
    args = ["sweep", "--file", file, "--out", layout.runs, "--id", exp_id]
    if data:
        args += ["--data", data]
    for item in overrides:
        args += ["--set", item]
    return args


def check_sweep(host: Host, python: str, code_dir: str, args: list[str], local: Path) -> list[str]:
    """``sweep --dry-run`` on the host; the planned run directories. Exit 2 (a bad key,
    a bad value, a missing data set) is the request's fault, named as the CLI names it."""
    argv = python_module(host, "trainers", [*args, "--dry-run"], code_dir=code_dir, python=python)
    result = host.run(argv, timeout=300)
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        raise DeployError(f"{local}: {lines[-1] if lines else result.tail()}", field="sweep")
    if not result.ok:
        raise DeployError(
            f"{host.name}: {python} cannot run the trainers:\n{result.tail(8)}\n"
            "Name an interpreter with the training stack (python = ... in the host's "
            "config), or deploy with --env uv"
        )
    # "  1/8 c00_lr=0.001_s42: {...} seed 42": the listing's run directories.
    runs = []
    for line in result.stdout.splitlines():
        head, sep, _rest = line.strip().partition(": ")
        number, _, name = head.partition(" ")
        if sep and "/" in number and number.replace("/", "").isdigit() and name:
            runs.append(name)
    return runs


def deploy_sweep(
    host: Host,
    sweep_file: Path,
    *,
    data: str | None = None,
    upload: Path | None = None,
    overrides: list[str] | None = None,
    exp_id: str | None = None,
    env: str = "auto",
    progress: Progress | None = None,
    started_timeout: float = 180.0,
) -> ExperimentLaunch:
    """Ship, prepare, copy and check the sweep file, then start the sweep detached.

    ``data`` (a path on the host) or ``upload`` (a local directory copied there)
    replaces the file's ``data``; without either the file's applies, relative to the
    host's workdir. Passing the ``exp_id`` of an interrupted call makes it idempotent
    (and a stopped experiment's id continues it: finished runs are kept)."""
    from trainers.rundir import new_run_id

    say = progress or (lambda _msg: None)
    model = read_model(sweep_file)
    exp_id = exp_id or new_run_id(f"sweep-{model or 'experiment'}")
    layout, code_dir, data_dir, python = prepare_host(host, data or "", upload, env, progress)
    remote_file = f"{layout.root}/sweeps/{exp_id}.toml"
    result = host.run(["mkdir", "-p", f"{layout.root}/sweeps"], timeout=60)
    if not result.ok:
        raise DeployError(f"{host.name}: creating {layout.root}/sweeps failed: {result.tail()}")
    host.put(str(sweep_file), remote_file)
    args = _sweep_args(remote_file, data_dir or None, layout, exp_id, list(overrides or []))
    planned = check_sweep(host, python, code_dir, args, sweep_file)
    say(f"{sweep_file}: {len(planned)} runs checked on {host.name}")
    argv = [python, "-m", "trainers", *args]
    # One slot, as a run deployed without --gpus takes: the sweep trains its runs one
    # after another, each one process on one GPU.
    slots = getattr(host, "slots", None) or "auto"
    launch_args = ["launch", "--runs", layout.runs, "--run-id", exp_id, "--cwd", layout.root,
                   "--pythonpath", code_dir, *guard_for(host), "--slots", str(slots),
                   "--gpus", "1", "--", *argv]  # fmt: skip
    answer = hostctl(host, code_dir, launch_args)
    if not answer.get("launched") and answer.get("alive") is False:
        # This id's earlier sweep has ended (stopped, failed, killed): asked again, it
        # continues (the sweep keeps finished runs). Its launch record is kept aside, so
        # the lock still stops a retried deploy from starting a second process.
        old = f"{layout.launches}/{exp_id}"
        moved = host.run(["mv", old, f"{old}.ended-{time.time():.0f}"], timeout=60)
        if not moved.ok:
            raise DeployError(f"{host.name}: setting {old} aside failed: {moved.tail()}")
        say(f"continuing experiment {exp_id} (its earlier sweep process had ended)")
        answer = hostctl(host, code_dir, launch_args)
    launch = ExperimentLaunch(
        exp_id=exp_id,
        host=host.name,
        exp_dir=layout.run_dir(exp_id),
        pid=answer.get("pid"),
        launched=bool(answer.get("launched")),
        sweep_file=remote_file,
        runs=[f"{exp_id}{EXPERIMENT_SEP}{name}" for name in planned],
        argv=argv,
        guard_error=answer.get("guard_error"),
        queued=bool(answer.get("queued")),
        place=answer.get("place"),
    )
    _wait_started(host, layout, launch, started_timeout)
    if launch.queued:
        say(f"experiment {exp_id} ({len(planned)} runs) queued on {host.name}, "
            f"place {launch.place}: it starts when a slot frees")  # fmt: skip
    else:
        verb = "started" if launch.launched else "was already started"
        say(f"experiment {exp_id} ({len(planned)} runs) {verb} on {host.name} (pid {launch.pid})")
    if launch.guard_error:
        say(f"warning: {launch.guard_error}")
    return launch


def _wait_started(host: Host, layout: HostLayout, launch: ExperimentLaunch, timeout: float) -> None:
    """Until the sweep wrote experiment.json (then ``runs`` lists its runs). A sweep
    waiting in the host's queue has no process yet: nothing to wait for (``runs`` lists
    it as queued)."""
    if not launch.queued:
        wait_for_file(host, layout, "sweep", launch.exp_id, launch.pid, EXPERIMENT_JSON, timeout)


def start_sweep(
    host_name: str,
    sweep_file: Path,
    *,
    local_data: Path | None = None,
    host_data: str | None = None,
    overrides: list[str] | None = None,
    exp_id: str | None = None,
    env: str = "auto",
    progress: Progress | None = None,
) -> ExperimentLaunch:
    """:func:`deploy_sweep` on a configured host, recorded in the ledger (the
    experiment by its id; its runs are found through it)."""
    from remote.hosts import get_host
    from remote.layout import is_this_checkout

    if local_data is not None and host_data is not None:
        raise RequestError("give --data or --remote-data, not both", field="data")
    if local_data is not None and not local_data.is_dir():
        raise RequestError(f"--data {local_data}: no such directory", field="data")
    if not sweep_file.is_file():
        raise RequestError(f"--sweep {sweep_file}: no such file", field="sweep")
    target = get_host(host_name)
    try:
        data = host_data
        upload = None
        if local_data is not None:
            if is_this_checkout(target):
                data = str(local_data.resolve())
            else:
                upload = local_data
        launch = deploy_sweep(
            target, sweep_file, data=data, upload=upload, overrides=overrides, exp_id=exp_id,
            env=env, progress=progress,
        )  # fmt: skip
    finally:
        target.close()
    ledger.record(launch.exp_id, host_name, launch.exp_dir, read_model(sweep_file) or "?",
                  experiment=True, runs=launch.runs)  # fmt: skip
    return launch
