"""EC2 hosts: launch or reuse a tagged instance for a profile, then reach it over SSH.

A profile is an ``[ec2.NAME]`` table (:class:`remote.config.Ec2Profile`). Once
its instance runs, the host ``NAME`` is an :class:`Ec2Host`: an
:class:`~remote.ssh.SSHHost` whose address is looked up from the running tagged
instance each time it connects, so ``deploy``, ``watch`` and ``download`` work
on it unchanged. Using the host never launches anything (that costs money and
is ``emoconsole hosts launch NAME``, said in the error when nothing runs).

The safety rules, and where each is enforced:

- **Tags.** Every instance, root volume, security group and key pair created
  here carries ``emoconsole:managed=true`` and ``emoconsole:profile=NAME``.
  Listing, stopping and terminating ask EC2 for tagged resources only *and*
  check the tag again in code (:func:`is_managed`) before acting, so an
  instance without it is never touched, whatever its name.
- **Ingress.** The security group has exactly one inbound rule: TCP 22 from
  the caller's address (``/32``; ``/128`` for IPv6). A later launch from
  another address replaces the rule rather than adding one.
- **No credentials on the instance.** No instance profile is attached,
  IMDSv2 is required (hop limit 1), user data holds only the shutdown timer,
  and nothing here reads, passes or prints the caller's credentials: boto3
  finds them itself. (The on-host launcher also scrubs ``AWS_*`` from a run's
  environment: :mod:`remote.onhost.hostctl`.)
- **Max lifetime on the instance itself.** User data runs ``shutdown -h
  +MINUTES`` now and installs the same line as a cloud-init per-boot script,
  so a restarted instance is timed again. ``InstanceInitiatedShutdownBehavior``
  (the profile's ``on_shutdown``) makes that shutdown a stop or a terminate.
  A forgotten instance ends even if no console is running.
- **Key pairs.** A key pair the tool creates is an ed25519 key generated
  here; the private half is written with mode 0600 from its first byte
  (``os.open(..., O_EXCL, 0o600)``) and only the public half is imported.
- **Half-way failures.** Everything a launch creates is registered for undo
  before it is created; the instance is found for undo by the launch's own
  tag, so one whose ``RunInstances`` answer was lost is removed too. The
  error says what was removed and what (if anything) could not be.

This module imports boto3 and paramiko; :mod:`remote.config` (listing hosts)
and the CLI import it only when an EC2 command runs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from remote.config import Ec2Profile, load_ec2_profiles
from remote.errors import ConfigError, RemoteError, TransportError
from remote.ssh import SSHHost, SSHTarget

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

# On-demand Linux list prices in us-east-1 (USD per hour), from
# https://aws.amazon.com/ec2/pricing/on-demand/ as published in 2024. A fallback
# when no better figure is at hand: other regions differ (often by 10-30 %) and
# prices change, so every figure from it is shown as an estimate.
ON_DEMAND_USD_PER_HOUR: dict[str, float] = {
    "t3.medium": 0.0416,
    "t3.large": 0.0832,
    "t3.xlarge": 0.1664,
    "c6i.xlarge": 0.17,
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.4xlarge": 1.204,
    "g4dn.8xlarge": 2.176,
    "g4dn.12xlarge": 3.912,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g5.8xlarge": 2.448,
    "g5.12xlarge": 5.672,
    "g6.xlarge": 0.8048,
    "g6.2xlarge": 0.9776,
    "g6e.xlarge": 1.861,
    "p3.2xlarge": 3.06,
    "p3.8xlarge": 12.24,
}
ON_DEMAND_BASIS = "us-east-1 on-demand list price, 2024 table"

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
def _aws(doing: str) -> Iterator[None]:
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
        return session.client("ec2", endpoint_url=endpoint_url, config=config)
    except ProfileNotFound as exc:
        raise ConfigError(f"AWS profile {aws_profile!r} is not configured ({exc})") from exc


def profile_client(profile: Ec2Profile) -> Any:
    return ec2_client(profile.region, profile.endpoint_url, profile.aws_profile)


def _tags(raw: dict[str, Any]) -> dict[str, str]:
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
        tags = _tags(raw)
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


def _describe(client: Any, **kwargs: Any) -> list[dict[str, Any]]:
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
    with _aws("listing instances"):
        rows = _describe(client, Filters=filters)
    region = client.meta.region_name
    found = [Instance.from_api(raw, region) for raw in rows]
    # The filter is EC2's; the decision is ours: check the tag again.
    found = [i for i in found if i.managed and (profile is None or i.profile == profile)]
    found.sort(key=lambda i: i.launch_time or datetime.min.replace(tzinfo=UTC), reverse=True)
    return found


def describe_instance(client: Any, instance_id: str) -> Instance | None:
    """Any instance by id, tagged or not (None if this region has no such id)."""
    try:
        with _aws(f"describing {instance_id}"):
            rows = _describe(client, InstanceIds=[instance_id])
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


# -- the caller's address, user data, key pairs -----------------------------------------------


def caller_cidr(profile: Ec2Profile, timeout: float = 5.0) -> str:
    """The one address SSH is let in from, as a /32 (or /128) CIDR.

    ``$EMOCONSOLE_CALLER_IP``, else the profile's ``caller_ip``, else AWS's
    checkip service (which needs the internet: set one of the others where
    there is none, or where the address AWS sees is not the one to allow)."""
    value = os.environ.get(CALLER_IP_ENV) or profile.caller_ip
    where = (
        f"${CALLER_IP_ENV}" if os.environ.get(CALLER_IP_ENV) else f"ec2.{profile.name}.caller_ip"
    )
    if not value:
        try:
            with urllib.request.urlopen(CALLER_IP_URL, timeout=timeout) as answer:
                value = answer.read(64).decode("ascii", "replace").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot find this machine's public address ({CALLER_IP_URL}: {exc}); "
                f'set caller_ip = "A.B.C.D" in [ec2.{profile.name}] or ${CALLER_IP_ENV}'
            ) from exc
        where = CALLER_IP_URL
    try:
        net = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        raise ConfigError(f"{where}: {value!r} is not an IP address") from exc
    if net.num_addresses != 1:
        raise ConfigError(
            f"{where}: {value} is a range of {net.num_addresses} addresses; SSH is let in "
            "from one address only"
        )
    if net.network_address.is_unspecified:
        raise ConfigError(f"{where}: {value} is not a usable address")
    return str(net)


def user_data(profile: Ec2Profile) -> str:
    """The instance's boot script: the max-lifetime timer, now and at every later boot.

    Only this goes into user data (which anyone on the instance can read):
    never a credential or a setting of the caller's."""
    minutes = profile.shutdown_minutes
    message = f"emoconsole: max lifetime {profile.max_hours:g} h reached (profile {profile.name})"
    line = f'shutdown -h +{minutes} "{message}"'
    return f"""#!/bin/sh
# emoconsole profile {profile.name}: this instance {profile.on_shutdown}s itself {minutes} min
# after each boot, so it ends even when no console is watching it.
{line}
mkdir -p {os.path.dirname(PER_BOOT_SCRIPT)}
cat > {PER_BOOT_SCRIPT} <<'EOF'
#!/bin/sh
{line}
EOF
chmod 755 {PER_BOOT_SCRIPT}
"""


