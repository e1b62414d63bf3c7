"""Launching (or reusing) a profile's tagged instance, and undoing a launch that failed half way.

The caller's address (SSH ingress), the user data with the max-lifetime
shutdown, the key pair (ed25519, private half 0600 from its first byte), the
security group with its one rule, the instance profile for a profile with
``storage`` (:mod:`remote.ec2.iam`), the instance, and the wait for SSH.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remote.config import Ec2Profile
from remote.ec2.api import (
    CALLER_IP_ENV,
    CALLER_IP_URL,
    LAUNCH_TAG,
    LIVE_STATES,
    MANAGED_TAG,
    MAX_HOURS_TAG,
    PER_BOOT_SCRIPT,
    PROFILE_TAG,
    SG_DELETE_ATTEMPTS,
    WAIT_DELAY_S,
    WAIT_MAX_ATTEMPTS,
    Ec2Error,
    Ec2TransportError,
    Instance,
    LaunchError,
    NotManagedError,
    Progress,
    aws_errors,
    describe_all,
    describe_instance,
    find_instances,
    is_managed,
    profile_client,
    tag_dict,
)
from remote.ec2.iam import ensure_instance_profile, iam_client
from remote.errors import ConfigError

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


def same_key(a: str, b: str) -> bool:
    return a.split()[:2] == b.split()[:2]


# -- launching --------------------------------------------------------------------------------


class Undo:
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


def tag_spec(resource: str, tags: dict[str, str]) -> dict[str, Any]:
    return {"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


def base_tags(profile: Ec2Profile) -> dict[str, str]:
    return {
        MANAGED_TAG: "true",
        PROFILE_TAG: profile.name,
        "Name": f"emoconsole-{profile.name}",
    }


def root_device_name(client: Any, profile: Ec2Profile) -> str:
    """Check the AMI and instance type before creating anything; the AMI's root device."""
    with aws_errors(f"checking instance type {profile.instance_type}"):
        client.describe_instance_types(InstanceTypes=[profile.instance_type])
    with aws_errors(f"checking AMI {profile.ami}"):
        images = client.describe_images(ImageIds=[profile.ami]).get("Images", [])
    if not images:
        raise Ec2Error(f"AMI {profile.ami} does not exist in {client.meta.region_name}")
    return images[0].get("RootDeviceName") or "/dev/sda1"


def ensure_key_pair(client: Any, profile: Ec2Profile, undo: Undo, progress: Progress) -> Path:
    """The key pair the instance will accept, and the local private key for it."""
    name = profile.key_pair_name
    path = profile.key_path
    try:
        with aws_errors(f"looking up key pair {name}"):
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
        if remote_public and not same_key(remote_public, public_key_of(path)):
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
    with aws_errors(f"importing key pair {name}"):
        client.import_key_pair(
            KeyName=name,
            PublicKeyMaterial=public.encode(),
            TagSpecifications=[tag_spec("key-pair", base_tags(profile))],
        )
    undo.add(f"key pair {name}", lambda: _delete_key_pair(client, name))
    return path


def _remove_key_files(path: Path) -> None:
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)


def _delete_key_pair(client: Any, name: str) -> None:
    with aws_errors(f"deleting key pair {name}"):
        client.delete_key_pair(KeyName=name)


def default_vpc_id(client: Any, profile: Ec2Profile) -> str:
    if profile.subnet_id:
        with aws_errors(f"looking up subnet {profile.subnet_id}"):
            subnets = client.describe_subnets(SubnetIds=[profile.subnet_id])["Subnets"]
        return subnets[0]["VpcId"]
    with aws_errors("looking up the default VPC"):
        vpcs = client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise Ec2Error(
            f"{client.meta.region_name} has no default VPC",
            hint=f"set subnet_id = ... (a public subnet) in [ec2.{profile.name}]",
        )
    return vpcs[0]["VpcId"]


def ensure_security_group(
    client: Any, profile: Ec2Profile, cidr: str, undo: Undo, progress: Progress
) -> str:
    """The profile's tagged security group, letting in SSH from ``cidr`` only."""
    vpc = default_vpc_id(client, profile)
    name = f"emoconsole-{profile.name}"
    with aws_errors(f"looking up security group {name}"):
        groups = client.describe_security_groups(
            Filters=[
                {"Name": "group-name", "Values": [name]},
                {"Name": "vpc-id", "Values": [vpc]},
            ]
        )["SecurityGroups"]
    if groups:
        group = groups[0]
        if not is_managed(tag_dict(group)):
            raise NotManagedError(
                f"security group {name} ({group['GroupId']}) in {vpc} is not tagged "
                f"{MANAGED_TAG}=true; emoconsole will not use or change it",
                hint="rename or delete that group, or use another profile name",
            )
        group_id = group["GroupId"]
    else:
        with aws_errors(f"creating security group {name}"):
            group_id = client.create_security_group(
                GroupName=name,
                Description=f"emoconsole {profile.name}: SSH from one address",
                VpcId=vpc,
                TagSpecifications=[tag_spec("security-group", base_tags(profile))],
            )["GroupId"]
        undo.add(f"security group {group_id}", lambda: delete_security_group(client, group_id))
        progress(f"created security group {group_id} ({name})")
    allow_only(client, group_id, cidr)
    return group_id


