"""Deploy: ship the code (and data) to a host, prepare its Python, start a run detached.

The host's layout (``code/<digest>``, ``code/current``, ``venv``, ``data``,
``runs``) is :mod:`remote.layout`'s.

Why versioned code directories: a run imports some modules lazily, hours after
it started, so replacing files under a running process could mix two
versions. Each run's PYTHONPATH names its own ``code/<digest>``; a later
deploy only adds a directory and moves ``current``.

Idempotence: the run id is chosen here, before anything starts, and the
on-host launcher (:mod:`remote.onhost.hostctl`) takes an atomic per-id lock, so
retrying a deploy whose connection dropped during the launch reports the
process the first try started instead of starting a second one.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shlex
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remote.errors import CommandError, RemoteError
from remote.host import Host, Result, describe
from remote.layout import (
    PROJECT_ROOT,
    HostLayout,
    is_this_checkout,
    python_module,
    resolve_layout,
)
from remote.onhost.webhook import redact

PACKAGES = ("trainers", "remote", "emoconsole")
TOP_FILES = ("pyproject.toml", "uv.lock", "README.md")

Progress = Callable[[str], None]


class DeployError(RemoteError):
    """A deploy step failed; the message says which and what to do.

    ``field`` names the part of the request the error is about (``model``, ``host``,
    ``data``, ``overrides``, ``gpus``, ``nodes``), set where the error is raised, when
    the request itself was refused before anything started; None for a failure of a
    host, a transfer or a run. A form shows the error under that field.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RequestError(DeployError):
    """The request contradicts itself or names what is not there (a local data
    directory, a kind of host): found before any host is touched."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, field=field)


def _run(host: Host, cmd: str | list[str], what: str, timeout: float | None = 600) -> Result:
    result = host.run(cmd, timeout=timeout)
    if not result.ok:
        raise DeployError(f"{host.name}: {what} failed (exit {result.exit_code}):\n{result.tail()}")
    return result


# -- the code ---------------------------------------------------------------------------------


def source_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """What a host needs to train and watch: the three packages and the project files."""
    files = [root / name for name in TOP_FILES if (root / name).is_file()]
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append(path)
    return files


def project_archive(root: Path = PROJECT_ROOT) -> tuple[bytes, str]:
    """A reproducible tar.gz of the source tree and the digest of its content.

    Fixed mtimes, owners and order: the same tree always gives the same bytes,
    so the digest names the version and an unchanged tree is never re-shipped.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in source_files(root):
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(raw.getvalue()).hexdigest()[:16]
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue(), digest


def ship_code(host: Host, layout: HostLayout, progress: Progress | None = None) -> str:
    """Make ``code/<digest>`` exist on the host; returns it. A no-op when already there."""
    if is_this_checkout(host):
        return str(PROJECT_ROOT)
    archive, digest = project_archive()
    target = layout.code(digest)
    if host.run(f"test -f {shlex.quote(target)}/.complete", timeout=60).ok:
        if progress:
            progress(f"code {digest} already on {host.name}")
    else:
        if progress:
            progress(f"shipping code {digest} ({len(archive) / 1024:.0f} KiB) to {host.name}")
        import tempfile

        tmp_remote = f"{layout.root}/code/.{digest}.tar.gz"
        _run(host, f"mkdir -p {shlex.quote(layout.root)}/code", "creating code/")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "code.tar.gz"
            local.write_bytes(archive)
            host.put(str(local), tmp_remote)
        staging = f"{target}.tmp"
        script = (
            f"rm -rf {shlex.quote(staging)} && mkdir -p {shlex.quote(staging)} && "
            f"tar -xzf {shlex.quote(tmp_remote)} -C {shlex.quote(staging)} && "
            f"touch {shlex.quote(staging)}/.complete && "
            f"rm -rf {shlex.quote(target)} && mv {shlex.quote(staging)} {shlex.quote(target)} && "
            f"rm -f {shlex.quote(tmp_remote)}"
        )
        _run(host, script, "unpacking the code")
    link_tmp = f"{layout.current}.tmp"
    _run(
        host,
        f"ln -sfn {shlex.quote(digest)} {shlex.quote(link_tmp)} && "
        f"mv -fT {shlex.quote(link_tmp)} {shlex.quote(layout.current)}",
        "pointing code/current at the new code",
    )
    return target


# -- the interpreter --------------------------------------------------------------------------

PROBE = "import torch, torchvision, av, soundfile, soxr; print(torch.__version__)"


