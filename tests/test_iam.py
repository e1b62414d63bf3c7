"""The instance profile a profile with ``storage`` gets, against moto's IAM and EC2
(one ThreadedMotoServer serves both), and the storage/recovery config keys.

What is asserted is what IAM and EC2 themselves report back: the policy read
back from moto must grant the storage prefix and nothing else.
"""

# ruff: noqa: F811 (pytest fixtures imported by name, then requested by that name)
from __future__ import annotations

import json

import boto3
import pytest

from remote.config import load_ec2_profiles, load_hosts, parse_storage_url
from remote.ec2.api import MANAGED_TAG, PROFILE_TAG, LaunchError, NotManagedError
from remote.ec2.iam import POLICY_NAME, role_name
from remote.ec2.instances import resolve_targets, terminate
from remote.ec2.launch import launch
from remote.errors import ConfigError

# The moto server and a clean account per test, as tests/test_ec2.py makes them.
from tests.test_ec2 import REGION, Aws, aws, moto_endpoint  # noqa: F401

pytest_plugins = ["tests.sshd"]

STORAGE = "s3://emo-runs/team-a/runs"


def iam(aws: Aws):
    return boto3.client("iam", endpoint_url=aws.endpoint, region_name=REGION)


def policy_of(aws: Aws, role: str) -> dict:
    doc = iam(aws).get_role_policy(RoleName=role, PolicyName=POLICY_NAME)["PolicyDocument"]
    return json.loads(doc) if isinstance(doc, str) else doc


def prefix_only(bucket: str, prefix: str) -> list[dict]:
    """The statements the policy must hold, exactly."""
    return [
        {
            "Sid": "RunObjects",
            "Effect": "Allow",
            "Action": [
                "s3:PutObject",
                "s3:GetObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
            ],
            "Resource": [f"arn:aws:s3:::{bucket}/{prefix}/*"],
        },
        {
            "Sid": "ListRunPrefix",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}"],
            "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}},
        },
    ]


def iam_left(aws: Aws) -> tuple[list[str], list[str]]:
    client = iam(aws)
    roles = [r["RoleName"] for r in client.list_roles()["Roles"]]
    listed = client.list_instance_profiles()["InstanceProfiles"]
    profiles = [p["InstanceProfileName"] for p in listed]
    return roles, profiles


def test_storage_gives_the_instance_a_role_for_that_prefix_only_and_a_relaunch_reuses_it(aws):
    aws.write(storage=STORAGE)
    result = launch(aws.profile())
    raw = aws.instance(result.instance.id)
    assert raw["IamInstanceProfile"]["Arn"].endswith(":instance-profile/emoconsole-gpu")
    assert "IAM role emoconsole-gpu" in result.created
    assert "instance profile emoconsole-gpu" in result.created

    client = iam(aws)
    role = client.get_role(RoleName="emoconsole-gpu")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    tags = {t["Key"]: t["Value"] for t in client.list_role_tags(RoleName="emoconsole-gpu")["Tags"]}
    assert tags == {MANAGED_TAG: "true", PROFILE_TAG: "gpu"}
    # One inline policy, nothing attached, and it grants the prefix and nothing else.
    assert client.list_role_policies(RoleName="emoconsole-gpu")["PolicyNames"] == [POLICY_NAME]
    assert client.list_attached_role_policies(RoleName="emoconsole-gpu")["AttachedPolicies"] == []
    assert policy_of(aws, "emoconsole-gpu")["Statement"] == prefix_only("emo-runs", "team-a/runs")
    ip = client.get_instance_profile(InstanceProfileName="emoconsole-gpu")["InstanceProfile"]
    assert [r["RoleName"] for r in ip["Roles"]] == ["emoconsole-gpu"]

    # The instance goes; a new launch with another prefix reuses the role and instance
    # profile (no second one) and the policy follows the profile's prefix.
    terminate(resolve_targets("gpu"))
    aws.write(storage="s3://emo-runs/team-b")
    again = launch(aws.profile())
    assert again.instance.id != result.instance.id and not again.reused
    assert not any("IAM" in c or "instance profile" in c for c in again.created)
    assert (
        aws.instance(again.instance.id)["IamInstanceProfile"]["Arn"]
        == (raw["IamInstanceProfile"]["Arn"])
    )
    assert policy_of(aws, "emoconsole-gpu")["Statement"] == prefix_only("emo-runs", "team-b")
    assert iam_left(aws) == (["emoconsole-gpu"], ["emoconsole-gpu"])