def generate_key_pair(path: Path, comment: str) -> str:
    """A new ed25519 key: the private half at ``path`` (mode 0600 from its first
    byte; an existing file is never overwritten), the public half at ``path.pub``
    and returned as an OpenSSH line. The private half never leaves this machine."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = f"{public.decode()} {comment}"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(private)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    Path(f"{path}.pub").write_text(line + "\n")
    return line


def public_key_of(path: Path) -> str:
    """The OpenSSH public line of a private key file (or its ``.pub`` beside it)."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
        public = key.public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        return public.decode()
    except (ValueError, TypeError):  # encrypted, or not an OpenSSH/PEM key
        pub = Path(f"{path}.pub")
        if pub.is_file():
            return " ".join(pub.read_text().split()[:2])
        raise ConfigError(
            f"cannot read the public half of {path} (passphrase-protected?); put it in {pub}"
        ) from None


def _same_key(a: str, b: str) -> bool:
    return a.split()[:2] == b.split()[:2]


# -- launching --------------------------------------------------------------------------------


class _Undo:
    """What a launch created, removed in reverse order when the launch fails."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], None]]] = []

    def add(self, what: str, undo: Callable[[], None]) -> None:
        self.steps.append((what, undo))

    def run(self) -> tuple[list[str], list[str]]:
        removed: list[str] = []
        left: list[str] = []
        for what, undo in reversed(self.steps):
            try:
                undo()
                removed.append(what)
            except Exception as exc:  # keep going: remove everything that can be removed
                left.append(f"{what} ({exc})")
        return removed, left


@dataclass
class LaunchResult:
    instance: Instance
    reused: bool
    created: list[str] = field(default_factory=list)


def _tag_spec(resource: str, tags: dict[str, str]) -> dict[str, Any]:
    return {"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


def base_tags(profile: Ec2Profile) -> dict[str, str]:
    return {
        MANAGED_TAG: "true",
        PROFILE_TAG: profile.name,
        "Name": f"emoconsole-{profile.name}",
    }


def _root_device(client: Any, profile: Ec2Profile) -> str:
    """Check the AMI and instance type before creating anything; the AMI's root device."""
    with _aws(f"checking instance type {profile.instance_type}"):
        client.describe_instance_types(InstanceTypes=[profile.instance_type])
    with _aws(f"checking AMI {profile.ami}"):
        images = client.describe_images(ImageIds=[profile.ami]).get("Images", [])
    if not images:
        raise Ec2Error(f"AMI {profile.ami} does not exist in {client.meta.region_name}")
    return images[0].get("RootDeviceName") or "/dev/sda1"