def allow_only(client: Any, group_id: str, cidr: str) -> None:
    """Make TCP 22 from ``cidr`` the group's one inbound rule (egress is left open:
    the instance fetches packages)."""
    with aws_errors(f"reading the rules of {group_id}"):
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
        with aws_errors(f"removing old rules from {group_id}"):
            client.revoke_security_group_ingress(GroupId=group_id, SecurityGroupRuleIds=stale)
    if keep is None:
        source = (
            {"Ipv6Ranges": [{"CidrIpv6": cidr, "Description": "emoconsole caller"}]}
            if v6
            else {"IpRanges": [{"CidrIp": cidr, "Description": "emoconsole caller"}]}
        )
        with aws_errors(f"letting SSH in from {cidr}"):
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
            with aws_errors(f"deleting security group {group_id}"):
                client.delete_security_group(GroupId=group_id)
            return
        except Ec2Error as exc:
            if exc.code == "InvalidGroup.NotFound":
                return
            if exc.code != "DependencyViolation" or attempt == attempts - 1:
                raise
            time.sleep(delay)


def wait_for(client: Any, waiter: str, ids: list[str], doing: str) -> None:
    with aws_errors(doing):
        client.get_waiter(waiter).wait(
            InstanceIds=ids,
            WaiterConfig={"Delay": WAIT_DELAY_S, "MaxAttempts": WAIT_MAX_ATTEMPTS},
        )


def _wait_running(client: Any, instance_id: str) -> None:
    """Until the instance runs; if it ends instead (no spot capacity, a bad AMI),
    say why, in EC2's words."""
    try:
        wait_for(client, "instance_running", [instance_id], f"waiting for {instance_id} to run")
    except Ec2Error as exc:
        reason = None
        with contextlib.suppress(Exception):  # the reason is a courtesy; the failure stands
            raw = describe_all(client, InstanceIds=[instance_id])[0]
            reason = (raw.get("StateReason") or {}).get("Message")
        if reason:
            raise Ec2Error(f"{instance_id} did not start: {reason}") from exc
        raise


def terminate_launch(client: Any, token: str) -> None:
    """Terminate whatever instance this launch created, found by its launch tag."""
    with aws_errors("finding the launch's instance"):
        rows = describe_all(
            client,
            Filters=[
                {"Name": f"tag:{LAUNCH_TAG}", "Values": [token]},
                {"Name": "instance-state-name", "Values": [*LIVE_STATES, "shutting-down"]},
            ],
        )
    ids = [r["InstanceId"] for r in rows if is_managed(tag_dict(r))]
    if not ids:
        return
    with aws_errors(f"terminating {', '.join(ids)}"):
        client.terminate_instances(InstanceIds=ids)
    wait_for(client, "instance_terminated", ids, f"waiting for {', '.join(ids)} to terminate")


def run_params(
    profile: Ec2Profile,
    root_device: str,
    key_name: str,
    group_id: str,
    token: str,
    instance_profile: str | None = None,
) -> dict[str, Any]:
    """The RunInstances request for a profile. No credentials ever; an instance
    profile only when given (the profile's ``storage`` role, :mod:`remote.ec2.iam`)."""
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
            tag_spec(
                "instance",
                {**tags, LAUNCH_TAG: token, MAX_HOURS_TAG: f"{profile.max_hours:g}"},
            ),
            tag_spec("volume", tags),
        ],
        # A retried request (botocore retries) with the same token creates no second instance.
        "ClientToken": token,
    }
    if instance_profile is not None:
        params["IamInstanceProfile"] = {"Name": instance_profile}
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


# A just-created instance profile takes a few seconds to reach EC2 (IAM is eventually
# consistent): RunInstances says "Invalid IAM Instance Profile name" meanwhile.
IAM_PROPAGATION_S = 60.0
IAM_RETRY_S = 3.0


def request_instances(client: Any, params: dict[str, Any], instance_type: str) -> dict[str, Any]:
    """RunInstances, retried while a new instance profile propagates (same ClientToken:
    a retry never makes a second instance)."""
    deadline = time.monotonic() + IAM_PROPAGATION_S
    while True:
        try:
            with aws_errors(f"launching {instance_type}"):
                return client.run_instances(**params)
        except Ec2Error as exc:
            propagating = (
                "IamInstanceProfile" in params
                and exc.code == "InvalidParameterValue"
                and "iaminstanceprofile" in str(exc).lower()
            )
            if not propagating or time.monotonic() > deadline:
                raise
            time.sleep(IAM_RETRY_S)