def test_without_storage_the_instance_has_no_instance_profile_until_storage_is_added(aws):
    aws.write()
    first = launch(aws.profile())
    assert "IamInstanceProfile" not in aws.instance(first.instance.id)
    assert iam_left(aws) == ([], [])
    # storage added later: the running instance is reused and gets the profile attached.
    aws.write(storage=STORAGE)
    again = launch(aws.profile())
    assert again.reused and again.instance.id == first.instance.id
    (association,) = aws.ec2.describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [first.instance.id]}]
    )["IamInstanceProfileAssociations"]
    assert association["IamInstanceProfile"]["Arn"].endswith("/emoconsole-gpu")


def test_a_failed_launch_removes_the_role_and_instance_profile_it_created(aws):
    # Another region's zone: RunInstances fails after the IAM parts exist.
    aws.write(storage=STORAGE, availability_zone="us-west-2a")
    with pytest.raises(LaunchError) as info:
        launch(aws.profile())
    message = str(info.value)
    assert "IAM role emoconsole-gpu" in message and "instance profile emoconsole-gpu" in message
    assert "COULD NOT REMOVE" not in message
    assert iam_left(aws) == ([], [])
    assert aws.tagged("instances") == [] and aws.tagged("groups") == []


def test_a_role_of_that_name_not_made_by_emoconsole_is_refused(aws):
    iam(aws).create_role(RoleName="emoconsole-gpu", AssumeRolePolicyDocument="{}")
    aws.write(storage=STORAGE)
    with pytest.raises(LaunchError) as info:
        launch(aws.profile())
    assert isinstance(info.value.__cause__, NotManagedError)
    assert f"not tagged {MANAGED_TAG}=true" in str(info.value)
    # Left exactly as it was: no policy added, no instance profile made.
    assert iam(aws).list_role_policies(RoleName="emoconsole-gpu")["PolicyNames"] == []
    assert iam_left(aws) == (["emoconsole-gpu"], [])
    assert aws.tagged("instances") == [] and aws.tagged("groups") == []


def test_a_managed_role_with_another_policy_is_refused(aws):
    aws.write(storage=STORAGE)
    launch(aws.profile())
    terminate(resolve_targets("gpu"))
    everything = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}  # fmt: skip
    iam(aws).put_role_policy(
        RoleName="emoconsole-gpu", PolicyName="added-by-hand", PolicyDocument=json.dumps(everything)
    )
    with pytest.raises(LaunchError, match=r"other policies \(added-by-hand\)"):
        launch(aws.profile())
    assert aws.tagged("instances") == []


def test_long_profile_names_still_make_a_valid_role_name():
    from remote.config import Ec2Profile

    name = role_name(Ec2Profile(name="p" * 64, ami="ami-1"))
    assert len(name) == 64 and name.startswith("emoconsole-ppp")
    assert name != role_name(Ec2Profile(name="p" * 63, ami="ami-1"))


# -- config -------------------------------------------------------------------------------------