def ensure_key_pair(client: Any, profile: Ec2Profile, undo: _Undo, progress: Progress) -> Path:
    """The key pair the instance will accept, and the local private key for it."""
    name = profile.key_pair_name
    path = profile.key_path
    try:
        with _aws(f"looking up key pair {name}"):
            pairs = client.describe_key_pairs(KeyNames=[name], IncludePublicKey=True)["KeyPairs"]
    except Ec2Error as exc:
        if exc.code != "InvalidKeyPair.NotFound":
            raise
        pairs = []
    if pairs:
        if not path.is_file():
            raise Ec2Error(
                f"key pair {name} exists in {client.meta.region_name} but its private key "
                f"{path} is not on this machine",
                hint=f"set identity_file in [ec2.{profile.name}], or delete the key pair "
                f"(aws ec2 delete-key-pair --key-name {name}) to have a new one made",
            )
        remote_public = pairs[0].get("PublicKey")
        if remote_public and not _same_key(remote_public, public_key_of(path)):
            raise Ec2Error(
                f"key pair {name} in {client.meta.region_name} is not the public half of {path}"
            )
        return path
    if path.is_file():
        public = public_key_of(path)
        progress(f"importing the public half of {path} as key pair {name}")
    else:
        public = generate_key_pair(path, f"emoconsole-{profile.name}")
        undo.add(f"key file {path}", lambda: _remove_key_files(path))
        progress(f"generated key {path} (mode 0600); importing its public half as {name}")
    with _aws(f"importing key pair {name}"):
        client.import_key_pair(
            KeyName=name,
            PublicKeyMaterial=public.encode(),
            TagSpecifications=[_tag_spec("key-pair", base_tags(profile))],
        )
    undo.add(f"key pair {name}", lambda: _delete_key_pair(client, name))
    return path


def _remove_key_files(path: Path) -> None:
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)


def _delete_key_pair(client: Any, name: str) -> None:
    with _aws(f"deleting key pair {name}"):
        client.delete_key_pair(KeyName=name)


def _vpc_id(client: Any, profile: Ec2Profile) -> str:
    if profile.subnet_id:
        with _aws(f"looking up subnet {profile.subnet_id}"):
            subnets = client.describe_subnets(SubnetIds=[profile.subnet_id])["Subnets"]
        return subnets[0]["VpcId"]
    with _aws("looking up the default VPC"):
        vpcs = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise Ec2Error(
            f"{client.meta.region_name} has no default VPC",
            hint=f"set subnet_id = ... (a public subnet) in [ec2.{profile.name}]",
        )
    return vpcs[0]["VpcId"]


