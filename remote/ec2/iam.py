"""The instance profile that lets an instance write its runs to storage, and nothing else.

A profile with ``storage = "s3://bucket/prefix"`` gets a role
``emoconsole-<profile>`` that only EC2 may assume, with one inline policy:
objects under ``bucket/prefix/`` may be put, got, deleted and have their
multipart uploads aborted, and the bucket may be listed under that prefix
only. The role and its instance profile (same name) are tagged like
everything else emoconsole creates and are reused by later launches (the
policy is rewritten each time, so it follows the profile's current prefix).
A role or instance profile of that name without the managed tag, or with
any other policy on it, is refused rather than used: handing an instance
more than its prefix is exactly what this module exists to prevent.

IAM is global: the client has no region of its own, and ``endpoint_url``
(moto in tests) serves IAM beside EC2 and S3. The caller needs
``iam:PassRole`` on the role to launch an instance with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from remote.config import Ec2Profile
from remote.ec2.api import (
    MANAGED_TAG,
    PROFILE_TAG,
    Ec2Error,
    NotManagedError,
    Progress,
    aws_client,
    aws_errors,
    is_managed,
)
from remote.errors import ConfigError

POLICY_NAME = "emoconsole-storage"
OBJECT_ACTIONS = ("s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
TRUST_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
_ROLE_NAME_MAX = 64  # IAM's limit; instance profile names may be longer, roles may not


def iam_client(profile: Ec2Profile) -> Any:
    """A boto3 IAM client for the profile's account (its ``aws_profile``; its
    ``endpoint_url`` where set, e.g. moto); credentials from boto3's own chain."""
    return aws_client("iam", profile.region, profile.endpoint_url, profile.aws_profile)


def role_name(profile: Ec2Profile) -> str:
    """``emoconsole-<profile>``, shortened with a hash where IAM's 64 characters run out."""
    name = f"emoconsole-{profile.name}"
    if len(name) <= _ROLE_NAME_MAX:
        return name
    digest = hashlib.sha256(profile.name.encode()).hexdigest()[:8]
    return f"{name[: _ROLE_NAME_MAX - 9]}-{digest}"


def storage_policy(bucket: str, prefix: str) -> dict[str, Any]:
    """The one inline policy: that bucket prefix only.

    ``s3:ListBucket`` is granted on the bucket (where it is evaluated) but only
    for listings under the prefix: the ``s3:prefix`` condition, so the instance
    cannot list other runs' or other people's keys in a shared bucket."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RunObjects",
                "Effect": "Allow",
                "Action": list(OBJECT_ACTIONS),
                "Resource": [f"arn:aws:s3:::{bucket}/{prefix}/*"],
            },
            {
                "Sid": "ListRunPrefix",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}},
            },
        ],
    }


def _tags(profile: Ec2Profile) -> list[dict[str, str]]:
    return [{"Key": MANAGED_TAG, "Value": "true"}, {"Key": PROFILE_TAG, "Value": profile.name}]


def _check_ours(kind: str, name: str, tags: list[dict[str, str]], profile: Ec2Profile) -> None:
    found = {t["Key"]: t["Value"] for t in tags or []}
    if not is_managed(found):
        raise NotManagedError(
            f"IAM {kind} {name} exists but is not tagged {MANAGED_TAG}=true; emoconsole "
            "will not use or change it",
            hint=f"delete or rename that {kind}, or use another profile name",
        )
    if found.get(PROFILE_TAG, profile.name) != profile.name:
        raise NotManagedError(
            f"IAM {kind} {name} belongs to emoconsole profile {found[PROFILE_TAG]!r}, "
            f"not {profile.name!r}",
            hint="use another profile name",
        )


def _missing(exc: Ec2Error) -> bool:
    return exc.code == "NoSuchEntity"


def _found(doing: str, get: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """``get()``'s answer, or None when IAM says there is no such thing."""
    try:
        with aws_errors(doing):
            return get()
    except Ec2Error as exc:
        if not _missing(exc):
            raise
        return None