def prepare_python(
    host: Host,
    layout: HostLayout,
    code_dir: str,
    env: str = "auto",
    progress: Progress | None = None,
) -> str:
    """The interpreter that trains on this host.

    ``env``: ``host`` uses the host's configured interpreter (a deep-learning
    AMI's conda env, this checkout's venv) and fails if it lacks the training
    stack; ``uv`` builds ``venv/`` from the shipped uv.lock (``uv sync``, a
    no-op when nothing changed); ``auto`` takes the host's interpreter when it
    has the stack, else uv.
    """
    if env not in ("auto", "host", "uv"):
        raise DeployError(f"env={env!r}: expected auto, host or uv")
    if env == "host":
        # No probe: the config check that follows imports the stack and says what is missing.
        return host.python
    if env == "auto":
        probe = host.run([host.python, "-c", PROBE], timeout=300)
        if probe.ok:
            if progress:
                progress(f"using {host.python} on {host.name} (torch {probe.stdout.strip()})")
            return host.python
    if progress:
        progress(f"preparing {layout.venv} on {host.name} with uv (first time: minutes)")
    uv = (
        "UV=$(command -v uv || echo $HOME/.local/bin/uv); "
        'if [ ! -x "$UV" ]; then '
        f"{shlex.quote(host.python)} -m pip install --user --quiet uv || exit 3; "
        "UV=$HOME/.local/bin/uv; fi; "
        f"cd {shlex.quote(code_dir)} && UV_PROJECT_ENVIRONMENT={shlex.quote(layout.venv)} "
        '"$UV" sync --locked --extra train --no-dev --no-install-project'
    )
    result = host.run(uv, timeout=3600)
    if result.exit_code == 3:
        raise DeployError(
            f"{host.name}: uv is not installed and `{host.python} -m pip install --user uv` "
            "failed; install uv there (https://docs.astral.sh/uv/) or name an interpreter "
            "with torch in the host's config"
        )
    if not result.ok:
        raise DeployError(f"{host.name}: uv sync failed:\n{result.tail()}")
    return f"{layout.venv}/bin/python"


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Launch:
    run_id: str
    host: str
    run_dir: str  # on the host
    pid: int | None
    launched: bool  # False: an earlier try of the same launch had started it
    code_dir: str
    python: str
    argv: list[str] = field(default_factory=list)
    # The run started but its guard did not (hostctl's words): nothing pushes it to
    # storage or stops it on a notice. Said by deploy; None when all is well.
    guard_error: str | None = None
    # Waiting in the host's run queue (remote.onhost.queue) for GPU slots: no pid yet;
    # ``place`` 1 starts next.
    queued: bool = False
    place: int | None = None


