"""EC2 hosts against moto's EC2 server (a real HTTP endpoint boto3 talks to), and
end to end with the moto instance mapped to a real loopback sshd.

What is checked is what the EC2 API itself reports back (tags, rules, metadata
options, user data, key pairs), plus every byte sent to it, the files the
remote run wrote, the launched process's environment and the CLI's output.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from emoconsole.cli import app
from remote.config import load_ec2_profiles
from remote.ec2.api import (
    CALLER_IP_ENV,
    MANAGED_TAG,
    PROFILE_TAG,
    Ec2Error,
    LaunchError,
    NoInstanceError,
    NotManagedError,
    profile_client,
)
from remote.ec2.host import Ec2Host
from remote.ec2.instances import list_instances, resolve_targets, terminate
from remote.ec2.launch import generate_key_pair, launch, public_key_of
from remote.ec2.prices import hourly_price
from remote.errors import ConfigError
from remote.hosts import get_host
from tests.conftest import SMALL_MODEL

pytest_plugins = ["tests.sshd"]

REGION = "us-east-1"
CALLER = "203.0.113.7"  # TEST-NET-3: the "caller's public address" tests fill in
TINY = [*SMALL_MODEL, "train.epochs=2"]
runner = CliRunner()


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    from tests.sshd import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@dataclass
class Aws:
    endpoint: str
    ec2: object  # a boto3 client for looking behind the code's back
    config: Path  # hosts.toml
    ami: str

    def write(self, name: str = "gpu", **fields: object) -> None:
        """An [ec2.NAME] profile pointed at moto (replacing the file)."""
        values = {
            "region": REGION,
            "ami": self.ami,
            "instance_type": "g4dn.xlarge",
            "endpoint_url": self.endpoint,
            "caller_ip": CALLER,
            **fields,
        }
        body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"[ec2.{name}]\n{body}")

    def profile(self, name: str = "gpu"):
        return load_ec2_profiles()[name]

    def instance(self, instance_id: str) -> dict:
        return self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
            "Instances"
        ][0]

    def tagged(self, kind: str) -> list[dict]:
        managed = [{"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]}]
        if kind == "instances":
            rows = self.ec2.describe_instances(Filters=managed)["Reservations"]
            return [i for r in rows for i in r["Instances"] if i["State"]["Name"] != "terminated"]
        if kind == "groups":
            return self.ec2.describe_security_groups(Filters=managed)["SecurityGroups"]
        return self.ec2.describe_key_pairs(Filters=managed)["KeyPairs"]

    def untagged_instance(self, **tags: str) -> str:
        pairs = [{"Key": k, "Value": v} for k, v in tags.items()]
        spec = [{"ResourceType": "instance", "Tags": pairs}] if tags else []
        answer = self.ec2.run_instances(
            ImageId=self.ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
            TagSpecifications=spec,
        )  # fmt: skip
        return answer["Instances"][0]["InstanceId"]


@pytest.fixture
def aws(moto_endpoint, ssh_env, monkeypatch, tmp_path) -> Aws:
    """A clean moto account, fake credentials from the environment (boto3's chain
    finds them there), and a private config dir; no real AWS file is read."""
    reset = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", CALLER_IP_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEMOCONSOLETEST00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-not-real")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.chdir(tmp_path)  # no project emoconsole.toml
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name=REGION)
    images = ec2.describe_images(Filters=[{"Name": "name", "Values": ["ubuntu*"]}])["Images"]
    return Aws(
        endpoint=moto_endpoint,
        ec2=ec2,
        config=ssh_env.config_dir / "emoconsole" / "hosts.toml",
        ami=images[0]["ImageId"],
    )


def recording_client(profile, sent: list[dict[str, list[str]]]):
    """The code's own client, with every request body it sends recorded (decoded)."""
    client = profile_client(profile)

    def record(request, **_):
        body = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
        sent.append(urllib.parse.parse_qs(body))

    client.meta.events.register("before-send.ec2.*", record)
    return client


def tags_of(raw: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in raw.get("Tags", [])}


