"""``emoconsole hosts launch|instances|stop|terminate``: EC2 instances of the profiles
in hosts.toml (``[ec2.NAME]`` tables), as thin commands over :mod:`remote.ec2`.

boto3 is imported only inside the commands, so ``emoconsole --help`` stays
light. Nothing here reads or prints a credential: boto3 finds them itself.
Stopping and terminating act only on instances tagged ``emoconsole:managed``;
an instance id without the tag is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emoconsole.runref import known_errors
from remote.errors import ConfigError

if TYPE_CHECKING:
    from remote.ec2.api import Instance

Target = Annotated[
    str, typer.Argument(help="An EC2 profile (all its instances) or one instance id (i-...).")
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _err(message: str) -> None:
    typer.echo(message, err=True)


def launch(
    profile: Annotated[str, typer.Argument(help="An [ec2.NAME] profile from hosts.toml.")],
    wait_ssh: Annotated[
        bool, typer.Option("--wait-ssh/--no-wait-ssh", help="Wait until its sshd answers.")
    ] = True,
    ssh_timeout: Annotated[float, typer.Option(help="Seconds to wait for sshd.")] = 300.0,
) -> None:
    """Launch the profile's instance, or reuse the one it has (starting it if stopped).

    Prints the instance id on stdout. The instance is tagged, lets SSH in from
    this machine's address only, requires IMDSv2 and shuts itself down after
    the profile's max_hours. With storage = "s3://bucket/prefix" in the profile it
    gets an instance profile that may use that prefix only (created or reused;
    needs iam:PassRole). A launch that fails half-way removes what it made.
    """
    from remote.config import load_ec2_profiles, user_config_path
    from remote.ec2.api import profile_client
    from remote.ec2.launch import launch as launch_instance
    from remote.ec2.prices import profile_price

    with known_errors():
        profiles = load_ec2_profiles()
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none configured"
            raise ConfigError(
                f"no EC2 profile named {profile!r} (known: {known}); "
                f"add an [ec2.{profile}] table to {user_config_path()}"
            )
        cfg = profiles[profile]
        client = profile_client(cfg)
        _err(f"{cfg.describe()}: {profile_price(client, cfg)}")
        try:
            result = launch_instance(
                cfg,
                progress=_err,
                ssh_timeout=ssh_timeout if wait_ssh else None,
                client=client,
            )
        except KeyboardInterrupt:
            _err("interrupted; what the launch had created was removed")
            raise typer.Exit(130) from None
    inst = result.instance
    typer.echo(inst.id)
    verb = "reused" if result.reused else "launched"
    due = inst.shutdown_due()
    _err(f"{verb} {inst.id} ({inst.state}) at {inst.public_ip or inst.public_dns}")
    if due is not None:
        when = f"{due:%Y-%m-%d %H:%M} UTC"
        _err(f"it {cfg.on_shutdown}s itself at {when} (max_hours={cfg.max_hours:g})")
    if cfg.storage is not None:
        _err(f"its runs go to {cfg.storage} (credentials: its instance profile, that prefix only)")
    if result.reused:
        return
    _err(
        f"next: `emoconsole hosts check {profile}` shows its host key fingerprint; compare it "
        f"with the console output (aws ec2 get-console-output --instance-id {inst.id}), then "
        f"`emoconsole hosts trust {profile} --fingerprint SHA256:...`"
    )


def instances(
    all_states: Annotated[
        bool, typer.Option("--all", help="Also show shutting-down and terminated instances.")
    ] = False,
) -> None:
    """List emoconsole's EC2 instances: state, uptime and an hourly price estimate.

    Only instances tagged emoconsole:managed=true, in the regions of the
    configured profiles.
    """
    from rich.console import Console
    from rich.table import Table

    from remote.ec2.instances import list_instances
    from remote.ec2.prices import hourly_price

    with known_errors():
        rows = list_instances(include_ended=all_states)
        prices = [
            hourly_price(client, inst) if inst.state in ("pending", "running") else None
            for client, inst in rows
        ]
    if not rows:
        typer.echo("no emoconsole instances" + ("" if all_states else " (--all shows ended ones)"))
        return
    table = Table(
        "instance", "profile", "state", "type", "market", "uptime", "price", "shuts down",
        "address", box=None,
    )  # fmt: skip
    now = datetime.now(UTC)
    for (_, inst), price in zip(rows, prices, strict=True):
        due = inst.shutdown_due()
        table.add_row(
            inst.id,
            inst.profile or "-",
            inst.state,
            inst.instance_type,
            "spot" if inst.spot else "on-demand",
            _duration(inst.uptime(now)),
            price.short if price else "-",
            f"in {_duration(due - now)}" if due else "-",
            inst.public_ip or "-",
        )
    Console(width=200).print(table)
    bases = sorted({p.basis for p in prices if p is not None})
    if bases:
        typer.echo("prices are estimates (disks extra): " + "; ".join(bases))


def _duration(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    minutes = max(0, int(delta.total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def _confirm(verb: str, targets: list[tuple[Any, Instance]], yes: bool) -> None:
    for _, inst in targets:
        _err(f"{verb}: {inst.id} ({inst.profile}, {inst.instance_type}, {inst.state})")
    if not yes and not typer.confirm(f"{verb} {len(targets)} instance(s)?", err=True):
        raise typer.Exit(1)


def terminate(target: Target, yes: Yes = False) -> None:
    """Terminate a profile's instances, or one instance.

    Its disk and any run not downloaded are gone. The security group goes too;
    the key pair stays for the next launch."""
    from remote.ec2.instances import resolve_targets
    from remote.ec2.instances import terminate as terminate_instances

    with known_errors():
        targets = resolve_targets(target)
        if not targets:
            _err(f"nothing to terminate for {target}")
            return
        _confirm("terminate", targets, yes)
        done = terminate_instances(targets, progress=_err)
    for inst in done:
        typer.echo(f"terminated {inst.id}")
    _release_managed({inst.id for inst in done}, "terminated", "terminate")


def _release_managed(instance_ids: set[str], done: str, command: str) -> None:
    """Managed runs on instances the user ended are not recovered: ending an
    instance by hand is not an interruption."""
    from remote.recovery import release

    why = f"its instance was {done} by `emoconsole hosts {command}`"
    for run in release(instance_ids, why):
        _err(f"{run.run_id}: no longer recovered ({run.note})")


def stop(target: Target, yes: Yes = False) -> None:
    """Stop a profile's instances, or one instance.

    The disk and its runs stay; `hosts launch` starts it again. Spot instances
    cannot stop (terminate them)."""
    from remote.ec2.instances import resolve_targets
    from remote.ec2.instances import stop as stop_instances

    with known_errors():
        targets = resolve_targets(target)
        if not targets:
            _err(f"nothing to stop for {target}")
            return
        _confirm("stop", targets, yes)
        done = stop_instances(targets)
    for inst in done:
        typer.echo(f"stopped {inst.id}")
    _release_managed({inst.id for inst in done}, "stopped", "stop")


def register(hosts_app: typer.Typer) -> None:
    """Add the EC2 commands to the ``hosts`` sub-app."""
    hosts_app.command("launch")(launch)
    hosts_app.command("instances")(instances)
    hosts_app.command("stop")(stop)
    hosts_app.command("terminate")(terminate)