def hostctl(host: Host, code_dir: str, args: list[str], timeout: float = 120) -> dict[str, Any]:
    """Run :mod:`remote.onhost.hostctl` on the host with the shipped code; its JSON answer."""
    argv = python_module(host, "remote.hostctl", args, code_dir=code_dir)
    result = host.run(argv, timeout=timeout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise CommandError(describe(_redacted(argv)), result.exit_code, result.tail())
    answer = json.loads(lines[-1])
    if "error" in answer:
        raise DeployError(f"{host.name}: {answer['error']}")
    return answer


def check_config(host: Host, python: str, code_dir: str, model: str, overrides: list[str]) -> None:
    """Resolve the config on the host before anything starts: a wrong key stops here."""
    args = ["config", model]
    for item in overrides:
        args += ["--set", item]
    argv = python_module(host, "trainers", args, code_dir=code_dir, python=python)
    result = host.run(argv, timeout=300)
    if result.exit_code == 2:  # a config or usage error: the CLI's last line names the key
        message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        # The trainers CLI names an unknown model so; every other usage error here is
        # about a key=value (the overrides, data.root among them).
        field = "model" if message.startswith("error: unknown model") else "overrides"
        raise DeployError(f"{model}: {message or result.tail()}", field=field)
    if not result.ok:
        raise DeployError(
            f"{host.name}: {python} cannot run the trainers:\n{result.tail(8)}\n"
            "Name an interpreter with the training stack (python = ... in the host's "
            "config), or deploy with --env uv"
        )


def launch_run(
    host: Host,
    layout: HostLayout,
    code_dir: str,
    python: str,
    model: str,
    data: str,
    overrides: list[str],
    run_id: str,
    gpus: int = 0,
    max_restarts: int = 0,
    nnodes: int = 1,
    rdzv_endpoint: str = "",
    guard: list[str] | None = None,
    slots: int | str | None = None,
) -> Launch:
    """Start the run through hostctl. ``slots``: the host's GPU slots (a count, or
    ``auto``: its GPUs) to queue the run behind others for ``max(1, gpus)`` of them;
    None starts it at once whatever runs there (a node of a multi-node job)."""
    argv = [python, "-m", "trainers", "train", model, "--data", data, "--out", layout.runs]
    argv += ["--run-id", run_id]
    if gpus:
        # torchrun, one process per GPU (gloo processes on a CPU host); the launcher
        # stays the run's pid, so stop, watch and the crash report work unchanged.
        argv += ["--nproc-per-node", str(gpus), "--max-restarts", str(max_restarts)]
    if nnodes > 1:
        argv += ["--nnodes", str(nnodes), "--rdzv-endpoint", rdzv_endpoint]
    for item in overrides:
        argv += ["--set", item]
    return launch_command(
        host, layout, code_dir, python, run_id, argv, guard=guard, slots=slots, gpus=gpus
    )


def launch_command(
    host: Host,
    layout: HostLayout,
    code_dir: str,
    python: str,
    run_id: str,
    argv: list[str],
    *,
    guard: list[str] | None = None,
    slots: int | str | None = None,
    gpus: int = 0,
) -> Launch:
    """Start ``argv``, a run that writes ``runs/RUN_ID``, detached through hostctl (the
    launch lock, the guard, the host's queue): what :func:`launch_run` does once it
    has the trainer's command line."""
    queue = [] if slots is None else ["--slots", str(slots), "--gpus", str(max(1, gpus))]
    answer = hostctl(
        host,
        code_dir,
        [
            "launch",
            "--runs",
            layout.runs,
            "--run-id",
            run_id,
            "--cwd",
            layout.root,
            "--pythonpath",
            code_dir,
            *(guard or []),
            *queue,
            "--",
            *argv,
        ],
    )
    return Launch(
        run_id=run_id,
        host=host.name,
        run_dir=layout.run_dir(run_id),
        pid=answer.get("pid"),
        launched=bool(answer.get("launched")),
        code_dir=code_dir,
        python=python,
        argv=argv,
        guard_error=answer.get("guard_error"),
        queued=bool(answer.get("queued")),
        place=answer.get("place"),
    )


def wait_started(
    host: Host, code_dir: str, layout: HostLayout, launch: Launch, timeout: float = 180
) -> None:
    """Until the run wrote its run.json; a process that died first is reported with its output.
    A run waiting in the host's queue has no process yet: nothing to wait for."""
    if not launch.queued:
        wait_for_file(host, layout, "run", launch.run_id, launch.pid, "run.json", timeout)


def wait_for_file(
    host: Host, layout: HostLayout, what: str, launch_id: str, pid: int | None, name: str,
    timeout: float,
) -> None:  # fmt: skip
    """Until the process ``pid`` of launch ``launch_id`` wrote ``runs/<launch_id>/<name>``
    (a run's run.json, a sweep's experiment.json): then ``runs`` lists it. A process that
    died first, or wrote nothing in ``timeout`` s, is a DeployError with its output."""
    path = shlex.quote(f"{layout.run_dir(launch_id)}/{name}")
    probe = (
        f"if test -f {path}; then echo started; "
        f"elif kill -0 {int(pid or 0)} 2>/dev/null; then echo waiting; else echo dead; fi"
    )
    deadline = time.monotonic() + timeout
    while True:
        state = host.run(probe, timeout=60).stdout.strip()
        if state == "started":
            return
        if state == "dead" or time.monotonic() > deadline:
            log = f"{layout.launches}/{launch_id}/output.log"
            out = host.run(["tail", "-n", "20", log], timeout=60).stdout.strip()
            why = "exited" if state == "dead" else f"wrote no {name} within {timeout:.0f} s"
            raise DeployError(
                f"{host.name}: {what} {launch_id} {why}; its output ({log}):\n{out or '(none)'}"
            )
        time.sleep(0.3)


def deploy(
    host: Host,
    model: str,
    *,
    data: str,
    upload: Path | None = None,
    overrides: list[str] | None = None,
    run_id: str | None = None,
    env: str = "auto",
    stop_first: str | None = None,
    progress: Progress | None = None,
    started_timeout: float = 180.0,
    gpus: int = 0,
    max_restarts: int = 0,
) -> Launch:
    """Ship, prepare, check the config, then start ``model`` detached on ``host``.

    ``data`` is a path on the host; with ``upload`` (a local directory) the data
    is copied there first, skipping files the host already has. Passing the
    ``run_id`` of an earlier, interrupted call makes the call idempotent. ``gpus``
    > 0 runs the model under torchrun with that many processes (DDP), restarting
    every rank from the last checkpoint up to ``max_restarts`` times when one dies.
    """
    from trainers.rundir import new_run_id

    overrides = list(overrides or [])
    run_id = run_id or new_run_id(model)
    layout, code_dir, data, python = prepare_host(host, data, upload, env, progress)
    check_config(host, python, code_dir, model, ["data.root=" + data, *overrides])
    if stop_first:
        # Only now, with the new run's config known to be good: a typo must not cost
        # the run it was meant to replace.
        answer = hostctl(host, code_dir, ["stop", layout.run_dir(stop_first)], timeout=180)
        if progress:
            progress(f"stopped {stop_first}: {answer.get('status')}")
    launch = launch_run(
        host, layout, code_dir, python, model, data, overrides, run_id, gpus, max_restarts,
        guard=guard_for(host), slots=getattr(host, "slots", None) or "auto",
    )  # fmt: skip
    # Return once the run has written run.json: then `runs` and the watcher see it, and a
    # process that died at once (a missing data set) is reported here with its output.
    wait_started(host, code_dir, layout, launch, timeout=started_timeout)
    if progress and launch.queued:
        progress(f"run {run_id} queued on {host.name}, place {launch.place}")
    elif progress:
        verb = "started" if launch.launched else "was already started"
        progress(f"run {run_id} {verb} on {host.name} (pid {launch.pid})")
        if launch.guard_error:
            progress(f"warning: {launch.guard_error}")
    return launch


def guard_options(profile: Any, instance: Any) -> list[str]:
    """hostctl's options for the guard beside a run on an EC2 instance of ``profile``
    (:mod:`remote.onhost.guard`): push to the profile's storage, hear interruption
    notices from the instance metadata service, and act before the max-lifetime
    shutdown (counted from the instance's launch, as its boot script counts)."""
    args = ["--imds", profile.metadata_url, "--poll", f"{profile.notice_poll_s:g}"]
    if profile.storage:
        args += ["--storage", profile.storage, *storage_endpoint(profile)]
    launched = getattr(instance, "launch_time", None)
    if launched is not None and profile.max_hours:
        lead = 60 * profile.shutdown_lead_minutes
        shutdown_at = launched.timestamp() + profile.shutdown_minutes * 60
        args += ["--shutdown-at", f"{shutdown_at:.0f}", "--shutdown-lead", f"{lead:.0f}"]
    if getattr(profile, "notify_url", None):  # a recovered run's guard tells it too
        args += ["--notify-url", profile.notify_url]
    return args


def storage_endpoint(profile: Any) -> list[str]:
    """Where the profile's S3 answers (``--endpoint-url``, ``--region``), as the on-host
    guard and restore take it."""
    args = []
    if profile.endpoint_url:
        args += ["--endpoint-url", profile.endpoint_url]
    if profile.region:
        args += ["--region", profile.region]
    return args


def guard_for(host: Host) -> list[str]:
    """The guard options a run on ``host`` gets: on EC2 the profile's (notices, storage,
    the shutdown timer); on an SSH host with ``storage`` the pushes alone, with the
    host's own AWS credentials (its ~/.aws, its role); and with ``notify_url`` (any
    host, an EC2 profile's too) the webhook told of the run's end."""
    profile = getattr(host, "profile", None)
    if profile is not None:
        return guard_options(profile, getattr(host, "instance", None))
    storage = getattr(host, "storage", None)
    notify_url = getattr(host, "notify_url", None)
    return (["--storage", storage] if storage else []) + (
        ["--notify-url", notify_url] if notify_url else []
    )


def _redacted(argv: Any) -> Any:
    """``argv`` with a ``--notify-url``'s value cut to its host: it is a credential, and
    a failed command's description is printed."""
    if isinstance(argv, str):
        return re.sub(r"(--notify-url[= ]+'?)([^\s']+)", lambda m: m[1] + redact(m[2]), argv)
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--notify-url":
            out[i + 1] = redact(out[i + 1])
    return out


def prepare_host(
    host: Host, data: str, upload: Path | None, env: str, progress: Progress | None
) -> tuple[HostLayout, str, str, str]:
    """Code shipped, data uploaded, Python ready: (layout, code dir, data path, python)."""
    layout = resolve_layout(host)
    code_dir = ship_code(host, layout, progress)
    if upload is not None:
        from remote.sync import upload_dir

        data = upload_dir(host, upload, layout.data(upload.name), progress=progress).remote
    python = (
        sys.executable
        if is_this_checkout(host)
        else prepare_python(host, layout, code_dir, env, progress)
    )
    return layout, code_dir, data, python


def _current_code(host: Host) -> tuple[HostLayout, str]:
    """The host's layout and the code hostctl runs from for runs already there: the
    last code shipped (this checkout, here)."""
    layout = resolve_layout(host)
    return layout, str(PROJECT_ROOT) if is_this_checkout(host) else layout.current


def stop_run(host: Host, run: str, grace: float = 30.0) -> dict[str, Any]:
    layout, code = _current_code(host)
    return hostctl(
        host, code, ["stop", layout.run_dir(run), "--grace", str(grace)], timeout=grace + 60
    )


def list_runs(host: Host) -> list[dict[str, Any]]:
    layout, code = _current_code(host)
    return hostctl(host, code, ["list", layout.runs])["runs"]


def read_evaluations(host: Host, run_dir: str) -> dict[str, Any]:
    """``hostctl evaluations``: the run's evaluations on other data and its own test."""
    _layout, code = _current_code(host)
    return hostctl(host, code, ["evaluations", run_dir], timeout=60)
