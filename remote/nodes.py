"""One torchrun job across several hosts: ``emoconsole deploy --nodes K``.

Every node gets the code, the data and Python as a single-host deploy does, then
runs the same ``python -m trainers train ... --nnodes K --rdzv-endpoint FIRST:PORT``.
torchrun's c10d rendezvous, hosted on the first node, forms one world of
``K x gpus`` ranks. Each node keeps a run directory of the same id: the node that
got global rank 0 (its run.json carries ``rank0_pid``) writes events,
checkpoints and the summary; the others hold run.json and their ranks' logs.
The console follows the primary node's stream and every node's system samples.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from remote.deploy import (
    DeployError,
    Launch,
    Progress,
    check_config,
    launch_run,
    prepare_host,
    wait_started,
)
from remote.host import Host
from remote.local import LocalHost
from remote.watch import SysItem, WatchItem, follow

DEFAULT_RDZV_PORT = 29400


@dataclass(frozen=True)
class NodesLaunch:
    run_id: str
    nodes: list[Launch]
    rdzv_endpoint: str
    primary: int | None = None  # the node whose run directory rank 0 writes, once known


def rendezvous_address(host: Host) -> str:
    """Where the other nodes reach the first one: the address SSH connects to.

    Behind a jump host that is usually the private address, which is what the
    nodes of one cluster share; pass ``rdzv_address`` when it is not.
    """
    if isinstance(host, LocalHost):
        return "127.0.0.1"
    resolve = getattr(host, "resolve", None)
    if resolve is None:
        raise DeployError(f"{host.name}: cannot tell its address; pass --rdzv-address")
    return resolve().hostname


def deploy_nodes(
    hosts: list[Host],
    model: str,
    *,
    data: str,
    upload: Path | None = None,
    overrides: list[str] | None = None,
    run_id: str | None = None,
    env: str = "auto",
    gpus: int = 1,
    max_restarts: int = 0,
    rdzv_address: str | None = None,
    rdzv_port: int = DEFAULT_RDZV_PORT,
    progress: Progress | None = None,
    started_timeout: float = 180.0,
) -> NodesLaunch:
    """Prepare every host, check the config once, start torchrun on each."""
    from trainers.rundir import new_run_id

    if len(hosts) < 2:
        raise DeployError(f"--nodes needs 2 or more hosts, got {len(hosts)}")
    if gpus < 1:
        raise DeployError(f"--nodes needs --gpus N >= 1 (processes per node), got {gpus}")
    overrides = list(overrides or [])
    run_id = run_id or new_run_id(model)
    endpoint = f"{rdzv_address or rendezvous_address(hosts[0])}:{rdzv_port}"
    prepared = [prepare_host(host, data, upload, env, progress) for host in hosts]
    layout, code_dir, first_data, python = prepared[0]
    check_config(hosts[0], python, code_dir, model, ["data.root=" + first_data, *overrides])
    launches = []
    for host, (layout, code_dir, node_data, python) in zip(hosts, prepared, strict=True):
        launch = launch_run(
            host,
            layout,
            code_dir,
            python,
            model,
            node_data,
            overrides,
            run_id,
            gpus,
            max_restarts,
            nnodes=len(hosts),
            rdzv_endpoint=endpoint,
        )
        launches.append(launch)
        if progress:
            progress(
                f"node {host.name}: torchrun started (pid {launch.pid}), rendezvous {endpoint}"
            )
    for host, (layout, code_dir, _, _), launch in zip(hosts, prepared, launches, strict=True):
        wait_started(host, code_dir, layout, launch, timeout=started_timeout)
    return NodesLaunch(run_id=run_id, nodes=launches, rdzv_endpoint=endpoint)


def primary_node(hosts: list[Host], launch: NodesLaunch, timeout: float = 300.0) -> int:
    """The index of the node whose run directory rank 0 writes (``rank0_pid`` in its
    run.json): the rendezvous, not the order of the hosts, decides which it is."""
    import json

    deadline = time.monotonic() + timeout
    while True:
        for i, (host, node) in enumerate(zip(hosts, launch.nodes, strict=True)):
            result = host.run(["cat", f"{node.run_dir}/run.json"], timeout=60)
            if result.ok:
                try:
                    if json.loads(result.stdout).get("rank0_pid"):
                        return i
                except ValueError:
                    pass  # caught mid-write; ask again
        if time.monotonic() > deadline:
            raise DeployError(
                f"run {launch.run_id}: no node reported rank 0 within {timeout:.0f} s "
                f"(rendezvous {launch.rdzv_endpoint}); see each node's .launches output.log"
            )
        time.sleep(0.5)


def follow_nodes(
    hosts: list[Host], launch: NodesLaunch, primary: int, interval: float = 2.0
) -> Iterator[WatchItem]:
    """The primary node's stream, with every node's system samples in it.

    Each sample carries ``node`` (the host's name). The other nodes are followed
    in threads for their samples only and let go when the primary's stream ends.
    """
    samples: queue.Queue[SysItem] = queue.Queue()
    stop = threading.Event()

    def node_samples(host: Host, run_dir: str) -> None:
        stream = follow(host, run_dir, interval=interval)
        try:
            for item in stream:
                if stop.is_set():
                    break
                if isinstance(item, SysItem):
                    samples.put(SysItem({**item.sample, "node": host.name}))
        except Exception:  # a node's telemetry failing must not end the run's stream
            return
        finally:
            stream.close()

    threads = [
        threading.Thread(target=node_samples, args=(host, node.run_dir), daemon=True)
        for i, (host, node) in enumerate(zip(hosts, launch.nodes, strict=True))
        if i != primary
    ]
    for thread in threads:
        thread.start()
    name = hosts[primary].name
    try:
        for item in follow(hosts[primary], launch.nodes[primary].run_dir, interval=interval):
            while not samples.empty():
                yield samples.get_nowait()
            yield SysItem({**item.sample, "node": name}) if isinstance(item, SysItem) else item
    finally:
        stop.set()
