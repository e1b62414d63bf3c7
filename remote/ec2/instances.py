"""Listing, stopping and terminating tagged instances, never any other."""

from __future__ import annotations

import re
from typing import Any

from remote.config import Ec2Profile, load_ec2_profiles
from remote.ec2.api import (
    ALL_STATES,
    LIVE_STATES,
    MANAGED_TAG,
    Ec2Error,
    Instance,
    NotManagedError,
    Progress,
    aws_errors,
    describe_all,
    describe_instance,
    ec2_client,
    find_instances,
    is_managed,
    profile_client,
    tag_dict,
)
from remote.ec2.launch import delete_security_group, wait_for
from remote.errors import ConfigError

# -- listing, stopping, terminating -----------------------------------------------------------


def _clients(profiles: dict[str, Ec2Profile]) -> list[Any]:
    """One client per (region, endpoint, AWS profile) the configured profiles use;
    the default session's region when there are none."""
    keys = {(p.region, p.endpoint_url, p.aws_profile) for p in profiles.values()}
    return [ec2_client(*key) for key in sorted(keys, key=str)] or [ec2_client()]


def list_instances(
    profiles: dict[str, Ec2Profile] | None = None, *, include_ended: bool = False
) -> list[tuple[Any, Instance]]:
    """Every tagged instance in the regions the profiles use (never an untagged one)."""
    profiles = load_ec2_profiles() if profiles is None else profiles
    states = ALL_STATES if include_ended else LIVE_STATES
    return [(c, i) for c in _clients(profiles) for i in find_instances(c, states=states)]


_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")


def resolve_targets(
    target: str, profiles: dict[str, Ec2Profile] | None = None
) -> list[tuple[Any, Instance]]:
    """The live instances ``target`` (a profile name or an instance id) means.

    An instance id that lacks the emoconsole tag raises :class:`NotManagedError`:
    the tool did not create it and will not stop or terminate it."""
    profiles = load_ec2_profiles() if profiles is None else profiles
    if target in profiles:
        client = profile_client(profiles[target])
        return [(client, i) for i in find_instances(client, profile=target)]
    if not _INSTANCE_ID.match(target):
        known = ", ".join(sorted(profiles)) or "none configured"
        raise ConfigError(
            f"{target!r} is neither an EC2 profile (known: {known}) nor an instance id (i-...)"
        )
    clients = _clients(profiles)
    for client in clients:
        instance = describe_instance(client, target)
        if instance is None:
            continue
        if not instance.managed:
            raise NotManagedError(
                f"{target} is not tagged {MANAGED_TAG}=true: emoconsole did not create it "
                "and will not stop or terminate it"
            )
        return [(client, instance)] if instance.state in LIVE_STATES else []
    regions = ", ".join(sorted({c.meta.region_name for c in clients}))
    raise Ec2Error(f"no instance {target} in {regions}")


def _checked(targets: list[tuple[Any, Instance]]) -> dict[Any, list[Instance]]:
    by_client: dict[Any, list[Instance]] = {}
    for client, instance in targets:
        if not instance.managed:  # never reached through resolve_targets; kept as the last word
            raise NotManagedError(f"{instance.id} is not tagged {MANAGED_TAG}=true; refusing")
        by_client.setdefault(client, []).append(instance)
    return by_client


def stop(targets: list[tuple[Any, Instance]], *, wait: bool = True) -> list[Instance]:
    """Stop tagged instances (their disks, and the runs on them, stay)."""
    done: list[Instance] = []
    for client, instances in _checked(targets).items():
        ids = [i.id for i in instances]
        with aws_errors(f"stopping {', '.join(ids)}"):
            client.stop_instances(InstanceIds=ids)
        if wait:
            wait_for(client, "instance_stopped", ids, f"waiting for {', '.join(ids)} to stop")
        done += instances
    return done


def terminate(
    targets: list[tuple[Any, Instance]], *, progress: Progress | None = None
) -> list[Instance]:
    """Terminate tagged instances, then delete their tagged security groups once
    nothing live uses them. Key pairs stay (the next launch uses them again)."""
    say = progress or (lambda _msg: None)
    done: list[Instance] = []
    for client, instances in _checked(targets).items():
        ids = [i.id for i in instances]
        say(f"terminating {', '.join(ids)}")
        with aws_errors(f"terminating {', '.join(ids)}"):
            client.terminate_instances(InstanceIds=ids)
        wait_for(client, "instance_terminated", ids, f"waiting for {', '.join(ids)} to terminate")
        groups = sorted({g for i in instances for g in i.security_groups})
        for group_id in groups:
            if _delete_group_if_unused(client, group_id):
                say(f"deleted security group {group_id}")
        done += instances
    return done


def _delete_group_if_unused(client: Any, group_id: str) -> bool:
    try:
        with aws_errors(f"reading {group_id}"):
            group = client.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    except Ec2Error as exc:
        if exc.code == "InvalidGroup.NotFound":
            return False
        raise
    if not is_managed(tag_dict(group)):
        return False
    with aws_errors(f"finding users of {group_id}"):
        users = describe_all(
            client,
            Filters=[
                {"Name": "instance.group-id", "Values": [group_id]},
                {"Name": "instance-state-name", "Values": [*LIVE_STATES, "shutting-down"]},
            ],
        )
    if users:
        return False
    delete_security_group(client, group_id)
    return True
