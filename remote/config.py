"""Named hosts, from a TOML file a person edits.

```toml
[hosts.gpu1]
kind = "ssh"                      # "local" | "ssh"
host = "gpu1"                     # an ~/.ssh/config alias or a hostname (default: the name)
user = "ubuntu"                   # optional: overrides ~/.ssh/config, as `ssh -l` would
port = 22                         # optional: likewise
identity_file = "~/.ssh/id_ed25519"
python = "/opt/venv/bin/python"   # the interpreter that runs trainers and the watcher there
workdir = "~/emoconsole"          # where the shipped code lives there
# storage = "s3://my-bucket/runs" # optional: runs pushed there while they train
# slots = 2                       # optional: runs at once (--gpus N takes N); default its GPUs
# notify_url = "https://hooks.slack.com/services/..."  # optional: the host POSTs each run's end

[ec2.gpu]                         # an EC2 profile: also a host named "gpu" (see remote.ec2)
region = "us-east-1"
ami = "ami-0123456789abcdef0"     # required: an AMI id in that region
instance_type = "g5.xlarge"
spot = false
disk_gb = 100
max_hours = 8                     # it shuts itself down this long after each boot
user = "ubuntu"
# caller_ip = "203.0.113.7"       # SSH is let in from here only (default: asked of AWS)
# storage = "s3://my-bucket/runs" # durable run storage (an instance profile for that prefix)
# recover = 2                     # a preempted run comes back on a new instance, twice at most
# fallback_on_demand = false      # a recovery may launch on-demand when spot has no capacity
# fallback_zones = ["us-east-1b"] # other availability zones a recovery may use
# shutdown_lead_minutes = 5       # checkpoint and push this long before max_hours ends it
# notice_poll_s = 5               # how often the instance asks for an interruption notice
# notify_url = "https://hooks.slack.com/services/..."  # the instance POSTs each run's end
```

The user's file is ``$EMOCONSOLE_CONFIG``, else
``$XDG_CONFIG_HOME/emoconsole/hosts.toml``, else
``~/.config/emoconsole/hosts.toml``. A project's ``./emoconsole.toml`` may
carry its own ``[hosts.NAME]`` tables, which replace the user's entry of the
same name whole (merging keys would mix two machines' settings). ``local``
always exists. Each ``[ec2.NAME]`` profile is also a host ``NAME`` of kind
``ec2``: it names the running tagged instance of that profile, found when the
host is first used (``emoconsole hosts launch NAME`` starts one). This module
parses and checks; it builds no host (:mod:`remote.hosts` does) and imports
neither paramiko nor boto3: listing hosts must stay cheap.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from remote.errors import ConfigError

HostKind = Literal["local", "ssh", "ec2"]
PROJECT_FILE = "emoconsole.toml"

_FIELDS: dict[str, type] = {
    "kind": str,
    "host": str,
    "alias": str,
    "user": str,
    "port": int,
    "identity_file": str,
    "python": str,
    "workdir": str,
    "storage": str,
    "slots": int,
    "notify_url": str,
}


def config_dir() -> Path:
    """emoconsole's per-user config directory (XDG on every platform: this is a
    terminal tool, and ~/.ssh sits beside it)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "emoconsole"


def user_config_path() -> Path:
    explicit = os.environ.get("EMOCONSOLE_CONFIG")
    return Path(explicit).expanduser() if explicit else config_dir() / "hosts.toml"


def known_hosts_path() -> Path:
    """Where host keys the user trusted through emoconsole are recorded, so that
    ~/.ssh/known_hosts is only ever read."""
    return config_dir() / "known_hosts"


