"""``emoconsole deploy | runs | stop | monitor``: runs on any host, headless.

Thin over :mod:`remote.start`, :mod:`remote.deploy` and :mod:`remote.watch`: parse,
call, print. Which run a name means, and where, is :mod:`emoconsole.runref`'s.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from emoconsole.runref import (
    LIST_RUNS_HINT,
    RUN_HELP,
    HostOpt,
    fail,
    host_for,
    known_errors,
    resolve_run,
)


def deploy(
    model: Annotated[
        str | None,
        typer.Argument(help="A model from `python -m trainers list` (not with --sweep)."),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Where to train.")] = "local",
    data: Annotated[
        Path | None,
        typer.Option(
            help="A local data directory, uploaded to the host (unchanged files skipped)."
        ),
    ] = None,
    remote_data: Annotated[
        str | None,
        typer.Option("--remote-data", help="A data directory already on the host."),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Config override KEY=VALUE (repeatable)."),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(help="Run id; pass an interrupted deploy's id to retry it without a twin."),
    ] = None,
    env: Annotated[
        str, typer.Option(help="Python on the host: auto, host (its own) or uv (build venv/).")
    ] = "auto",
    stop: Annotated[
        str | None, typer.Option("--stop", help="First stop this run on the host.")
    ] = None,
    follow: Annotated[bool, typer.Option(help="Then follow the run until it ends.")] = False,
    gpus: Annotated[
        int,
        typer.Option(
            help="Train under torchrun (DistributedDataParallel) with N processes, one per "
            "GPU; on a host without GPUs, N CPU processes (gloo). 0: one plain process."
        ),
    ] = 0,
    max_restarts: Annotated[
        int,
        typer.Option(
            help="With --gpus: when a rank dies, restart every rank from the last checkpoint "
            "up to this many times (torchrun's elastic restart)."
        ),
    ] = 0,
    nodes: Annotated[
        int,
        typer.Option(
            help="Machines in one torchrun job. With an EC2 host: launch this many tagged "
            "instances in one placement group, reachable by each other only. Or name the "
            "machines: --host a,b (SSH hosts)."
        ),
    ] = 1,
    rdzv_port: Annotated[
        int, typer.Option(help="With several nodes: the first node's rendezvous port.")
    ] = 29400,
    recover: Annotated[
        int | None,
        typer.Option(
            help="EC2 hosts with storage: when the run's instance is lost (spot "
            "interruption, max_hours shutdown, a dead machine), launch a new one and resume "
            "there, up to N times; checked by the next `runs`, `monitor` or dashboard "
            "refresh. Default: the profile's recover."
        ),
    ] = None,
    sweep: Annotated[
        Path | None,
        typer.Option(
            help="Send an experiment instead of one run: a sweep TOML file "
            "(docs/experiments.md), checked on the host, then run there by "
            "`python -m trainers sweep` detached. --data/--remote-data replace its data."
        ),
    ] = None,
) -> None:
    """Ship the code (and data), prepare Python, start MODEL (or a --sweep) detached on a host.

    The run survives this console disconnecting or being killed. Prints the run id
    and how to watch it.

    Example: emoconsole deploy hybrid-attention --host gpu1 --data demo-data/ravdess
    Example: emoconsole deploy slowfast-r50 --host gpu4 --remote-data /data/ravdess --gpus 4
    Example: emoconsole deploy slowfast-r50 --host aws --nodes 2 --gpus 1 --data demo-data/ravdess
    Example: emoconsole deploy --sweep sweep.toml --host gpu1 --data demo-data/ravdess
    """
    if sweep is not None:
        _deploy_sweep(sweep, model, host, data, remote_data, overrides, run_id, env,
                      stop, gpus, max_restarts, nodes, recover)  # fmt: skip
        return
    if model is None:
        typer.secho("error: give a MODEL, or an experiment with --sweep FILE", fg="red", err=True)
        raise typer.Exit(2)
    from remote.deploy import Launch, RequestError
    from remote.start import RunRequest, start_run

    request = RunRequest(
        model=model,
        host=host,
        local_data=data,
        host_data=remote_data,
        overrides=tuple(overrides or ()),
        run_id=run_id,
        env=env,
        stop_first=stop,
        gpus=gpus,
        max_restarts=max_restarts,
        nodes=nodes,
        rdzv_port=rdzv_port,
        recover=recover,
    )
    with known_errors():
        try:
            started = start_run(request, progress=lambda msg: typer.echo(f"  {msg}", err=True))
        except RequestError as exc:  # the options contradict themselves: a usage error
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
    run = started.run_id
    typer.echo(run)
    if isinstance(started, Launch):
        typer.echo(
            f"watch it with: emoconsole monitor {run}   "
            f"(stop: emoconsole stop {run}; files: emoconsole download {run})",
            err=True,
        )
        if follow:
            monitor(run, host=host)
        return
    first = started.nodes[started.primary or 0]
    typer.echo(
        f"{len(started.nodes)} nodes x {gpus} processes, rendezvous {started.rdzv_endpoint}; "
        f"rank 0 writes the run on {first.host}: emoconsole monitor {run}",
        err=True,
    )


def _deploy_sweep(
    sweep: Path,
    model: str | None,
    host: str,
    data: Path | None,
    remote_data: str | None,
    overrides: list[str] | None,
    exp_id: str | None,
    env: str,
    *single_run_options: Any,
) -> None:
    """``deploy --sweep``: remote.experiment, then the experiment's runs and how to see them."""
    from remote.deploy import DeployError, RequestError
    from remote.experiment import start_sweep

    stop, gpus, max_restarts, nodes, recover = single_run_options
    clash = [name for name, value, default in (
        ("MODEL", model, None), ("--stop", stop, None), ("--gpus", gpus, 0),
        ("--max-restarts", max_restarts, 0), ("--nodes", nodes, 1), ("--recover", recover, None),
    ) if value != default]  # fmt: skip
    if clash:
        typer.secho(
            f"error: {', '.join(clash)} with --sweep: the sweep file names the model, and an "
            "experiment runs its runs one at a time in one process on one host",
            fg="red", err=True,
        )  # fmt: skip
        raise typer.Exit(2)
    with known_errors():
        try:
            launch = start_sweep(
                host,
                sweep,
                local_data=data,
                host_data=remote_data,
                overrides=list(overrides or []),
                exp_id=exp_id,
                env=env,
                progress=lambda msg: typer.echo(f"  {msg}", err=True),
            )
        except DeployError as exc:
            if not isinstance(exc, RequestError) and exc.field != "sweep":
                raise
            typer.secho(f"error: {exc}", fg="red", err=True)  # the request's fault: usage
            raise typer.Exit(2) from None
    typer.echo(launch.exp_id)
    first = launch.runs[0] if launch.runs else launch.exp_id
    typer.echo(
        f"its runs: {', '.join(launch.runs)}\nsee them with: emoconsole runs --host {host}   "
        f"(watch one: emoconsole monitor {first}; stop the experiment: emoconsole stop "
        f"{launch.exp_id})",
        err=True,
    )