def launch(
    profile: Ec2Profile,
    *,
    progress: Progress | None = None,
    ssh_timeout: float | None = None,
    client: Any = None,
    iam: Any = None,
    token: str | None = None,
) -> LaunchResult:
    """The profile's instance: a live one is reused (started again if stopped),
    otherwise one is created. With ``ssh_timeout``, also wait for its sshd.
    ``token``: the request's idempotency token (a recovery derives it from the run
    and the recovery number, so a retried or doubled request makes one instance).
    With ``storage`` in the profile, the instance gets the instance profile that
    may write that prefix only (``iam``: an IAM client, default the profile's).

    A launch that fails (or is interrupted) after creating something removes
    what it created and raises :class:`LaunchError` (an interrupt is re-raised
    after the clean-up)."""
    say = progress or (lambda _msg: None)
    client = client or profile_client(profile)
    cidr = caller_cidr(profile)
    live = find_instances(client, profile=profile.name)
    if live:
        return _reuse(client, profile, live, cidr, say, ssh_timeout, iam)

    root_device = root_device_name(client, profile)
    token = token or uuid.uuid4().hex
    undo = Undo()
    try:
        key_path = ensure_key_pair(client, profile, undo, say)
        group_id = ensure_security_group(client, profile, cidr, undo, say)
        instance_profile = None
        if profile.storage is not None:
            iam = iam if iam is not None else iam_client(profile)
            instance_profile = ensure_instance_profile(profile, iam, undo, say)
        # Registered before the request: an instance created by a request whose
        # answer never came back is still found (by its launch tag) and removed.
        undo.add("the launch's instance", lambda: terminate_launch(client, token))
        market = "spot" if profile.spot else "on-demand"
        say(f"launching {market} {profile.instance_type} from {profile.ami}")
        params = run_params(
            profile, root_device, profile.key_pair_name, group_id, token, instance_profile
        )
        answer = request_instances(client, params, profile.instance_type)
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
    iam: Any = None,
) -> LaunchResult:
    order = {"running": 0, "pending": 1, "stopping": 2, "stopped": 3}
    instance = sorted(live, key=lambda i: order.get(i.state, 9))[0]
    if len(live) > 1:
        others = ", ".join(i.id for i in live if i is not instance)
        say(f"profile {profile.name} has more than one instance; using {instance.id} ({others})")
    # The caller may be somewhere else since the last launch: SSH from here only.
    for group_id in instance.security_groups:
        with aws_errors(f"reading {group_id}"):
            group = client.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
        if is_managed(tag_dict(group)):
            allow_only(client, group_id, cidr)
    if profile.storage is not None:
        _attach_on_reuse(client, profile, instance, iam, say)
    if instance.state in ("stopping", "stopped"):
        if instance.state == "stopping":
            wait_for(
                client, "instance_stopped", [instance.id], f"waiting for {instance.id} to stop"
            )
        say(f"starting {instance.id} again")
        with aws_errors(f"starting {instance.id}"):
            client.start_instances(InstanceIds=[instance.id])
    if instance.state != "running":
        _wait_running(client, instance.id)
        instance = describe_instance(client, instance.id) or instance
    say(f"reusing {instance.id} ({instance.state})")
    if ssh_timeout is not None:
        host, port = connect_address(profile, instance)
        wait_for_ssh(host, port or 22, ssh_timeout)
    return LaunchResult(instance, reused=True)


def _attach_on_reuse(
    client: Any, profile: Ec2Profile, instance: Instance, iam: Any, say: Progress
) -> None:
    """An instance launched before the profile had ``storage`` gets its instance
    profile now (one it already has is left alone: the role's policy was just
    rewritten to the current prefix by :func:`ensure_instance_profile`)."""
    iam = iam if iam is not None else iam_client(profile)
    name = ensure_instance_profile(profile, iam, Undo(), say)
    with aws_errors(f"reading the instance profile of {instance.id}"):
        associations = client.describe_iam_instance_profile_associations(
            Filters=[{"Name": "instance-id", "Values": [instance.id]}]
        ).get("IamInstanceProfileAssociations", [])
    live = [a for a in associations if a.get("State") in ("associating", "associated")]
    if live:
        return
    with aws_errors(f"attaching instance profile {name} to {instance.id}"):
        client.associate_iam_instance_profile(
            IamInstanceProfile={"Name": name}, InstanceId=instance.id
        )
    say(f"attached instance profile {name} to {instance.id}")
