"""``emoconsole hosts ...`` and ``emoconsole watch``: thin commands over ``remote``.

Parse, call the library, print. Known errors (every ``RemoteError``) exit 1
with one line and a hint, never a traceback. paramiko is imported only by the
commands that talk SSH, through ``remote.ssh``; listing hosts or watching a
local run never loads it.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from emoconsole.runref import host_for, known_errors, resolve_run

if TYPE_CHECKING:
    from remote.watch import ConnectionItem

hosts_app = typer.Typer(
    help="The machines runs go to: this one (local), SSH hosts and EC2 profiles from hosts.toml.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help, as the top-level app (see emoconsole.cli)
)


@hosts_app.command("list")
def list_hosts() -> None:
    """List the configured hosts and where each is defined."""
    from remote.config import load_hosts, user_config_path

    with known_errors():
        hosts = load_hosts()
    width = max(len(name) for name in hosts)
    for name, cfg in hosts.items():
        extras = [f"python={cfg.python}"] if cfg.python else []
        extras += [f"workdir={cfg.workdir}"] if cfg.workdir else []
        line = f"{name:<{width}}  {cfg.describe()}"
        if extras:
            line += "  " + " ".join(extras)
        typer.echo(f"{line}  ({cfg.source})")
    if len(hosts) == 1:
        typer.echo(f"(define more in {user_config_path()} as [hosts.NAME] tables)")


@hosts_app.command("check")
def check_host(
    name: Annotated[str, typer.Argument(help="A host from `emoconsole hosts list`.")],
) -> None:
    """Connect and run the host's python: shows an unknown host key's fingerprint
    (to verify out of band, then `hosts trust`) or confirms the host is usable."""
    from remote.hosts import get_host

    with known_errors():
        host = get_host(name)
        try:
            result = host.run(
                [host.python, "-c", "import sys; print(sys.version.split()[0])"],
                timeout=60,
                check=True,
            )
        finally:
            host.close()
    typer.echo(f"{name}: ok, python {result.stdout.strip()} ({host.python})")


@hosts_app.command("trust")
def trust_host(
    name: Annotated[
        str, typer.Argument(help="A host from `emoconsole hosts list`, or an ssh alias.")
    ],
    fingerprint: Annotated[
        str,
        typer.Option(
            "--fingerprint",
            help="The SHA256:... fingerprint you checked out of band "
            "(e.g. `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host).",
        ),
    ],
) -> None:
    """Trust a host's key, if it is the one with this fingerprint.

    The key is recorded in emoconsole's own known_hosts (~/.ssh is never written).
    """
    from remote.config import known_hosts_path
    from remote.hosts import trust_host_key

    with known_errors():
        host, key = trust_host_key(name, fingerprint)
        where = host.resolve().host_key_name
    typer.echo(f"trusted {key.get_name()} {key.fingerprint} for {where} (in {known_hosts_path()})")


def watch(
    run_dir: Annotated[
        str,
        typer.Argument(
            help="A run id (or a unique prefix of one), or the run directory as a path on the host."
        ),
    ],
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="A host from `emoconsole hosts list` (default: the run's, if this console "
            "deployed it, else local).",
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option(help="Seconds between system samples and heartbeats.")
    ] = 2.0,
    after_seq: Annotated[int, typer.Option(help="Show only events after this seq.")] = 0,
    log: Annotated[bool, typer.Option(help="Show train.log as it grows.")] = True,
    system: Annotated[bool, typer.Option("--sys", help="Show system samples.")] = False,
) -> None:
    """Follow a run live: events, its log, connection drops; ends with the run.

    Exits 0 when the run completed, was stopped or preempted, 1 when it failed or crashed.
    """
    from emoconsole.monitor_view import system_line
    from remote.hosts import get_host
    from remote.layout import is_this_checkout, resolve_layout
    from remote.watch import (
        ConnectionItem,
        CrashedItem,
        EventItem,
        LogItem,
        SysItem,
        follow,
    )
    from trainers.events import RunStatus

    status: RunStatus | None = None
    name, run_ref, settled = host_for(run_dir, host)
    with known_errors():
        target = get_host(name)
        try:
            if not settled and is_this_checkout(target) and os.path.isdir(run_ref):
                run_dir = run_ref  # a directory here, named relative to the cwd
            else:
                run_ref = resolve_run(target, name, run_ref, settled)
                run_dir = resolve_layout(target).run_dir(run_ref)
            for item in follow(target, run_dir, after_seq=after_seq, interval=interval):
                if isinstance(item, EventItem):
                    typer.echo(_format_event(item.event))
                    status = item.status or status
                elif isinstance(item, LogItem) and log:
                    sys.stdout.write(item.text)
                    sys.stdout.flush()
                elif isinstance(item, SysItem) and system:
                    typer.echo(system_line(item.sample))
                elif isinstance(item, ConnectionItem):
                    typer.secho(_format_connection(item, name), fg=typer.colors.YELLOW, err=True)
                elif isinstance(item, CrashedItem):
                    status = item.status
                    typer.secho("run crashed; its last log lines:", fg=typer.colors.RED, err=True)
                    for line in item.last_log:
                        typer.echo(f"  {line}", err=True)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        finally:
            target.close()
    if status in (RunStatus.FAILED, RunStatus.CRASHED):
        raise typer.Exit(1)


def _format_event(event: dict) -> str:
    skip = {"seq", "type", "time", "per_class", "confusion", "traceback"}
    fields = " ".join(f"{k}={_short(v)}" for k, v in event.items() if k not in skip)
    return f"[{event.get('seq')}] {event.get('type')} {fields}".rstrip()


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _format_connection(item: ConnectionItem, host: str) -> str:
    if item.state == "lost":  # the reason in a few words; item.detail has the command
        return f"connection to {host} lost ({item.reason}); reconnecting"
    if item.state == "retrying":
        return f"reconnecting in {item.delay:.1f} s (attempt {item.attempt})"
    return f"connection restored (attempt {item.attempt}); resuming where it stopped"