# [ec2.NAME] keys and the TOML types each accepts.
_EC2_FIELDS: dict[str, tuple[type, ...]] = {
    "region": (str,),
    "ami": (str,),
    "instance_type": (str,),
    "key_name": (str,),
    "identity_file": (str,),
    "spot": (bool,),
    "disk_gb": (int,),
    "max_hours": (int, float),
    "on_shutdown": (str,),
    "user": (str,),
    "python": (str,),
    "workdir": (str,),
    "caller_ip": (str,),
    "subnet_id": (str,),
    "availability_zone": (str,),
    "aws_profile": (str,),
    "endpoint_url": (str,),
    "address": (str,),
    "storage": (str,),
    "recover": (int,),
    "fallback_on_demand": (bool,),
    "fallback_zones": (list,),
    "imds_url": (str,),
    "shutdown_lead_minutes": (int, float),
    "notice_poll_s": (int, float),
    "notify_url": (str,),
}
# Profile names end up in tags, a security-group name and a key-pair name.
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# An availability zone: a region plus a letter (us-east-1b, and local zones: us-west-2-lax-1a).
_ZONE = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-\d+[a-z]$")
IMDS_URL = "http://169.254.169.254"  # the real instance metadata service, on every instance


# -- durable storage: s3://bucket/prefix ------------------------------------------------------

# S3's rules for a general-purpose bucket's name (docs.aws.amazon.com/AmazonS3/latest/
# userguide/bucketnamingrules.html), less the ones that only matter when creating one.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# A prefix segment. Narrower than what S3 accepts on purpose: the prefix is written into
# the instance profile's IAM policy, where "*", "?" and "${...}" are wildcards and
# variables that would widen what the instance may touch.
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9._=+-]+$")


