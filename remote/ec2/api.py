"""The EC2 API as this package uses it: tags, errors by what to do next, clients, instances.

Every call to AWS goes through :func:`aws_errors`, which turns botocore's
exceptions into :class:`Ec2Error` and its kin; :func:`is_managed` is the tag
check that every listing, stop and terminate repeats in code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from remote.config import Ec2Profile
from remote.errors import ConfigError, RemoteError, TransportError

MANAGED_TAG = "emoconsole:managed"
PROFILE_TAG = "emoconsole:profile"
LAUNCH_TAG = "emoconsole:launch"  # one launch's token: what undo finds its instance by
MAX_HOURS_TAG = "emoconsole:max-hours"

LIVE_STATES = ("pending", "running", "stopping", "stopped")
ALL_STATES = (*LIVE_STATES, "shutting-down", "terminated")
CALLER_IP_ENV = "EMOCONSOLE_CALLER_IP"
CALLER_IP_URL = "https://checkip.amazonaws.com"
PER_BOOT_SCRIPT = "/var/lib/cloud/scripts/per-boot/emoconsole-max-lifetime.sh"

# Waiters: EC2 takes tens of seconds to start or end an instance.
WAIT_DELAY_S = 5
WAIT_MAX_ATTEMPTS = 120
SG_DELETE_ATTEMPTS = 24  # DependencyViolation while a terminated instance's ENI detaches

Progress = Callable[[str], None]


# -- errors -----------------------------------------------------------------------------------


class Ec2Error(RemoteError):
    """EC2 refused or failed a request; ``code`` is AWS's error code when it gave one."""

    def __init__(self, message: str, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        if hint:
            self.hint = hint


class Ec2TransportError(TransportError):
    """The EC2 endpoint could not be reached: worth retrying, like a dropped SSH link."""


class NoInstanceError(Ec2Error):
    """No running instance for a profile: using a host never launches one."""


class NotManagedError(Ec2Error):
    """The resource lacks the emoconsole tag: the tool did not create it and won't touch it."""


class LaunchError(Ec2Error):
    """A launch failed; what it had created was removed (``removed``), except ``left``."""

    def __init__(self, message: str, removed: list[str], left: list[str]) -> None:
        self.removed = removed
        self.left = left
        parts = [message]
        if removed:
            parts.append("removed what it created: " + ", ".join(removed))
        if left:
            parts.append("COULD NOT REMOVE: " + ", ".join(left))
        hint = f"remove the rest by hand; it is tagged {MANAGED_TAG}=true" if left else None
        super().__init__("; ".join(parts), hint=hint)


@contextlib.contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """botocore's exceptions as this package's, by what the caller should do.

    Messages carry AWS's error code and text only; nothing here can hold a
    credential (botocore's messages never include the secret key)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
        WaiterError,
    )
    from botocore.parsers import ResponseParserError

    try:
        yield
    except RemoteError:
        raise
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise Ec2Error(
            f"{doing}: no usable AWS credentials ({type(exc).__name__})",
            hint="configure them the usual way: `aws configure`, AWS_PROFILE, "
            "or aws_profile = ... in the EC2 profile",
        ) from exc
    except (
        EndpointConnectionError,
        ConnectTimeoutError,
        ReadTimeoutError,
        ConnectionClosedError,
    ) as exc:
        raise Ec2TransportError(f"{doing}: {exc}") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "Error")
        raise Ec2Error(f"{doing}: {code}: {error.get('Message', '')}".rstrip(": "), code) from exc
    except WaiterError as exc:
        raise Ec2Error(f"{doing}: {exc}") from exc
    except BotoCoreError as exc:
        raise Ec2Error(f"{doing}: {exc}") from exc
    except ResponseParserError as exc:  # e.g. an endpoint's HTML error page (a 500)
        raise Ec2Error(f"{doing}: the EC2 endpoint's answer is not EC2's: {exc}") from exc


# -- clients and instances --------------------------------------------------------------------


_LOADER: list[Any] = []  # botocore's model loader, shared: parsing EC2's model costs ~0.3 s


def ec2_client(
    region: str | None = None, endpoint_url: str | None = None, aws_profile: str | None = None
) -> Any:
    """A boto3 EC2 client; credentials come from boto3's own chain, never from here.

    A fresh session each time, so credentials are always looked up anew (a
    long-running console sees rotated ones); only the parsed API model is shared."""
    return aws_client("ec2", region, endpoint_url, aws_profile)


def aws_client(
    service: str,
    region: str | None = None,
    endpoint_url: str | None = None,
    aws_profile: str | None = None,
) -> Any:
    """A boto3 client for ``service`` ("ec2", "iam"), made as :func:`ec2_client` says."""
    import boto3
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import ProfileNotFound
    from botocore.loaders import create_loader

    if not _LOADER:
        _LOADER.append(create_loader())
    core = botocore.session.get_session()
    core.register_component("data_loader", _LOADER[0])
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra="emoconsole",
    )
    try:
        session = boto3.session.Session(
            botocore_session=core, profile_name=aws_profile, region_name=region
        )
        if not session.region_name:
            raise ConfigError(
                "no AWS region: set region = ... in the EC2 profile, or AWS_DEFAULT_REGION"
            )
        return session.client(service, endpoint_url=endpoint_url, config=config)
    except ProfileNotFound as exc:
        raise ConfigError(f"AWS profile {aws_profile!r} is not configured ({exc})") from exc


def profile_client(profile: Ec2Profile) -> Any:
    return ec2_client(profile.region, profile.endpoint_url, profile.aws_profile)


def tag_dict(raw: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in raw.get("Tags") or []}


def is_managed(tags: dict[str, str]) -> bool:
    """The one test of "emoconsole created this"; nothing without it is ever changed."""
    return tags.get(MANAGED_TAG) == "true"


@dataclass
class Instance:
    id: str
    state: str
    instance_type: str
    region: str
    profile: str | None = None
    availability_zone: str | None = None
    launch_time: datetime | None = None
    public_ip: str | None = None
    public_dns: str | None = None
    spot: bool = False
    max_hours: float | None = None
    security_groups: list[str] = field(default_factory=list)
    key_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, raw: dict[str, Any], region: str) -> Instance:
        tags = tag_dict(raw)
        try:
            max_hours = float(tags[MAX_HOURS_TAG]) if MAX_HOURS_TAG in tags else None
        except ValueError:
            max_hours = None
        return cls(
            id=raw["InstanceId"],
            state=raw["State"]["Name"],
            instance_type=raw.get("InstanceType", "?"),
            region=region,
            profile=tags.get(PROFILE_TAG),
            availability_zone=(raw.get("Placement") or {}).get("AvailabilityZone"),
            launch_time=raw.get("LaunchTime"),
            public_ip=raw.get("PublicIpAddress") or None,
            public_dns=raw.get("PublicDnsName") or None,
            spot=raw.get("InstanceLifecycle") == "spot",
            max_hours=max_hours,
            security_groups=[g["GroupId"] for g in raw.get("SecurityGroups") or []],
            key_name=raw.get("KeyName"),
            tags=tags,
        )

    @property
    def managed(self) -> bool:
        return is_managed(self.tags)

    def uptime(self, now: datetime | None = None) -> timedelta | None:
        """Since the last start (EC2's LaunchTime moves on each start); None unless up."""
        if self.state not in ("pending", "running") or self.launch_time is None:
            return None
        return max(timedelta(0), (now or datetime.now(UTC)) - self.launch_time)

    def shutdown_due(self) -> datetime | None:
        """When the instance's own timer ends it (max lifetime counts from each boot)."""
        if self.state not in ("pending", "running") or not self.launch_time or not self.max_hours:
            return None
        return self.launch_time + timedelta(hours=self.max_hours)


def describe_all(client: Any, **kwargs: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for page in client.get_paginator("describe_instances").paginate(**kwargs):
        for reservation in page.get("Reservations", []):
            rows.extend(reservation.get("Instances", []))
    return rows


def find_instances(
    client: Any, *, profile: str | None = None, states: tuple[str, ...] = LIVE_STATES
) -> list[Instance]:
    """Tagged instances (of ``profile`` when given), newest first."""
    filters = [
        {"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]},
        {"Name": "instance-state-name", "Values": list(states)},
    ]
    if profile is not None:
        filters.append({"Name": f"tag:{PROFILE_TAG}", "Values": [profile]})
    with aws_errors("listing instances"):
        rows = describe_all(client, Filters=filters)
    region = client.meta.region_name
    found = [Instance.from_api(raw, region) for raw in rows]
    # The filter is EC2's; the decision is ours: check the tag again.
    found = [i for i in found if i.managed and (profile is None or i.profile == profile)]
    found.sort(key=lambda i: i.launch_time or datetime.min.replace(tzinfo=UTC), reverse=True)
    return found


def describe_instance(client: Any, instance_id: str) -> Instance | None:
    """Any instance by id, tagged or not (None if this region has no such id)."""
    try:
        with aws_errors(f"describing {instance_id}"):
            rows = describe_all(client, InstanceIds=[instance_id])
    except Ec2Error as exc:
        if exc.code in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
            return None
        raise
    return Instance.from_api(rows[0], client.meta.region_name) if rows else None


def running_instance(client: Any, profile: Ec2Profile) -> Instance:
    """The profile's running instance, or an error that says how to get one."""
    live = find_instances(client, profile=profile.name)
    running = [i for i in live if i.state == "running"]
    if running:
        return running[0]
    launch = f"emoconsole hosts launch {profile.name}"
    if live:
        inst = live[0]
        raise NoInstanceError(
            f"the instance of profile {profile.name} ({inst.id}) is {inst.state}, not running",
            hint=f"`{launch}` starts it again" if inst.state != "pending" else "wait a moment",
        )
    raise NoInstanceError(f"no running instance for profile {profile.name}: run `{launch}`")