def ensure_security_group(
    client: Any, profile: Ec2Profile, cidr: str, undo: _Undo, progress: Progress
) -> str:
    """The profile's tagged security group, letting in SSH from ``cidr`` only."""
    vpc = _vpc_id(client, profile)
    name = f"emoconsole-{profile.name}"
    with _aws(f"looking up security group {name}"):
        groups = client.describe_security_groups(
            Filters=[
                {"Name": "group-name", "Values": [name]},
                {"Name": "vpc-id", "Values": [vpc]},
            ]
        )["SecurityGroups"]
    if groups:
        group = groups[0]
        if not is_managed(_tags(group)):
            raise NotManagedError(
                f"security group {name} ({group['GroupId']}) in {vpc} is not tagged "
                f"{MANAGED_TAG}=true; emoconsole will not use or change it",
                hint="rename or delete that group, or use another profile name",
            )
        group_id = group["GroupId"]
    else:
        with _aws(f"creating security group {name}"):
            group_id = client.create_security_group(
                GroupName=name,
                Description=f"emoconsole {profile.name}: SSH from one address",
                VpcId=vpc,
                TagSpecifications=[_tag_spec("security-group", base_tags(profile))],
            )["GroupId"]
        undo.add(f"security group {group_id}", lambda: delete_security_group(client, group_id))
        progress(f"created security group {group_id} ({name})")
    allow_only(client, group_id, cidr)
    return group_id


def allow_only(client: Any, group_id: str, cidr: str) -> None:
    """Make TCP 22 from ``cidr`` the group's one inbound rule (egress is left open:
    the instance fetches packages)."""
    with _aws(f"reading the rules of {group_id}"):
        rules = client.describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": [group_id]}]
        )["SecurityGroupRules"]
    v6 = ":" in cidr

    def wanted(rule: dict[str, Any]) -> bool:
        source = rule.get("CidrIpv6") if v6 else rule.get("CidrIpv4")
        return (
            rule.get("IpProtocol") == "tcp"
            and rule.get("FromPort") == 22
            and rule.get("ToPort") == 22
            and source == cidr
        )

    inbound = [r for r in rules if not r.get("IsEgress")]
    keep = next((r for r in inbound if wanted(r)), None)
    stale = [r["SecurityGroupRuleId"] for r in inbound if r is not keep]
    if stale:
        with _aws(f"removing old rules from {group_id}"):
            client.revoke_security_group_ingress(GroupId=group_id, SecurityGroupRuleIds=stale)
    if keep is None:
        source = (
            {"Ipv6Ranges": [{"CidrIpv6": cidr, "Description": "emoconsole caller"}]}
            if v6
            else {"IpRanges": [{"CidrIp": cidr, "Description": "emoconsole caller"}]}
        )
        with _aws(f"letting SSH in from {cidr}"):
            client.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, **source}],
            )


def delete_security_group(
    client: Any, group_id: str, attempts: int = SG_DELETE_ATTEMPTS, delay: float = WAIT_DELAY_S
) -> None:
    """Delete a group; retried while a just-terminated instance's interface lets go of it."""
    for attempt in range(attempts):
        try:
            with _aws(f"deleting security group {group_id}"):
                client.delete_security_group(GroupId=group_id)
            return
        except Ec2Error as exc:
            if exc.code == "InvalidGroup.NotFound":
                return
            if exc.code != "DependencyViolation" or attempt == attempts - 1:
                raise
            time.sleep(delay)


def _wait(client: Any, waiter: str, ids: list[str], doing: str) -> None:
    with _aws(doing):
        client.get_waiter(waiter).wait(
            InstanceIds=ids,
            WaiterConfig={"Delay": WAIT_DELAY_S, "MaxAttempts": WAIT_MAX_ATTEMPTS},
        )


def _wait_running(client: Any, instance_id: str) -> None:
    """Until the instance runs; if it ends instead (no spot capacity, a bad AMI),
    say why, in EC2's words."""
    try:
        _wait(client, "instance_running", [instance_id], f"waiting for {instance_id} to run")
    except Ec2Error as exc:
        reason = None
        with contextlib.suppress(Exception):  # the reason is a courtesy; the failure stands
            raw = _describe(client, InstanceIds=[instance_id])[0]
            reason = (raw.get("StateReason") or {}).get("Message")
        if reason:
            raise Ec2Error(f"{instance_id} did not start: {reason}") from exc
        raise