def parse_storage_url(text: str, where: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` as (bucket, prefix), the prefix without slashes at either
    end. A prefix is required: the instance's credentials are scoped to it, and a whole
    bucket is never handed to an instance. Errors name ``where`` and the value."""

    def bad(why: str) -> ConfigError:
        return ConfigError(
            f'{where} = {text!r}: {why} (expected "s3://BUCKET/PREFIX", e.g. '
            '"s3://my-bucket/emoconsole-runs")'
        )

    scheme, sep, rest = text.partition("://")
    if not sep or scheme != "s3":
        raise bad("only s3:// storage is supported")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise bad(
            f"{bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.' "
            "and '-', starting and ending with a letter or digit)"
        )
    if bucket.startswith(_BUCKET_RESERVED_PREFIXES) or bucket.endswith(_BUCKET_RESERVED_SUFFIXES):
        raise bad(f"{bucket!r} uses a prefix or suffix S3 reserves")
    try:
        ipaddress.IPv4Address(bucket)
    except ValueError:
        pass
    else:
        raise bad(f"{bucket!r} is an IP address, not a bucket name")
    prefix = prefix.strip("/")
    if not prefix:
        raise bad("a prefix is required after the bucket (the instance may touch only that)")
    for segment in prefix.split("/"):
        if segment in ("", ".", ".."):
            raise bad(f"the prefix {prefix!r} has an empty, '.' or '..' part")
        if not _PREFIX_SEGMENT.match(segment):
            raise bad(
                f"the prefix {prefix!r} may use letters, digits and . _ = + - only "
                "(it goes into an IAM policy, where * ? and $ are wildcards)"
            )
    return bucket, prefix


def _check_imds_url(text: str, where: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where} = {text!r} is not an http:// address (the real service is {IMDS_URL}; "
            "set this only to point at a stand-in)"
        )
    return text.rstrip("/")


@dataclass(frozen=True)
class Ec2Profile:
    """One ``[ec2.NAME]`` table: how to launch (and find) an instance for ``NAME``.

    ``on_shutdown`` is what the instance does when it shuts itself down at
    ``max_hours`` (counted from each boot): ``stop`` keeps the disk, and so the
    runs on it, for cents a day; ``terminate`` leaves nothing to pay for. Spot
    instances can only terminate. ``caller_ip`` is the one address SSH is let in
    from (default: ``$EMOCONSOLE_CALLER_IP``, else asked of checkip.amazonaws.com).
    ``address`` (``HOST[:PORT]``) connects there instead of the instance's public
    address: a tunnel, or a test's loopback sshd. ``endpoint_url`` points boto3 at
    another EC2 endpoint (moto, LocalStack). Credentials are never read from
    here: boto3 finds them itself (``aws_profile`` picks a named profile).

    ``storage`` (``s3://bucket/prefix``) is where the instance pushes its runs while
    they train; with it, ``hosts launch`` attaches an instance profile allowed that
    prefix only (:mod:`remote.ec2.iam`). ``recover`` makes runs managed: a run whose
    instance is preempted or lost comes back on a new one (at most that many times),
    restored from ``storage``, in the profile's zone or one of ``fallback_zones``,
    and on-demand if ``fallback_on_demand`` and spot has no capacity.
    ``shutdown_lead_minutes`` is how long before the ``max_hours`` shutdown the
    on-host guard checkpoints and pushes the run. ``imds_url`` exists for tests (a
    loopback stand-in for the metadata service, which only exists on EC2).
    """

    name: str
    ami: str
    region: str | None = None
    instance_type: str = "g4dn.xlarge"
    key_name: str | None = None  # default: emoconsole-<name>, generated and imported
    identity_file: str | None = None  # default: <config dir>/keys/<key_name>
    spot: bool = False
    disk_gb: int = 100
    max_hours: float = 8.0
    on_shutdown: Literal["stop", "terminate"] = "stop"
    user: str = "ubuntu"
    python: str = "python3"
    workdir: str | None = None
    caller_ip: str | None = None
    subnet_id: str | None = None
    availability_zone: str | None = None
    aws_profile: str | None = None
    endpoint_url: str | None = None
    address: str | None = None
    storage: str | None = None  # "s3://bucket/prefix", checked by parse_storage_url
    recover: int = 0  # how many times a managed run is recovered on a new instance
    fallback_on_demand: bool = False  # a spot recovery may launch on-demand instead
    fallback_zones: tuple[str, ...] = ()  # other availability zones a recovery may use
    imds_url: str | None = None  # None: the real IMDS_URL; tests point it at a stand-in
    shutdown_lead_minutes: float = 5.0  # the guard acts this long before max_hours ends it
    notice_poll_s: float = 5.0  # how often the guard asks IMDS for a notice (AWS: 2 min warning)
    # A webhook the instance tells of each run's end (remote.onhost.webhook); a secret.
    notify_url: str | None = field(default=None, repr=False)
    source: str = field(default="built in", compare=False)

    @property
    def storage_location(self) -> tuple[str, str] | None:
        """(bucket, prefix) of ``storage``, or None without it."""
        if self.storage is None:
            return None
        return parse_storage_url(self.storage, f"ec2.{self.name}.storage")

    @property
    def metadata_url(self) -> str:
        """Where the on-host guard asks for interruption notices."""
        return self.imds_url or IMDS_URL

    @property
    def key_pair_name(self) -> str:
        return self.key_name or f"emoconsole-{self.name}"

    @property
    def key_path(self) -> Path:
        if self.identity_file:
            return Path(self.identity_file).expanduser()
        return config_dir() / "keys" / self.key_pair_name

    @property
    def shutdown_minutes(self) -> int:
        return max(1, math.ceil(self.max_hours * 60))

    def describe(self) -> str:
        market = "spot" if self.spot else "on-demand"
        return f"ec2 {self.instance_type} {market} in {self.region or 'the default region'}"


def _parse_ec2(path: Path, data: dict[str, Any]) -> dict[str, Ec2Profile]:
    tables = data.get("ec2", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: 'ec2' must be a table of [ec2.NAME] tables")
    parsed: dict[str, Ec2Profile] = {}
    for name, entry in tables.items():
        where = f"{path}: ec2.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table")
        if not _PROFILE_NAME.match(name):
            raise ConfigError(f"{where}: a profile name is letters, digits, '.', '_' or '-'")
        if name == "local":
            raise ConfigError(f"{where}: 'local' is this machine; pick another profile name")
        for key, value in entry.items():
            if key not in _EC2_FIELDS:
                known = ", ".join(_EC2_FIELDS)
                raise ConfigError(f"{where}: unknown key {key!r} (known: {known})")
            want = _EC2_FIELDS[key]
            if not isinstance(value, want) or (isinstance(value, bool) and bool not in want):
                kind = " or ".join(t.__name__ for t in want)
                raise ConfigError(f"{where}.{key} must be a {kind}, got {value!r}")
        if "ami" not in entry:
            raise ConfigError(
                f"{where}: 'ami' is required (an AMI id in the profile's region, e.g. a "
                "Deep Learning AMI: aws ec2 describe-images --owners amazon "
                "--filters 'Name=name,Values=Deep Learning*PyTorch*Ubuntu*')"
            )
        spot = entry.get("spot", False)
        on_shutdown = entry.get("on_shutdown", "terminate" if spot else "stop")
        if on_shutdown not in ("stop", "terminate"):
            raise ConfigError(f"{where}.on_shutdown must be 'stop' or 'terminate'")
        if spot and on_shutdown != "terminate":
            raise ConfigError(
                f"{where}: a spot instance cannot stop itself; use on_shutdown = 'terminate'"
            )
        max_hours = float(entry.get("max_hours", 8.0))
        if not 0 < max_hours <= 24 * 30:
            raise ConfigError(f"{where}.max_hours must be in (0, 720], got {max_hours:g}")
        disk_gb = entry.get("disk_gb", 100)
        if not 8 <= disk_gb <= 16384:
            raise ConfigError(f"{where}.disk_gb must be 8..16384 GiB, got {disk_gb}")
        if "notify_url" in entry:
            check_notify_url(entry["notify_url"], f"{where}.notify_url")
        fields = {k: v for k, v in entry.items() if k not in ("max_hours", "on_shutdown")}
        fields.update(_check_durability(where, entry, spot, on_shutdown, max_hours))
        parsed[name] = Ec2Profile(
            name=name, max_hours=max_hours, on_shutdown=on_shutdown, source=str(path), **fields
        )
    return parsed


def _check_durability(
    where: str, entry: dict[str, Any], spot: bool, on_shutdown: str, max_hours: float
) -> dict[str, Any]:
    """The storage, recovery and notice keys of one ``[ec2.NAME]`` table, checked
    and normalised (the types are checked already)."""
    out: dict[str, Any] = {}
    storage = entry.get("storage")
    if storage is not None:
        parse_storage_url(storage, f"{where}.storage")
    recover = entry.get("recover", 0)
    if recover < 0:
        raise ConfigError(f"{where}.recover must be 0 or more (recoveries per run), got {recover}")
    # Recovery restores the run from storage on a new instance, and two consoles agree
    # on who recovers by a create-only write there: no storage, nothing to recover from.
    if recover and storage is None:
        market = "a spot instance" if spot else "a lost instance"
        raise ConfigError(
            f"{where}: recover = {recover} without storage: nothing to recover from ({market} "
            "takes its disk with it, and a recovered run is restored from storage); add "
            'storage = "s3://BUCKET/PREFIX" or set recover = 0'
        )
    if entry.get("fallback_on_demand") and not spot:
        raise ConfigError(
            f"{where}.fallback_on_demand: the profile is on-demand already (spot = false); "
            "remove the key or set spot = true"
        )
    zones = entry.get("fallback_zones", [])
    for zone in zones:
        if not isinstance(zone, str) or not _ZONE.match(zone):
            raise ConfigError(
                f"{where}.fallback_zones: {zone!r} is not an availability zone name "
                '(e.g. "us-east-1b")'
            )
        region = entry.get("region")
        rest = zone[len(region) :] if region and zone.startswith(region) else None
        if region and not (rest and (len(rest) == 1 or rest.startswith("-"))):
            raise ConfigError(
                f"{where}.fallback_zones: {zone!r} is not in the profile's region {region}"
            )
    if "fallback_zones" in entry:
        out["fallback_zones"] = tuple(zones)  # a frozen profile holds no list
    if "imds_url" in entry:
        out["imds_url"] = _check_imds_url(entry["imds_url"], f"{where}.imds_url")
    lead = float(entry.get("shutdown_lead_minutes", 5.0))
    if not 0 < lead < max_hours * 60:
        raise ConfigError(
            f"{where}.shutdown_lead_minutes must be more than 0 and less than max_hours "
            f"({max_hours * 60:g} min), got {lead:g}"
        )
    if "shutdown_lead_minutes" in entry:
        out["shutdown_lead_minutes"] = lead
    if "notice_poll_s" in entry:
        poll = float(entry["notice_poll_s"])
        if not 0 < poll <= 30:
            raise ConfigError(
                f"{where}.notice_poll_s must be more than 0 and at most 30 s (a spot notice "
                f"gives 120 s), got {poll:g}"
            )
        out["notice_poll_s"] = poll
    return out


def _ec2_hosts(path: Path, data: dict[str, Any], hosts: dict[str, Any]) -> dict[str, HostConfig]:
    """Each profile as a host of kind ec2; a name may be a host or a profile, not both."""
    parsed: dict[str, HostConfig] = {}
    for name, profile in _parse_ec2(path, data).items():
        if name in hosts:
            raise ConfigError(f"{path}: {name!r} is both [hosts.{name}] and [ec2.{name}]")
        parsed[name] = HostConfig(
            name=name,
            kind="ec2",
            user=profile.user,
            python=profile.python,
            workdir=profile.workdir,
            ec2=profile,
            storage=profile.storage,
            notify_url=profile.notify_url,
            source=str(path),
        )
    return parsed


@dataclass(frozen=True)
class HostConfig:
    name: str
    kind: HostKind = "ssh"
    host: str | None = None
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    python: str | None = None
    workdir: str | None = None
    ec2: Ec2Profile | None = None  # kind "ec2": the profile
    storage: str | None = None  # "s3://bucket/prefix": runs pushed there (kind ec2: the profile's)
    # GPU slots of the host's run queue (remote.onhost.queue); None: its GPUs, no queue without.
    slots: int | None = None
    # A webhook the host's guard POSTs each run's end to (remote.onhost.webhook); a secret.
    notify_url: str | None = field(default=None, repr=False)
    source: str = field(default="built in", compare=False)

    def describe(self) -> str:
        if self.kind == "local":
            return "this machine"
        if self.ec2 is not None:
            return self.ec2.describe()
        target = self.host or self.name
        if self.user:
            target = f"{self.user}@{target}"
        if self.port:
            target = f"{target}:{self.port}"
        return f"ssh {target}"


LOCAL = HostConfig(name="local", kind="local")


def _parse_hosts(path: Path, data: dict[str, Any]) -> dict[str, HostConfig]:
    hosts = data.get("hosts", {})
    if not isinstance(hosts, dict):
        raise ConfigError(f"{path}: 'hosts' must be a table of [hosts.NAME] tables")
    parsed: dict[str, HostConfig] = {}
    for name, entry in hosts.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: hosts.{name} must be a table")
        for key, value in entry.items():
            if key not in _FIELDS:
                known = ", ".join(_FIELDS)
                raise ConfigError(f"{path}: unknown key hosts.{name}.{key} (known: {known})")
            want = _FIELDS[key]
            if not isinstance(value, want) or isinstance(value, bool):
                raise ConfigError(
                    f"{path}: hosts.{name}.{key} must be a {want.__name__}, got {value!r}"
                )
        kind = entry.get("kind", "ssh")
        if kind not in ("local", "ssh"):
            also = f" (an EC2 profile is an [ec2.{name}] table)" if kind == "ec2" else ""
            raise ConfigError(
                f"{path}: hosts.{name}.kind must be 'local' or 'ssh', got {kind!r}{also}"
            )
        if "host" in entry and "alias" in entry:
            raise ConfigError(f"{path}: hosts.{name}: give 'host' or 'alias', not both")
        if name == "local" and kind != "local":
            raise ConfigError(f"{path}: hosts.local is this machine; it cannot be kind {kind!r}")
        port = entry.get("port")
        if port is not None and not 0 < port < 65536:
            raise ConfigError(f"{path}: hosts.{name}.port {port} is not a port number")
        storage = entry.get("storage")
        if storage is not None:
            if kind == "local":
                raise ConfigError(
                    f"{path}: hosts.{name}.storage: a local host's runs are on this machine "
                    "already; storage is for SSH hosts and EC2 profiles"
                )
            parse_storage_url(storage, f"{path}: hosts.{name}.storage")
        slots = entry.get("slots")
        if slots is not None and slots < 1:
            raise ConfigError(
                f"{path}: hosts.{name}.slots = {slots}: the runs this host trains at once "
                "(a run with --gpus N takes N) must be 1 or more; remove the key to use "
                "one slot per GPU"
            )
        notify_url = entry.get("notify_url")
        if notify_url is not None:
            check_notify_url(notify_url, f"{path}: hosts.{name}.notify_url")
        parsed[name] = HostConfig(
            name=name,
            kind=kind,
            host=entry.get("host", entry.get("alias")),
            user=entry.get("user"),
            port=port,
            identity_file=entry.get("identity_file"),
            python=entry.get("python"),
            workdir=entry.get("workdir"),
            storage=storage,
            slots=slots,
            notify_url=notify_url,
            source=str(path),
        )
    return parsed


def check_notify_url(text: str, where: str) -> str:
    """An http(s) URL with a host. The error shows only where it points: a webhook URL
    is a credential, and error messages end up in terminals and issue reports."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f"{parts.scheme}://{parts.hostname}/…" if parts.hostname else "that value"
        raise ConfigError(
            f"{where}: {shown} is not an http(s) URL; expected a webhook URL such as a Slack "
            'incoming webhook\'s: notify_url = "https://hooks.slack.com/services/T…/B…/…"'
        )
    return text


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def load_hosts(
    user_file: Path | None = None, project_file: Path | None = None
) -> dict[str, HostConfig]:
    """Every named host: ``local``, then the user's file, then the project's."""
    user_file = user_file or user_config_path()
    project_file = project_file or Path.cwd() / PROJECT_FILE
    hosts = {"local": LOCAL}
    if user_file.is_file():
        data = _read_toml(user_file)
        # The user's file is ours alone, so anything but [hosts] and [ec2] is a mistake.
        for key in data:
            if key not in ("hosts", "ec2"):
                raise ConfigError(
                    f"{user_file}: unknown key {key!r} (only [hosts.NAME] and [ec2.NAME] tables)"
                )
        mine = _parse_hosts(user_file, data)
        hosts.update(mine)
        hosts.update(_ec2_hosts(user_file, data, mine))
    if project_file.is_file():
        # The project file may grow other sections; only [hosts] and [ec2] are read here.
        data = _read_toml(project_file)
        mine = _parse_hosts(project_file, data)
        hosts.update(mine)
        hosts.update(_ec2_hosts(project_file, data, mine))
    return hosts


def load_ec2_profiles(
    user_file: Path | None = None, project_file: Path | None = None
) -> dict[str, Ec2Profile]:
    """Every ``[ec2.NAME]`` profile, by the same precedence as :func:`load_hosts`."""
    hosts = load_hosts(user_file, project_file)
    return {name: cfg.ec2 for name, cfg in hosts.items() if cfg.ec2 is not None}


def get_host_config(name: str, hosts: dict[str, HostConfig] | None = None) -> HostConfig:
    hosts = load_hosts() if hosts is None else hosts
    if name not in hosts:
        known = ", ".join(sorted(hosts))
        where = user_config_path()
        raise ConfigError(f"no host named {name!r} (known: {known}); hosts are defined in {where}")
    return hosts[name]