def test_storage_and_recovery_keys_parse(aws):
    aws.write(
        spot=True,
        storage="s3://emo-runs/team-a/",
        recover=3,
        fallback_on_demand=True,
        fallback_zones=["us-east-1b", "us-east-1c"],
        imds_url="http://127.0.0.1:8999/",
        shutdown_lead_minutes=7,
    )
    profile = aws.profile()
    assert profile.storage_location == ("emo-runs", "team-a")
    assert (profile.recover, profile.fallback_on_demand) == (3, True)
    assert profile.fallback_zones == ("us-east-1b", "us-east-1c")
    assert profile.metadata_url == "http://127.0.0.1:8999"
    assert profile.shutdown_lead_minutes == 7.0
    assert load_hosts()["gpu"].storage == "s3://emo-runs/team-a/"
    aws.write()
    plain = aws.profile()
    assert (plain.storage, plain.recover, plain.fallback_zones) == (None, 0, ())
    assert plain.metadata_url == "http://169.254.169.254" and plain.shutdown_lead_minutes == 5


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"storage": "s3://emo-runs"}, "a prefix is required"),
        ({"storage": "gs://emo-runs/x"}, "only s3:// storage"),
        ({"storage": "s3://Emo_Runs/x"}, "not an S3 bucket name"),
        ({"storage": "s3://emo-runs/a*"}, r"\* \? and \$ are wildcards"),
        ({"storage": "s3://emo-runs/a/../b"}, "'.' or '..'"),
        ({"recover": -1}, "recover must be 0 or more"),
        ({"recover": True}, "recover must be a int"),
        ({"spot": True, "recover": 2}, "nothing to recover from"),
        ({"on_shutdown": "terminate", "recover": 1}, "nothing to recover from"),
        ({"fallback_on_demand": True}, "on-demand already"),
        ({"fallback_zones": ["east"]}, "not an availability zone"),
        ({"fallback_zones": ["us-west-2a"]}, "not in the profile's region us-east-1"),
        ({"fallback_zones": "us-east-1b"}, "fallback_zones must be a list"),
        ({"imds_url": "169.254.169.254"}, "not an http:// address"),
        ({"shutdown_lead_minutes": 0}, "shutdown_lead_minutes must be more than 0"),
        ({"max_hours": 1, "shutdown_lead_minutes": 60}, "less than max_hours"),
    ],
)
def test_bad_storage_and_recovery_keys_name_file_key_and_value(aws, fields, complaint):
    aws.write(**fields)
    with pytest.raises(ConfigError, match=complaint) as info:
        load_ec2_profiles()
    assert str(aws.config) in str(info.value) and "ec2.gpu" in str(info.value)


def test_recovery_always_needs_storage(aws):
    aws.write(recover=1)  # on-demand, stops: still restored from storage, claimed there
    with pytest.raises(ConfigError, match="recover = 1 without storage"):
        aws.profile()


def test_ssh_hosts_take_storage_too(aws):
    aws.config.parent.mkdir(parents=True, exist_ok=True)
    aws.config.write_text('[hosts.box]\nhost = "box"\nstorage = "s3://emo-runs/box"\n')
    assert load_hosts()["box"].storage == "s3://emo-runs/box"
    aws.config.write_text('[hosts.box]\nhost = "box"\nstorage = "s3://emo-runs"\n')
    with pytest.raises(ConfigError, match=r"hosts\.box\.storage = 's3://emo-runs'"):
        load_hosts()
    aws.config.write_text('[hosts.here]\nkind = "local"\nstorage = "s3://emo-runs/x"\n')
    with pytest.raises(ConfigError, match="on this machine already"):
        load_hosts()


def test_storage_url_errors_show_the_value_and_an_example():
    with pytest.raises(ConfigError) as info:
        parse_storage_url("s3://1.2.3.4/x", "f.toml: ec2.gpu.storage")
    text = str(info.value)
    assert text.startswith("f.toml: ec2.gpu.storage = 's3://1.2.3.4/x'")
    assert "IP address" in text and "s3://my-bucket/" in text


def test_every_node_of_a_cluster_gets_the_instance_profile(aws):
    from remote.ec2.cluster import launch_cluster
    from tests.test_ec2 import recording_client

    aws.write(storage=STORAGE)
    profile = aws.profile()
    sent: list[dict[str, list[str]]] = []
    cluster = launch_cluster(profile, 2, placement=False, client=recording_client(profile, sent))
    (request,) = [r for r in sent if r.get("Action") == ["RunInstances"]]
    assert request["MinCount"] == request["MaxCount"] == ["2"]
    assert request["IamInstanceProfile.Name"] == ["emoconsole-gpu"]  # one request, all nodes
    # moto associates a request's instance profile with its first instance only.
    first = aws.instance(cluster.instances[0].id)
    assert first["IamInstanceProfile"]["Arn"].endswith(":instance-profile/emoconsole-gpu")