def ensure_instance_profile(
    profile: Ec2Profile, iam_client: Any, undo: Any, progress: Progress
) -> str:
    """The name of the profile's instance profile, created or reused, whose role may
    touch ``storage``'s prefix only. What is created is registered with ``undo``
    (a :class:`remote.ec2.launch.Undo`) right after it exists."""
    location = profile.storage_location
    if location is None:
        raise ConfigError(
            f"ec2.{profile.name}: no storage = ..., so no instance profile is needed or made"
        )
    bucket, prefix = location
    name = role_name(profile)
    iam = iam_client

    role = _found(f"looking up IAM role {name}", lambda: iam.get_role(RoleName=name)["Role"])
    if role is None:
        with aws_errors(f"creating IAM role {name}"):
            iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
                Description=f"emoconsole {profile.name}: write runs to s3://{bucket}/{prefix}/",
                Tags=_tags(profile),
            )
        undo.add(f"IAM role {name}", lambda: _delete_role(iam, name))
        progress(f"created IAM role {name} (EC2 may assume it)")
    else:
        with aws_errors(f"reading the tags of IAM role {name}"):
            tags = iam.list_role_tags(RoleName=name).get("Tags", [])
        _check_ours("role", name, tags, profile)
        _refuse_other_policies(iam, name)
        with aws_errors(f"resetting who may assume IAM role {name}"):
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(TRUST_POLICY))
    with aws_errors(f"writing the storage policy of IAM role {name}"):
        iam.put_role_policy(
            RoleName=name,
            PolicyName=POLICY_NAME,
            PolicyDocument=json.dumps(storage_policy(bucket, prefix)),
        )
    if role is None:
        undo.add(f"IAM policy {POLICY_NAME} of {name}", lambda: _delete_policy(iam, name))
    progress(f"IAM role {name} may use s3://{bucket}/{prefix}/ only")

    instance_profile = _found(
        f"looking up instance profile {name}",
        lambda: iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"],
    )
    if instance_profile is None:
        with aws_errors(f"creating instance profile {name}"):
            iam.create_instance_profile(InstanceProfileName=name, Tags=_tags(profile))
        undo.add(f"instance profile {name}", lambda: _delete_instance_profile(iam, name))
        roles: list[str] = []
    else:
        _check_ours("instance profile", name, instance_profile.get("Tags", []), profile)
        roles = [r["RoleName"] for r in instance_profile.get("Roles", [])]
    if roles and roles != [name]:
        raise NotManagedError(
            f"instance profile {name} holds role {', '.join(roles)}, not {name}; "
            "emoconsole will not hand that to an instance",
            hint=f"remove the role from it: aws iam remove-role-from-instance-profile "
            f"--instance-profile-name {name} --role-name {roles[0]}",
        )
    if not roles:
        with aws_errors(f"adding role {name} to instance profile {name}"):
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        undo.add(
            f"role {name} in instance profile {name}",
            lambda: _remove_role(iam, name),
        )
    return name


def _refuse_other_policies(iam: Any, name: str) -> None:
    """A reused role carries our one inline policy and nothing else."""
    with aws_errors(f"reading the policies of IAM role {name}"):
        inline = iam.list_role_policies(RoleName=name).get("PolicyNames", [])
        attached = iam.list_attached_role_policies(RoleName=name).get("AttachedPolicies", [])
    others = [p for p in inline if p != POLICY_NAME] + [p["PolicyName"] for p in attached]
    if others:
        raise Ec2Error(
            f"IAM role {name} has other policies ({', '.join(others)}); an instance gets "
            "its storage prefix and nothing more, so emoconsole will not use it",
            hint=f"remove those policies from {name}, or delete the role to have it remade",
        )


def _delete_role(iam: Any, name: str) -> None:
    with aws_errors(f"deleting IAM role {name}"):
        iam.delete_role(RoleName=name)


def _delete_policy(iam: Any, name: str) -> None:
    with aws_errors(f"deleting the policy of IAM role {name}"):
        iam.delete_role_policy(RoleName=name, PolicyName=POLICY_NAME)


def _delete_instance_profile(iam: Any, name: str) -> None:
    with aws_errors(f"deleting instance profile {name}"):
        iam.delete_instance_profile(InstanceProfileName=name)


def _remove_role(iam: Any, name: str) -> None:
    with aws_errors(f"removing role {name} from instance profile {name}"):
        iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name)
