"""Starting a run from a request: the one call behind ``emoconsole deploy`` and the
dashboard's new-run form.

A :class:`RunRequest` says what to train and where; :func:`start_run` checks it,
reaches the host (or hosts: an EC2 cluster it launches, or named SSH hosts),
makes sure the data is there (uploading a local directory, sending only what
differs, or finding a directory already on the host), hands over to
:func:`remote.deploy.deploy` or :func:`remote.nodes.deploy_nodes`, and records
the run in the ledger. Every error that is about one part of the request carries
it as ``field`` (:class:`~remote.deploy.DeployError`), so a form shows it there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from remote import ledger
from remote.config import HostConfig, get_host_config
from remote.deploy import DeployError, Launch, Progress, RequestError
from remote.deploy import deploy as deploy_one
from remote.host import Host
from remote.hosts import get_host
from remote.layout import is_this_checkout, quote_path, resolve_layout
from remote.nodes import DEFAULT_RDZV_PORT, NodesLaunch, deploy_nodes, primary_node


@dataclass(frozen=True)
class RunRequest:
    """What to start where. Exactly one of ``local_data`` (a directory on this
    machine, uploaded unless the host is this checkout) and ``host_data`` (a
    directory already on the host) names the data set.

    ``host`` is a configured name, or several joined by commas for one job over
    those machines; ``nodes`` > 1 on an EC2 host launches that many instances."""

    model: str
    host: str = "local"
    local_data: Path | None = None
    host_data: str | None = None
    overrides: tuple[str, ...] = ()
    run_id: str | None = None
    env: str = "auto"
    stop_first: str | None = None  # a run on the same host to stop once the config checks out
    gpus: int = 0
    max_restarts: int = 0
    nodes: int = 1
    rdzv_port: int = DEFAULT_RDZV_PORT
    # Recoveries on a new instance when the run's own is lost (EC2 hosts with storage);
    # None: the profile's ``recover``.
    recover: int | None = None

    @property
    def host_names(self) -> list[str]:
        return [name.strip() for name in self.host.split(",") if name.strip()]

    @property
    def several_nodes(self) -> bool:
        return len(self.host_names) > 1 or self.nodes > 1


def check_request(request: RunRequest, hosts: dict[str, HostConfig] | None = None) -> None:
    """What can be told without touching a host; raises :class:`RequestError`.

    ``hosts`` replaces the configured hosts (the dashboard's, in tests)."""
    if (request.local_data is None) == (request.host_data is None):
        raise RequestError(
            "give exactly one of --data (a local directory) or --remote-data (one on the host)",
            field="data",
        )
    gpus, max_restarts = request.gpus, request.max_restarts
    if gpus < 0 or max_restarts < 0 or (max_restarts and not gpus):
        raise RequestError(
            f"--gpus {gpus} --max-restarts {max_restarts}: both >= 0, and restarts "
            "need --gpus N (torchrun)",
            field="gpus",
        )
    names = request.host_names
    if not names:
        raise RequestError("no host given", field="host")
    if request.local_data is not None and not request.local_data.is_dir():
        raise RequestError(f"--data {request.local_data}: no such directory", field="data")
    if not request.several_nodes:
        return
    if gpus < 1:
        raise RequestError(
            "several nodes need --gpus N (processes per node, one per GPU), N >= 1", field="gpus"
        )
    if len(names) > 1 and request.nodes not in (1, len(names)):
        raise RequestError(
            f"--nodes {request.nodes} but --host names {len(names)} hosts", field="nodes"
        )
    if len(names) == 1:
        cfg = get_host_config(names[0], hosts)
        if cfg.kind != "ec2" or cfg.ec2 is None:
            raise RequestError(
                f"--nodes {request.nodes} on host {names[0]!r} ({cfg.kind}): several nodes "
                "need an EC2 host (instances are launched for the job) or named hosts: "
                "--host a,b",
                field="host",
            )


def start_run(
    request: RunRequest,
    progress: Progress | None = None,
    *,
    hosts: dict[str, HostConfig] | None = None,
) -> Launch | NodesLaunch:
    """Check the request, start the run detached, record it in the ledger.

    Returns the :class:`Launch` of a one-host run, or the :class:`NodesLaunch` of a
    job over several machines (its ``primary`` the node whose run directory rank 0
    writes). Raises :class:`RequestError` before touching a host, else the remote
    layer's errors (a :class:`DeployError` with ``field`` set when the host refused
    the request: its data directory missing, a config key the model lacks)."""
    check_request(request, hosts)
    say = progress or (lambda _msg: None)
    if request.several_nodes:
        return _start_nodes(request, say, hosts)
    target = get_host(request.host_names[0], hosts)
    recover = _recoveries(request, target)
    try:
        data, upload = _data_on(request, [target])
        launch = deploy_one(
            target,
            request.model,
            data=data,
            upload=upload,
            overrides=list(request.overrides),
            run_id=request.run_id,
            env=request.env,
            stop_first=request.stop_first,
            progress=say,
            gpus=request.gpus,
            max_restarts=request.max_restarts,
        )
        instance = getattr(target, "instance", None)
    finally:
        target.close()
    if recover:
        from remote.recovery import ManagedRun, span

        profile = target.profile  # type: ignore[attr-defined]
        ManagedRun(
            run_id=launch.run_id, host=request.host, run_dir=launch.run_dir,
            model=request.model, recover=recover, storage=profile.storage,
            instance_id=instance.id if instance else None, data=data,
            local_data=str(request.local_data) if request.local_data else None,
            env=request.env, instances=[span(instance)] if instance else [],
        ).save(pid=launch.pid)  # fmt: skip
    else:
        ledger.record(launch.run_id, request.host, launch.run_dir, request.model, pid=launch.pid)
    return launch


def _recoveries(request: RunRequest, target: Host) -> int:
    """How many recoveries the run gets; a refusal before anything starts when it
    cannot have them (not EC2, or no storage to recover from)."""
    profile = getattr(target, "profile", None)
    wanted = request.recover
    if wanted is None:
        wanted = getattr(profile, "recover", 0) if profile is not None else 0
    if wanted < 0:
        raise RequestError(f"--recover {wanted}: a count >= 0", field="recover")
    if not wanted:
        return 0
    if profile is None:
        raise RequestError(
            f"--recover {wanted}: host {request.host} is not an EC2 profile; recovery "
            "launches a new instance of one",
            field="recover",
        )
    if not getattr(profile, "storage", None):
        raise RequestError(
            f"--recover {wanted}: profile {profile.name} has no storage to recover from; "
            f'add storage = "s3://BUCKET/PREFIX" to [ec2.{profile.name}]',
            field="recover",
        )
    return int(wanted)


def _start_nodes(
    request: RunRequest, say: Progress, hosts: dict[str, HostConfig] | None
) -> NodesLaunch:
    """One torchrun job over several machines: an EC2 cluster launched for it, or named hosts."""
    names = request.host_names
    rdzv_address = None
    if len(names) == 1:
        cfg = get_host_config(names[0], hosts)
        assert cfg.ec2 is not None  # check_request refused any other kind
        from remote.ec2.cluster import Ec2NodeHost, launch_cluster
        from remote.ec2.launch import connect_address, wait_for_ssh

        cluster = launch_cluster(cfg.ec2, request.nodes, progress=say)
        targets: list[Host] = [
            Ec2NodeHost(cfg.ec2, instance.id, i) for i, instance in enumerate(cluster.instances)
        ]
        for instance in cluster.instances:
            address, port = connect_address(cfg.ec2, instance)
            say(f"waiting for sshd on {address}:{port or 22}")
            wait_for_ssh(address, port or 22, 600)
        rdzv_address = cluster.rdzv_address
        say(
            f"cluster {cluster.id}: {', '.join(i.id for i in cluster.instances)} "
            f"(when done: emoconsole hosts terminate {cfg.ec2.name})"
        )
    else:
        targets = [get_host(name, hosts) for name in names]
    try:
        data, upload = _data_on(request, targets)
        job = deploy_nodes(
            targets,
            request.model,
            data=data,
            upload=upload,
            overrides=list(request.overrides),
            run_id=request.run_id,
            env=request.env,
            gpus=request.gpus,
            max_restarts=request.max_restarts,
            rdzv_address=rdzv_address,
            rdzv_port=request.rdzv_port,
            progress=say,
        )
        job = dataclasses.replace(job, primary=primary_node(targets, job))
    finally:
        for target in targets:
            target.close()
    first = job.nodes[job.primary or 0]
    nodes_rows = [{"host": n.host, "run_dir": n.run_dir, "pid": n.pid} for n in job.nodes]
    ledger.record(job.run_id, first.host, first.run_dir, request.model, pid=first.pid,
                  nodes=nodes_rows, rdzv_endpoint=job.rdzv_endpoint)  # fmt: skip
    return job


def _data_on(request: RunRequest, targets: list[Host]) -> tuple[str, Path | None]:
    """(data path for the run, local directory to upload first or None).

    A local directory is used in place when every target is this checkout; a
    directory on the host must be there on each target, or nothing starts."""
    if request.local_data is not None:
        if all(is_this_checkout(t) for t in targets):
            return str(request.local_data.resolve()), None
        return "", request.local_data
    data = request.host_data or ""
    for target in targets:
        # Relative to the workdir, where the run starts, as the trainer will read it.
        root = resolve_layout(target).root
        found = target.run(f"cd {quote_path(root)} && test -d {quote_path(data)}", timeout=60)
        if not found.ok:
            raise DeployError(f"no directory {data} on {target.name}", field="data")
    return data, None