def _terminate_launch(client: Any, token: str) -> None:
    """Terminate whatever instance this launch created, found by its launch tag."""
    with _aws("finding the launch's instance"):
        rows = _describe(
            client,
            Filters=[
                {"Name": f"tag:{LAUNCH_TAG}", "Values": [token]},
                {"Name": "instance-state-name", "Values": [*LIVE_STATES, "shutting-down"]},
            ],
        )
    ids = [r["InstanceId"] for r in rows if is_managed(_tags(r))]
    if not ids:
        return
    with _aws(f"terminating {', '.join(ids)}"):
        client.terminate_instances(InstanceIds=ids)
    _wait(client, "instance_terminated", ids, f"waiting for {', '.join(ids)} to terminate")


def run_params(
    profile: Ec2Profile, root_device: str, key_name: str, group_id: str, token: str
) -> dict[str, Any]:
    """The RunInstances request for a profile (no credentials, no instance profile)."""
    tags = base_tags(profile)
    params: dict[str, Any] = {
        "ImageId": profile.ami,
        "InstanceType": profile.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": key_name,
        "SecurityGroupIds": [group_id],
        "UserData": user_data(profile),
        "InstanceInitiatedShutdownBehavior": profile.on_shutdown,
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 1,
        },
        "BlockDeviceMappings": [
            {
                "DeviceName": root_device,
                "Ebs": {
                    "VolumeSize": profile.disk_gb,
                    "VolumeType": "gp3",
                    "DeleteOnTermination": True,
                    "Encrypted": True,
                },
            }
        ],
        "TagSpecifications": [
            _tag_spec(
                "instance",
                {**tags, LAUNCH_TAG: token, MAX_HOURS_TAG: f"{profile.max_hours:g}"},
            ),
            _tag_spec("volume", tags),
        ],
        # A retried request (botocore retries) with the same token creates no second instance.
        "ClientToken": token,
    }
    if profile.subnet_id:
        params["SubnetId"] = profile.subnet_id
    if profile.availability_zone:
        params["Placement"] = {"AvailabilityZone": profile.availability_zone}
    if profile.spot:
        params["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            },
        }
    return params


def connect_address(profile: Ec2Profile, instance: Instance) -> tuple[str, int | None]:
    """Where SSH goes: the profile's ``address`` override, else the public address."""
    if profile.address:
        return parse_address(profile.address, f"ec2.{profile.name}.address")
    address = instance.public_ip or instance.public_dns
    if not address:
        raise Ec2Error(
            f"instance {instance.id} has no public address",
            hint="use a subnet that assigns public addresses, or set address = ... "
            "(e.g. a tunnel) in the profile",
        )
    return address, None


def parse_address(text: str, where: str) -> tuple[str, int | None]:
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        port_text = ""
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"{where}: {text!r} is not HOST[:PORT]")
        port = int(port_text)
    if not host:
        raise ConfigError(f"{where}: {text!r} is not HOST[:PORT]")
    return host, port