def _nodes_of(run: str) -> list[dict[str, Any]] | None:
    from remote import ledger

    row = ledger.lookup(run)
    return row.get("nodes") if row and isinstance(row.get("nodes"), list) else None


def _monitor_nodes(run: str, nodes: list[dict[str, Any]], interval: float, lines: int) -> None:
    """A multi-node job: the primary node's stream with every node's system line."""

    from emoconsole.monitor_view import MonitorState
    from remote.deploy import Launch
    from remote.hosts import get_host
    from remote.nodes import NodesLaunch, follow_nodes, primary_node

    targets = [get_host(n["host"]) for n in nodes]
    job = NodesLaunch(
        run_id=run,
        nodes=[
            Launch(
                run_id=run,
                host=n["host"],
                run_dir=n["run_dir"],
                pid=n.get("pid"),
                launched=True,
                code_dir="",
                python="",
            )
            for n in nodes
        ],
        rdzv_endpoint="",
    )
    state = MonitorState(run=run, host=",".join(n["host"] for n in nodes), log_lines=lines)
    try:
        primary = primary_node(targets, job)
        _show_live(state, follow_nodes(targets, job, primary, interval=interval))
    finally:
        for target in targets:
            target.close()


def runs(
    host: HostOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON list instead of a table.")
    ] = False,
) -> None:
    """List runs on a host (every configured host with no --host): status, epoch, best."""
    import json

    from remote.config import load_hosts
    from remote.deploy import list_runs
    from remote.hosts import get_host

    managed = check_recoveries()
    names = [host] if host else list(load_hosts())
    rows: list[dict[str, Any]] = []
    for name in names:
        with known_errors():
            target = get_host(name)
            try:
                for row in list_runs(target):
                    rows.append({"host": name, **row})
            except Exception as exc:  # one unreachable host must not hide the others
                if host:
                    raise
                typer.secho(f"{name}: {exc}", fg="yellow", err=True)
            finally:
                target.close()
    for row in rows:
        run_state = managed.get(row["id"])
        if run_state is not None:
            row["recoveries"] = run_state.recoveries
            row["recover"] = run_state.recover
    if as_json:
        typer.echo(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    headers = ["id", "host", "model", "status", "epoch", "best"]
    cells = [
        [
            row["id"],
            row["host"],
            row["model"] or "?",
            status_text(row)
            + (f" ({row['recoveries']}/{row['recover']} recovered)" if "recover" in row else ""),
            f"{row['epoch'] or '-'}/{row['epochs'] or '-'}",
            f"{row['best']:.4f} {row['monitor']}" if row.get("best") is not None else "-",
        ]
        for row in rows
    ]
    console = Console()
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    table = Table(box=None, pad_edge=False)
    for header, width in zip(headers, _fit(widths, console.width), strict=True):
        table.add_column(header, no_wrap=True, overflow="ellipsis", max_width=width)
    for c in cells:
        table.add_row(*c)
    console.print(table)


def status_text(row: dict[str, Any]) -> str:
    """A listed run's status; a run waiting in its host's queue says its place (1: next)."""
    status = row.get("status") or "?"
    return f"{status} (place {row['place']})" if row.get("place") else status


def check_recoveries(only: str | None = None) -> dict[str, Any]:
    """Recover managed runs whose instance is gone (remote.recovery); their states by id.

    Nothing is asked of AWS (nor boto3 imported) unless a managed run is still watched."""
    from remote.recovery import check_managed

    states = check_managed(lambda msg: typer.echo(msg, err=True), only=only)
    return {run.run_id: run for run in states}


def _fit(widths: list[int], room: int) -> list[int]:
    """Column widths of the runs table within ``room`` (two spaces between columns).

    The id (column 0) is what a user copies into monitor/stop/download: never cut.
    The model gives way first, then the best metric's name (its value stays), the
    host and the status; on a terminal narrower still, every other column.
    """
    widths = list(widths)
    excess = sum(widths) + 2 * (len(widths) - 1) - room
    cuts = ((2, 5), (5, 7), (1, 5), (3, 7))  # "hybr…", "0.6123…", "local", "complet…"
    for column, least in (*cuts, (5, 2), (1, 2), (3, 2), (2, 2), (4, 2)):
        if excess <= 0:
            break
        cut = min(excess, max(0, widths[column] - least))
        widths[column] -= cut
        excess -= cut
    return widths


def stop(
    run: Annotated[str, typer.Argument(help=RUN_HELP)],
    host: HostOpt = None,
    grace: Annotated[
        float, typer.Option(help="Seconds to wait after SIGTERM before SIGKILL.")
    ] = 60.0,
) -> None:
    """Stop a run: SIGTERM (it saves a checkpoint and its status), SIGKILL after --grace.

    Continue it later with: python -m trainers resume RUN_DIR (on its host).
    """
    from remote.deploy import stop_run
    from remote.hosts import get_host

    name, run_ref, settled = host_for(run, host)
    with known_errors():
        target = get_host(name)
        try:
            run = run_ref = resolve_run(target, name, run_ref, settled)
            answer = stop_run(target, run_ref, grace=grace)
        finally:
            target.close()
    if answer.get("was_queued"):
        typer.echo(f"{run} on {name}: removed from the queue; it never started")
        return
    if not answer.get("was_running"):
        typer.echo(f"{run} on {name} was not running (status: {answer.get('status')})")
        return
    how = "stopped" if answer.get("signal") == "TERM" else "killed after the grace period"
    typer.echo(f"{run} on {name}: {how}; status {answer.get('status')}")
    if answer.get("last_ckpt"):
        typer.echo(f"resume with: python -m trainers resume {answer['run']}  (on {name})")


def monitor(
    run: Annotated[str, typer.Argument(help=RUN_HELP)],
    host: HostOpt = None,
    interval: Annotated[float, typer.Option(help="Seconds between system samples.")] = 2.0,
    log_lines: Annotated[int, typer.Option(help="Log lines kept on screen.")] = 12,
) -> None:
    """Follow a run headless: status, epoch progress, ETA, metrics, system, log tail.

    Survives dropped connections (it reconnects and resumes). Ctrl-C leaves the run alone.
    """

    from emoconsole.monitor_view import MonitorState
    from remote.hosts import get_host
    from remote.layout import resolve_layout
    from remote.watch import follow

    name, run_ref, settled = host_for(run, host)
    check_recoveries(only=run_ref)
    nodes = _nodes_of(run_ref) if host is None else None
    if nodes:
        with known_errors():
            _monitor_nodes(run_ref, nodes, interval, log_lines)
        return
    with known_errors():
        target = get_host(name)
        try:
            # Before anything is drawn: a run the host does not have is one line, exit 1.
            run_ref = resolve_run(target, name, run_ref, settled)
            _wait_in_queue(target, name, run_ref, interval)
            run_dir = resolve_layout(target).run_dir(run_ref)
            state = MonitorState(run=run_ref, host=name, log_lines=log_lines)
            _show_live(state, follow(target, run_dir, interval=interval))
        finally:
            target.close()


def _wait_in_queue(target: Any, name: str, run: str, interval: float) -> None:
    """While the run waits in its host's queue: say its place as it changes, return
    once it started; exit 1 if it left the queue without starting (stopped)."""
    from remote.queue_wait import LeftQueueError, queue_places

    waited = False
    try:
        for place in queue_places(target, run, interval=interval):
            waited = True
            typer.echo(f"{run}: queued on {name}, place {place}; waiting for a slot", err=True)
    except LeftQueueError:
        fail(f"{run} left the queue on {name} without starting (stopped?)", LIST_RUNS_HINT)
    if waited:
        typer.echo(f"{run} started on {name}", err=True)


def _show_live(state: Any, items: Any) -> None:
    """Render a run's stream live until it ends; exit 1 if it failed, 130 on Ctrl-C.
    An ending seen live rings the bell and shows a desktop notification (emoconsole.notify)."""
    from rich.live import Live

    from emoconsole.notify import StreamEnding, announce, describe_ending

    ending = StreamEnding()
    # The terminal itself: inside Live, sys.stdout is rich's proxy, which drops a BEL.
    terminal = sys.stdout

    def bell() -> None:
        terminal.write("\a")
        terminal.flush()

    try:
        with Live(state.render(), refresh_per_second=4, transient=False) as live:
            last = 0.0

            for item in items:
                state.add(item)
                sample = getattr(item, "sample", None)
                alive = sample.get("alive") if isinstance(sample, dict) else None
                if ending.observe(alive, state.status):
                    best = {"best": state.best, "monitor": state.monitor_metric}
                    announce(describe_ending(state.run, state.host, state.status, best), bell)
                now = time.monotonic()
                if now - last > 0.25:
                    live.update(state.render())
                    last = now
            live.update(state.render())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if state.status in ("failed", "crashed"):
        raise typer.Exit(1)