def test_launch_tags_everything_one_ssh_rule_imdsv2_and_a_shutdown_timer(aws):
    aws.write(max_hours=2, disk_gb=30)
    profile = aws.profile()
    sent: list[dict[str, list[str]]] = []
    old_umask = os.umask(0)  # the key's mode must not depend on the caller's umask
    try:
        result = launch(profile, client=recording_client(profile, sent))
    finally:
        os.umask(old_umask)
    assert not result.reused
    raw = aws.instance(result.instance.id)
    tags = tags_of(raw)
    assert tags[MANAGED_TAG] == "true" and tags[PROFILE_TAG] == "gpu"
    assert tags["Name"] == "emoconsole-gpu" and tags["emoconsole:max-hours"] == "2"
    assert raw["MetadataOptions"]["HttpTokens"] == "required"
    assert raw["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert "IamInstanceProfile" not in raw  # no credentials on the instance at all
    volume = aws.ec2.describe_volumes(VolumeIds=[raw["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]])[
        "Volumes"
    ][0]
    assert volume["Size"] == 30 and tags_of(volume)[MANAGED_TAG] == "true"

    # The security group: tagged, and one inbound rule, SSH from the caller's /32.
    (group_id,) = [g["GroupId"] for g in raw["SecurityGroups"]]
    group = aws.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    assert tags_of(group)[MANAGED_TAG] == "true" and tags_of(group)[PROFILE_TAG] == "gpu"
    (rule,) = group["IpPermissions"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22)
    assert [r["CidrIp"] for r in rule["IpRanges"]] == [f"{CALLER}/32"]
    assert not rule["Ipv6Ranges"] and not rule["UserIdGroupPairs"] and not rule["PrefixListIds"]

    # The instance times itself out: 2 h = 120 min, now and at every boot; then it stops.
    data = aws.ec2.describe_instance_attribute(InstanceId=raw["InstanceId"], Attribute="userData")
    script = base64.b64decode(data["UserData"]["Value"]).decode()
    assert script.startswith("#!/bin/sh") and script.count("shutdown -h +120 ") == 2
    assert "/var/lib/cloud/scripts/per-boot/" in script
    behaviour = aws.ec2.describe_instance_attribute(
        InstanceId=raw["InstanceId"], Attribute="instanceInitiatedShutdownBehavior"
    )["InstanceInitiatedShutdownBehavior"]["Value"]
    assert behaviour == "stop"

    # The key: generated here with mode 0600, only its public half went to AWS.
    key_path = profile.key_path
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    private = key_path.read_text()
    assert "OPENSSH PRIVATE KEY" in private
    (pair,) = aws.ec2.describe_key_pairs(KeyNames=["emoconsole-gpu"], IncludePublicKey=True)[
        "KeyPairs"
    ]
    assert pair["KeyType"] == "ed25519" and tags_of(pair)[MANAGED_TAG] == "true"
    assert pair["PublicKey"].split()[:2] == public_key_of(key_path).split()[:2]
    body_lines = [line for line in private.splitlines() if "PRIVATE KEY" not in line]
    everything_sent = "\n".join(v for request in sent for vs in request.values() for v in vs)
    assert not any(line in everything_sent for line in body_lines)
    assert "PRIVATE KEY" not in everything_sent
    imported = next(r for r in sent if r.get("Action") == ["ImportKeyPair"])
    material = base64.b64decode(imported["PublicKeyMaterial"][0]).decode()
    assert material.split()[:2] == public_key_of(key_path).split()[:2]
    with pytest.raises(FileExistsError):  # an existing key is never overwritten
        generate_key_pair(key_path, "again")

    price = hourly_price(profile_client(profile), result.instance)
    assert price.usd_per_hour == pytest.approx(0.526) and "estimate" in str(price)


def test_second_launch_reuses_the_instance_and_moves_the_rule_to_the_new_address(aws, monkeypatch):
    aws.write()
    first = launch(aws.profile())
    monkeypatch.setenv(CALLER_IP_ENV, "198.51.100.23")
    second = launch(aws.profile())
    assert second.reused and second.instance.id == first.instance.id
    assert [i["InstanceId"] for i in aws.tagged("instances")] == [first.instance.id]
    (group,) = aws.tagged("groups")
    (rule,) = group["IpPermissions"]
    assert [r["CidrIp"] for r in rule["IpRanges"]] == ["198.51.100.23/32"]

    # Stopped (by the instance's own timer, say): the next launch starts it again.
    aws.ec2.stop_instances(InstanceIds=[first.instance.id])
    third = launch(aws.profile())
    assert third.reused and third.instance.state == "running"
    assert aws.instance(first.instance.id)["State"]["Name"] == "running"


def test_untagged_instances_are_never_listed_stopped_or_terminated(aws):
    aws.write()
    ours = launch(aws.profile()).instance.id
    plain = aws.untagged_instance()
    # Named and profiled like ours, but without the managed tag: still not ours.
    lookalike = aws.untagged_instance(Name="emoconsole-gpu", **{PROFILE_TAG: "gpu"})

    assert [i.id for _, i in list_instances()] == [ours]
    assert [i.id for _, i in resolve_targets("gpu")] == [ours]
    for other in (plain, lookalike):
        with pytest.raises(NotManagedError, match="not tagged emoconsole:managed=true"):
            resolve_targets(other)
        for verb in ("stop", "terminate"):
            refused = runner.invoke(app, ["hosts", verb, other, "--yes"])
            assert refused.exit_code == 1 and "will not stop or terminate it" in refused.output
    listing = runner.invoke(app, ["hosts", "instances", "--all"])
    assert listing.exit_code == 0, listing.output
    assert ours in listing.output and plain not in listing.output
    assert lookalike not in listing.output

    done = runner.invoke(app, ["hosts", "terminate", "gpu", "--yes"])
    assert done.exit_code == 0, done.output
    assert f"terminated {ours}" in done.output
    assert aws.instance(ours)["State"]["Name"] == "terminated"
    assert aws.instance(plain)["State"]["Name"] == "running"
    assert aws.instance(lookalike)["State"]["Name"] == "running"
    assert aws.tagged("groups") == []  # its security group went with it


def test_a_launch_the_api_rejects_half_way_removes_what_it_created(aws):
    # A zone of another region: AWS refuses RunInstances only after the key pair
    # and the security group exist.
    aws.write(availability_zone="us-west-2a")
    profile = aws.profile()
    with pytest.raises(LaunchError) as info:
        launch(profile)
    message = str(info.value)
    assert "Invalid Availability Zone" in message
    assert "security group sg-" in message and "key pair emoconsole-gpu" in message
    assert "COULD NOT REMOVE" not in message
    assert aws.tagged("instances") == [] and aws.tagged("groups") == []
    assert aws.tagged("key pairs") == []
    assert not profile.key_path.exists() and not Path(f"{profile.key_path}.pub").exists()


def test_an_interrupted_launch_terminates_its_instance_but_keeps_older_things(aws):
    aws.write()
    profile = aws.profile()
    earlier = launch(profile).instance.id  # leaves a key pair behind after terminate
    terminate(resolve_targets("gpu"))
    key_pairs = aws.tagged("key pairs")
    assert len(key_pairs) == 1

    def ctrl_c_once_the_instance_exists(message: str) -> None:
        if message.startswith("instance i-"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        launch(profile, progress=ctrl_c_once_the_instance_exists)
    managed = [{"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]}]
    rows = aws.ec2.describe_instances(Filters=managed)["Reservations"]
    states = {i["InstanceId"]: i["State"]["Name"] for r in rows for i in r["Instances"]}
    assert len(states) == 2 and set(states.values()) == {"terminated"} and earlier in states
    assert aws.tagged("groups") == []
    # The key pair and its private key predate this launch: they stay.
    assert aws.tagged("key pairs") == key_pairs and profile.key_path.exists()


def test_a_host_without_an_instance_says_how_to_launch_one(aws):
    aws.write()
    listed = runner.invoke(app, ["hosts", "list"])
    assert "gpu" in listed.output and "ec2 g4dn.xlarge on-demand in us-east-1" in listed.output
    host = get_host("gpu")  # no AWS call yet: listing hosts stays cheap
    assert isinstance(host, Ec2Host)
    with pytest.raises(NoInstanceError, match=r"no running instance for profile gpu: run "
                       r"`emoconsole hosts launch gpu`"):  # fmt: skip
        host.run("true")
    check = runner.invoke(app, ["hosts", "check", "gpu"])
    assert check.exit_code == 1 and "emoconsole hosts launch gpu" in check.output
    assert "Traceback" not in check.output


def test_spot_profiles_terminate_on_shutdown_and_price_from_the_spot_market(aws):
    aws.write(spot=True)
    profile = aws.profile()
    assert profile.on_shutdown == "terminate"
    instance = launch(profile).instance
    assert instance.spot
    behaviour = aws.ec2.describe_instance_attribute(
        InstanceId=instance.id, Attribute="instanceInitiatedShutdownBehavior"
    )["InstanceInitiatedShutdownBehavior"]["Value"]
    assert behaviour == "terminate"
    price = hourly_price(profile_client(profile), instance)
    assert price.basis == f"spot price now in {instance.availability_zone}"
    assert price.usd_per_hour is not None


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"spot": True, "on_shutdown": "stop"}, "spot instance cannot stop"),
        ({"instance_typ": "g5.xlarge"}, "unknown key 'instance_typ'"),
        ({"disk_gb": "100"}, r"disk_gb must be a int"),
        ({"max_hours": 0}, "max_hours must be in"),
    ],
)
def test_bad_profiles_are_refused_naming_the_key(aws, fields, complaint):
    aws.write(**fields)
    with pytest.raises(ConfigError, match=complaint):
        load_ec2_profiles()


def test_a_caller_range_or_a_missing_ami_creates_nothing(aws):
    aws.write(caller_ip="10.0.0.0/8")
    with pytest.raises(ConfigError, match="one address only"):
        launch(aws.profile())
    aws.write(ami="ami-00000000000000000")
    with pytest.raises(Ec2Error, match="ami-00000000000000000"):
        launch(aws.profile())
    aws.write(instance_type="g9.nonesuch")
    with pytest.raises(Ec2Error, match="InvalidInstanceType"):
        launch(aws.profile())
    assert aws.tagged("groups") == [] and aws.tagged("key pairs") == []
    assert aws.tagged("instances") == []


def _grep_tree(root: Path, needle: bytes) -> list[str]:
    return [
        str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()
    ]  # fmt: skip


def test_end_to_end_on_the_loopback_sshd_with_a_canary_secret(
    aws, make_sshd, monkeypatch, tmp_path, small_corpus, feature_cache, caplog
):
    from remote.deploy import deploy
    from remote.download import download_run
    from remote.watch import EventItem, follow

    server = make_sshd()  # started before the canary exists, as an EC2 sshd would be
    canary = f"canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", canary)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == canary
    caplog.set_level(logging.DEBUG)
    remote_work = tmp_path / "remote-work"
    aws.write(
        address=f"127.0.0.1:{server.port}",
        user=server.user,
        python=sys.executable,
        workdir=str(remote_work),
    )
    outputs: list[str] = []

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        outputs.append(result.output)
        assert result.exit_code == code, result.output
        return result.output

    launched = runner.invoke(app, ["hosts", "launch", "gpu"])
    outputs.append(launched.output)
    assert launched.exit_code == 0, launched.output
    instance_id = launched.stdout.strip()  # stdout is the id alone: scripts can use it
    assert instance_id.startswith("i-") and "launched" in launched.output
    profile = aws.profile()
    # What EC2 does with the key pair: its public key into authorized_keys.
    (pair,) = aws.ec2.describe_key_pairs(KeyNames=["emoconsole-gpu"], IncludePublicKey=True)[
        "KeyPairs"
    ]
    with open(server.root / "authorized_keys", "a") as fh:
        fh.write(pair["PublicKey"] + "\n")

    unknown = cli("hosts", "check", "gpu", code=1)
    assert server.fingerprint() in unknown and f"unknown host key for {instance_id}" in unknown
    cli("hosts", "trust", "gpu", "--fingerprint", server.fingerprint())
    assert cli("hosts", "check", "gpu").startswith("gpu: ok, python 3.")
    listing = cli("hosts", "instances")
    assert instance_id in listing and "running" in listing and "~$0.526/h" in listing

    host = get_host("gpu")
    try:
        launch_ = deploy(
            host, "hybrid-attention", data=str(small_corpus),
            overrides=[*TINY, f"data.cache_dir={feature_cache}"], env="host",
        )  # fmt: skip
        assert host.instance is not None and host.instance.id == instance_id
        # Still alive: deploy returns once run.json is written; training takes longer.
        environ = Path(f"/proc/{launch_.pid}/environ").read_bytes()
        assert b"AWS_" not in environ and canary.encode() not in environ
        statuses = [
            item.event["status"]
            for item in follow(host, launch_.run_dir, interval=0.5)
            if isinstance(item, EventItem) and item.event["type"] == "status"
        ]
        assert statuses[-1] == "completed"
        # The dashboard on this host: the run followed over SSH, the cost from the EC2 API.
        asyncio.run(_run_view_shows_run_and_cost(Path(launch_.run_dir).name))
        local = tmp_path / "downloaded"
        # scp when there is one: the OpenSSH client must find the key under the instance id.
        method = "scp" if shutil.which("scp") else "auto"
        report = download_run(host, launch_.run_dir, local, method=method)
        assert (local / "summary.json").is_file() and not report.missing
    finally:
        host.close()

    done = cli("hosts", "terminate", "gpu", "--yes")
    assert f"terminated {instance_id}" in done
    assert aws.instance(instance_id)["State"]["Name"] == "terminated"
    with pytest.raises(NoInstanceError):
        get_host("gpu").run("true")

    # The canary: nowhere on the host, in the run, the downloads, our config, logs or output.
    needle = canary.encode()
    assert _grep_tree(remote_work, needle) == []
    assert _grep_tree(local, needle) == []
    assert _grep_tree(profile.key_path.parent.parent, needle) == []  # config dir, keys
    data = aws.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    assert needle not in base64.b64decode(data["UserData"]["Value"])
    assert canary not in "\n".join(outputs)
    assert caplog.records and canary not in caplog.text
    # The loopback "instance" ran the same interpreter: nothing there saw AWS_* either.
    leaked = subprocess.run(
        ["grep", "-rl", canary, str(server.root)], capture_output=True, text=True
    )
    assert leaked.stdout == ""


async def _run_view_shows_run_and_cost(run_id: str) -> None:
    """The run view of a run on the EC2 host "gpu": the stream comes over SSH, and the
    header's cost line from the price worker, which asks the API (moto) for the
    instance's type and launch time (g4dn.xlarge: $0.526/h on demand)."""
    from textual.widgets import DataTable, Static

    from emoconsole.dashboard.app import Dashboard
    from emoconsole.dashboard.run_view import RunScreen
    from emoconsole.dashboard.runs_table import RunsScreen
    from tests.test_dashboard import wait_for

    app = Dashboard(open_run=("gpu", run_id), refresh_s=60.0, interval=0.5)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        view = app.screen
        assert isinstance(view, RunScreen)

        def header() -> str:
            return str(view.query_one("#run-header", Static).render())

        await wait_for(pilot, lambda: view.state.status == "completed", timeout=60,
                       what="the run's stream over SSH")  # fmt: skip
        await wait_for(pilot, lambda: "cost ~$0.526/h" in header(), timeout=30,
                       what="the EC2 price in the header")  # fmt: skip
        assert view.cost is not None and view.cost.usd_per_hour == 0.526
        # Launched moments ago: cents so far, and nothing left to pay for a finished run.
        assert 0 <= view.cost.so_far < 0.1 and view.cost.to_finish == 0.0, header()

        # Back to the runs table: the run's row on "gpu" has the price and its cost.
        await pilot.press("escape")
        runs = app.screen
        assert isinstance(runs, RunsScreen)

        def row():
            return next((r for r in runs.rows if r.id == run_id), None)

        await wait_for(pilot, lambda: (r := row()) is not None and r.usd_per_hour is not None,
                       timeout=60, what="the run's row with its EC2 price")  # fmt: skip
        listed = row()
        assert listed is not None and listed.usd_per_hour == 0.526
        cell = runs.query_one("#runs", DataTable).get_cell(listed.key, "cost")
        assert cell == f"${listed.cost_so_far:.2f}" and listed.cost_at_end is None  # ended


def test_listing_hosts_with_a_profile_loads_no_boto3_and_calls_no_aws(aws):
    """`hosts list` and get_host stay cheap and offline: the instance is looked up
    only when the host is first used."""
    aws.write(endpoint_url="http://127.0.0.1:9")  # nothing listens: any AWS call would fail
    code = (
        "import sys, json; from remote.config import load_hosts; "
        "from remote.hosts import get_host; "
        "hosts = load_hosts(); get_host('gpu'); "
        "print(json.dumps(['boto3' in sys.modules, hosts['gpu'].kind]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, "ec2"]


# -- clusters for torchrun (deploy --nodes K) --------------------------------------------------


def test_a_cluster_is_k_tagged_nodes_reachable_by_each_other_only(aws):
    from remote.ec2.cluster import CLUSTER_TAG, NODE_TAG, launch_cluster, terminate_cluster

    aws.write()
    profile = aws.profile()
    # moto has no placement groups: the request that asks for one is checked below
    cluster = launch_cluster(profile, 2, placement=False)
    assert len(cluster.instances) == 2 and cluster.placement_group is None
    raws = [aws.instance(i.id) for i in cluster.instances]
    assert [tags_of(r)[NODE_TAG] for r in raws] == ["0", "1"]
    assert {tags_of(r)[CLUSTER_TAG] for r in raws} == {cluster.id}
    assert all(tags_of(r)[MANAGED_TAG] == "true" for r in raws)
    assert cluster.rdzv_address == raws[0]["PrivateIpAddress"]
    assert cluster.private_ips == [r["PrivateIpAddress"] for r in raws]
    # Each node: the profile's SSH group (caller only) and the cluster's peer group.
    groups = {g["GroupId"] for r in raws for g in r["SecurityGroups"]}
    assert len(groups) == 2 and cluster.peer_group in groups
    peers = aws.ec2.describe_security_groups(GroupIds=[cluster.peer_group])["SecurityGroups"][0]
    assert tags_of(peers)[CLUSTER_TAG] == cluster.id and tags_of(peers)[MANAGED_TAG] == "true"
    (rule,) = peers["IpPermissions"]  # one inbound rule: its own members, nothing else
    assert rule["IpProtocol"] == "-1"
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [cluster.peer_group]
    assert not rule["IpRanges"] and not rule["Ipv6Ranges"]

    assert sorted(terminate_cluster(profile_client(profile), cluster.id)) == sorted(
        i.id for i in cluster.instances
    )
    assert not [r for r in aws.tagged("instances") if tags_of(r).get(CLUSTER_TAG) == cluster.id]
    assert cluster.peer_group not in {g["GroupId"] for g in aws.tagged("groups")}


def test_a_cluster_request_asks_for_all_nodes_in_one_placement_group(aws):
    from remote.ec2.cluster import CLUSTER_TAG, cluster_run_params

    aws.write()
    params = cluster_run_params(aws.profile(), "/dev/sda1", ["sg-ssh", "sg-peers"], "tok",
                                "gpu-abc", 3, "emoconsole-gpu-abc")  # fmt: skip
    assert params["MinCount"] == params["MaxCount"] == 3  # all or nothing
    assert params["Placement"]["GroupName"] == "emoconsole-gpu-abc"
    assert params["SecurityGroupIds"] == ["sg-ssh", "sg-peers"]
    (spec,) = [s for s in params["TagSpecifications"] if s["ResourceType"] == "instance"]
    assert {"Key": CLUSTER_TAG, "Value": "gpu-abc"} in spec["Tags"]
    assert params["MetadataOptions"]["HttpTokens"] == "required"


def test_a_cluster_launch_the_api_refuses_half_way_removes_its_groups(aws):
    from remote.ec2.api import LaunchError
    from remote.ec2.cluster import launch_cluster

    aws.write()
    before = {g["GroupId"] for g in aws.tagged("groups")}
    # moto does not implement CreatePlacementGroup: a real API refusal after the
    # security groups exist
    with pytest.raises(LaunchError, match="placement group") as info:
        launch_cluster(aws.profile(), 2)
    assert any("security group" in what for what in info.value.removed)
    assert {g["GroupId"] for g in aws.tagged("groups")} == before
    assert not aws.tagged("instances")