def wait_for_ssh(host: str, port: int, timeout: float) -> None:
    """Until something answers with an SSH banner (sshd starts late in a boot)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.settimeout(5)
                if sock.recv(4) == b"SSH-":
                    return
        except OSError as exc:
            last = exc
        time.sleep(2)
    raise Ec2TransportError(
        f"no SSH server answered on {host}:{port} within {timeout:.0f} s ({last})"
    )


def launch(
    profile: Ec2Profile,
    *,
    progress: Progress | None = None,
    ssh_timeout: float | None = None,
    client: Any = None,
) -> LaunchResult:
    """The profile's instance: a live one is reused (started again if stopped),
    otherwise one is created. With ``ssh_timeout``, also wait for its sshd.

    A launch that fails (or is interrupted) after creating something removes
    what it created and raises :class:`LaunchError` (an interrupt is re-raised
    after the clean-up)."""
    say = progress or (lambda _msg: None)
    client = client or profile_client(profile)
    cidr = caller_cidr(profile)
    live = find_instances(client, profile=profile.name)
    if live:
        return _reuse(client, profile, live, cidr, say, ssh_timeout)

    root_device = _root_device(client, profile)
    token = uuid.uuid4().hex
    undo = _Undo()
    try:
        key_path = ensure_key_pair(client, profile, undo, say)
        group_id = ensure_security_group(client, profile, cidr, undo, say)
        # Registered before the request: an instance created by a request whose
        # answer never came back is still found (by its launch tag) and removed.
        undo.add("the launch's instance", lambda: _terminate_launch(client, token))
        market = "spot" if profile.spot else "on-demand"
        say(f"launching {market} {profile.instance_type} from {profile.ami}")
        with _aws(f"launching {profile.instance_type}"):
            answer = client.run_instances(
                **run_params(profile, root_device, profile.key_pair_name, group_id, token)
            )
        instance_id = answer["Instances"][0]["InstanceId"]
        say(f"instance {instance_id} pending; waiting for it to run")
        _wait_running(client, instance_id)
        instance = describe_instance(client, instance_id)
        if instance is None:
            raise Ec2Error(f"instance {instance_id} vanished after it started")
        say(f"instance {instance_id} running at {instance.public_ip or instance.public_dns}")
        if ssh_timeout is not None:
            host, port = connect_address(profile, instance)
            say(f"waiting for sshd on {host}:{port or 22}")
            wait_for_ssh(host, port or 22, ssh_timeout)
        if not key_path.is_file():
            raise Ec2Error(f"the private key {key_path} disappeared during the launch")
    except BaseException as exc:
        say("launch failed; removing what it created")
        removed, left = undo.run()
        if not isinstance(exc, Exception):  # Ctrl-C: cleaned up, now stop as asked
            raise
        raise LaunchError(f"launch of {profile.name} failed: {exc}", removed, left) from exc
    return LaunchResult(instance, reused=False, created=[w for w, _ in undo.steps])


def _reuse(
    client: Any,
    profile: Ec2Profile,
    live: list[Instance],
    cidr: str,
    say: Progress,
    ssh_timeout: float | None,
) -> LaunchResult:
    order = {"running": 0, "pending": 1, "stopping": 2, "stopped": 3}
    instance = sorted(live, key=lambda i: order.get(i.state, 9))[0]
    if len(live) > 1:
        others = ", ".join(i.id for i in live if i is not instance)
        say(f"profile {profile.name} has more than one instance; using {instance.id} ({others})")
    # The caller may be somewhere else since the last launch: SSH from here only.
    for group_id in instance.security_groups:
        with _aws(f"reading {group_id}"):
            group = client.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
        if is_managed(_tags(group)):
            allow_only(client, group_id, cidr)
    if instance.state in ("stopping", "stopped"):
        if instance.state == "stopping":
            _wait(client, "instance_stopped", [instance.id], f"waiting for {instance.id} to stop")
        say(f"starting {instance.id} again")
        with _aws(f"starting {instance.id}"):
            client.start_instances(InstanceIds=[instance.id])
    if instance.state != "running":
        _wait_running(client, instance.id)
        instance = describe_instance(client, instance.id) or instance
    say(f"reusing {instance.id} ({instance.state})")
    if ssh_timeout is not None:
        host, port = connect_address(profile, instance)
        wait_for_ssh(host, port or 22, ssh_timeout)
    return LaunchResult(instance, reused=True)


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
        with _aws(f"stopping {', '.join(ids)}"):
            client.stop_instances(InstanceIds=ids)
        if wait:
            _wait(client, "instance_stopped", ids, f"waiting for {', '.join(ids)} to stop")
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
        with _aws(f"terminating {', '.join(ids)}"):
            client.terminate_instances(InstanceIds=ids)
        _wait(client, "instance_terminated", ids, f"waiting for {', '.join(ids)} to terminate")
        groups = sorted({g for i in instances for g in i.security_groups})
        for group_id in groups:
            if _delete_group_if_unused(client, group_id):
                say(f"deleted security group {group_id}")
        done += instances
    return done


def _delete_group_if_unused(client: Any, group_id: str) -> bool:
    try:
        with _aws(f"reading {group_id}"):
            group = client.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    except Ec2Error as exc:
        if exc.code == "InvalidGroup.NotFound":
            return False
        raise
    if not is_managed(_tags(group)):
        return False
    with _aws(f"finding users of {group_id}"):
        users = _describe(
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


# -- prices -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    usd_per_hour: float | None
    basis: str

    @property
    def short(self) -> str:
        if self.usd_per_hour is None:
            return "?"
        value = self.usd_per_hour
        return f"~${value:.5f}/h" if value < 0.01 else f"~${value:.3f}/h"

    def __str__(self) -> str:
        return f"{self.short} ({self.basis}; estimate)"


def on_demand_price(instance_type: str) -> Price:
    price = ON_DEMAND_USD_PER_HOUR.get(instance_type)
    if price is None:
        return Price(None, f"{instance_type} not in the price table; see {_PRICING_URL}")
    return Price(price, ON_DEMAND_BASIS)


_PRICING_URL = "https://aws.amazon.com/ec2/pricing/"


def spot_price(client: Any, instance_type: str, zone: str | None = None) -> Price | None:
    """The latest Linux spot price (in ``zone``, else the cheapest zone), or None."""
    try:
        with _aws(f"reading spot prices for {instance_type}"):
            rows = client.describe_spot_price_history(
                InstanceTypes=[instance_type],
                ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
                StartTime=datetime.now(UTC),
                **({"AvailabilityZone": zone} if zone else {}),
            ).get("SpotPriceHistory", [])
    except Ec2Error:
        return None
    if zone:
        rows = [r for r in rows if r.get("AvailabilityZone") == zone]
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        az = row.get("AvailabilityZone", "?")
        if az not in latest or row["Timestamp"] > latest[az]["Timestamp"]:
            latest[az] = row
    if not latest:
        return None
    az, row = min(latest.items(), key=lambda kv: float(kv[1]["SpotPrice"]))
    return Price(float(row["SpotPrice"]), f"spot price now in {az}")


def hourly_price(client: Any, instance: Instance) -> Price:
    """What the instance costs per hour while it runs: the current spot price for a
    spot instance, the on-demand table otherwise (both estimates; disks extra)."""
    return _price(client, instance.instance_type, instance.spot, instance.availability_zone)


def profile_price(client: Any, profile: Ec2Profile) -> Price:
    """What an instance of the profile would cost per hour (before launching it)."""
    return _price(client, profile.instance_type, profile.spot, profile.availability_zone)


def _price(client: Any, instance_type: str, spot: bool, zone: str | None) -> Price:
    if not spot:
        return on_demand_price(instance_type)
    found = spot_price(client, instance_type, zone)
    if found is not None:
        return found
    ceiling = on_demand_price(instance_type)  # a spot price never exceeds on-demand
    return Price(ceiling.usd_per_hour, f"at most; no spot price to hand, {ceiling.basis}")


# -- the host ---------------------------------------------------------------------------------


class Ec2Host(SSHHost):
    """The running instance of a profile, as an SSH host.

    Each connection looks the instance up (tagged, of this profile, running),
    so a stopped or terminated instance gives a clear error instead of a TCP
    timeout. Its host key is recorded under the instance id (HostKeyAlias), not
    the address: EC2 recycles public addresses, and a key trusted for one
    instance must never vouch for another that later gets the same address.
    """

    def __init__(self, profile: Ec2Profile, *, client: Any = None, **kwargs: Any) -> None:
        super().__init__(
            profile.name,
            profile.name,
            user=profile.user,
            python=profile.python,
            workdir=profile.workdir,
            **kwargs,
        )
        self.profile = profile
        self.instance: Instance | None = None
        self._ec2 = client

    def __repr__(self) -> str:
        return f"Ec2Host({self.name!r})"

    def ec2(self) -> Any:
        if self._ec2 is None:
            self._ec2 = profile_client(self.profile)
        return self._ec2

    def resolve(self) -> SSHTarget:
        instance = running_instance(self.ec2(), self.profile)
        host, port = connect_address(self.profile, instance)
        key = self.profile.key_path
        if not key.is_file():
            raise ConfigError(
                f"ec2 profile {self.profile.name}: private key {key} is not on this machine "
                "(it stays on the machine that launched the instance); set identity_file"
            )
        self.instance = instance
        self.alias, self.port, self.identity_file = host, port, str(key)
        target = super().resolve()
        target.host_key_alias = instance.id
        return target
