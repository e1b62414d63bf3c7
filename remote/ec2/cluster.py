"""K EC2 instances for one torchrun job: ``emoconsole deploy MODEL --host EC2 --nodes K``.

What a single-instance launch does (tags, IMDSv2, max lifetime, a key pair made
here, SSH from the caller's address only, undo of a half-done launch), for K
instances in one request, plus:

- a cluster placement group, so the nodes sit close together (low latency for
  the all-reduce); ``placement=False`` for instance types that cannot use one;
- a security group of the cluster's own, whose one inbound rule lets in its own
  members, every port: torchrun's rendezvous and the gloo/NCCL traffic between
  nodes, and nothing from anywhere else.

Every instance is tagged with the cluster id and its node index; terminating a
cluster removes its instances, then its placement group and security group.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from remote.config import Ec2Profile
from remote.ec2.api import (
    LAUNCH_TAG,
    LIVE_STATES,
    MANAGED_TAG,
    Ec2Error,
    Instance,
    LaunchError,
    Progress,
    aws_errors,
    describe_all,
    is_managed,
    profile_client,
    tag_dict,
)
from remote.ec2.host import Ec2Host
from remote.ec2.iam import ensure_instance_profile, iam_client
from remote.ec2.launch import (
    Undo,
    base_tags,
    caller_cidr,
    connect_address,
    default_vpc_id,
    delete_security_group,
    ensure_key_pair,
    ensure_security_group,
    request_instances,
    root_device_name,
    run_params,
    tag_spec,
    terminate_launch,
    wait_for,
)
from remote.ssh import SSHTarget

CLUSTER_TAG = "emoconsole:cluster"
NODE_TAG = "emoconsole:node"


@dataclass(frozen=True)
class Cluster:
    id: str
    profile: str
    instances: list[Instance]  # in node order: node 0 hosts the rendezvous
    private_ips: list[str]
    peer_group: str
    placement_group: str | None

    @property
    def rdzv_address(self) -> str:
        """The first node's private address: the peer group admits members only."""
        return self.private_ips[0]


def cluster_run_params(
    profile: Ec2Profile,
    root_device: str,
    groups: list[str],
    token: str,
    cluster_id: str,
    nodes: int,
    placement_group: str | None,
    instance_profile: str | None = None,
) -> dict[str, Any]:
    """The one RunInstances request for all K nodes (all or nothing: MinCount = K)."""
    params = run_params(
        profile, root_device, profile.key_pair_name, groups[0], token, instance_profile
    )
    params["MinCount"] = params["MaxCount"] = nodes
    params["SecurityGroupIds"] = groups
    for spec in params["TagSpecifications"]:
        if spec["ResourceType"] == "instance":
            spec["Tags"].append({"Key": CLUSTER_TAG, "Value": cluster_id})
    if placement_group:
        params["Placement"] = {**params.get("Placement", {}), "GroupName": placement_group}
    return params


def create_peer_group(
    client: Any, profile: Ec2Profile, cluster_id: str, undo: Undo, say: Progress
) -> str:
    """A security group whose members may reach each other on every port, and whom
    nothing else may reach."""
    name = f"emoconsole-{cluster_id}-peers"
    tags = {**base_tags(profile), CLUSTER_TAG: cluster_id, "Name": name}
    with aws_errors(f"creating security group {name}"):
        group_id = client.create_security_group(
            GroupName=name,
            Description=f"emoconsole cluster {cluster_id}: traffic between its nodes only",
            VpcId=default_vpc_id(client, profile),
            TagSpecifications=[tag_spec("security-group", tags)],
        )["GroupId"]
    undo.add(f"security group {group_id}", lambda: delete_security_group(client, group_id))
    with aws_errors(f"letting the members of {group_id} reach each other"):
        client.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[
                {
                    "IpProtocol": "-1",
                    "UserIdGroupPairs": [
                        {"GroupId": group_id, "Description": "nodes of this cluster"}
                    ],
                }
            ],
        )
    say(f"created security group {group_id} ({name}): its members only")
    return group_id


def create_placement_group(
    client: Any, profile: Ec2Profile, cluster_id: str, undo: Undo, say: Progress
) -> str:
    name = f"emoconsole-{cluster_id}"
    tags = {**base_tags(profile), CLUSTER_TAG: cluster_id, "Name": name}
    with aws_errors(f"creating placement group {name}"):
        client.create_placement_group(
            GroupName=name,
            Strategy="cluster",
            TagSpecifications=[tag_spec("placement-group", tags)],
        )
    undo.add(f"placement group {name}", lambda: _delete_placement_group(client, name))
    say(f"created placement group {name} (cluster strategy)")
    return name


def _delete_placement_group(client: Any, name: str) -> None:
    with aws_errors(f"deleting placement group {name}"):
        client.delete_placement_group(GroupName=name)


def launch_cluster(
    profile: Ec2Profile,
    nodes: int,
    *,
    placement: bool = True,
    progress: Progress | None = None,
    client: Any = None,
    iam: Any = None,
) -> Cluster:
    """K new tagged instances, running, in node order. A failure part way removes
    what the launch created and raises :class:`LaunchError`. With ``storage`` in the
    profile, each node gets the instance profile for that prefix, as in ``launch``."""
    if nodes < 2:
        raise Ec2Error(f"a cluster needs 2 or more nodes, got {nodes}")
    say = progress or (lambda _msg: None)
    client = client or profile_client(profile)
    cidr = caller_cidr(profile)
    root_device = root_device_name(client, profile)
    token = uuid.uuid4().hex
    cluster_id = f"{profile.name}-{token[:8]}"
    undo = Undo()
    try:
        ensure_key_pair(client, profile, undo, say)
        ssh_group = ensure_security_group(client, profile, cidr, undo, say)
        peers = create_peer_group(client, profile, cluster_id, undo, say)
        group = (
            create_placement_group(client, profile, cluster_id, undo, say) if placement else None
        )
        instance_profile = None
        if profile.storage is not None:
            iam = iam if iam is not None else iam_client(profile)
            instance_profile = ensure_instance_profile(profile, iam, undo, say)
        undo.add("the cluster's instances", lambda: terminate_launch(client, token))
        params = cluster_run_params(
            profile,
            root_device,
            [ssh_group, peers],
            token,
            cluster_id,
            nodes,
            group,
            instance_profile,
        )
        say(f"launching {nodes} x {profile.instance_type} (cluster {cluster_id})")
        answer = request_instances(client, params, f"{nodes} x {profile.instance_type}")
        ids = [raw["InstanceId"] for raw in answer["Instances"]]
        for index, instance_id in enumerate(ids):
            with aws_errors(f"tagging {instance_id} as node {index}"):
                client.create_tags(
                    Resources=[instance_id], Tags=[{"Key": NODE_TAG, "Value": str(index)}]
                )
        wait_for(client, "instance_running", ids, f"waiting for {', '.join(ids)} to run")
        cluster = describe_cluster(client, cluster_id)
        say(f"cluster {cluster_id}: {', '.join(i.id for i in cluster.instances)} running")
    except BaseException as exc:
        say("cluster launch failed; removing what it created")
        removed, left = undo.run()
        if not isinstance(exc, Exception):
            raise
        raise LaunchError(f"cluster launch of {profile.name} failed: {exc}", removed, left) from exc
    return cluster


def describe_cluster(client: Any, cluster_id: str) -> Cluster:
    """A cluster's live instances in node order, its private addresses and groups."""
    with aws_errors(f"listing cluster {cluster_id}"):
        rows = describe_all(
            client,
            Filters=[
                {"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster_id]},
                {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
            ],
        )
    rows = [r for r in rows if is_managed(tag_dict(r))]
    if not rows:
        raise Ec2Error(f"no live instances in cluster {cluster_id}")
    rows.sort(key=lambda r: int(tag_dict(r).get(NODE_TAG, "0")))
    region = client.meta.region_name
    peer = next(
        g["GroupId"]
        for g in rows[0].get("SecurityGroups") or []
        if g.get("GroupName", "").endswith("-peers")
    )
    return Cluster(
        id=cluster_id,
        profile=tag_dict(rows[0]).get("emoconsole:profile", "?"),
        instances=[Instance.from_api(r, region) for r in rows],
        private_ips=[r.get("PrivateIpAddress", "") for r in rows],
        peer_group=peer,
        placement_group=(rows[0].get("Placement") or {}).get("GroupName") or None,
    )


def terminate_cluster(client: Any, cluster_id: str, progress: Progress | None = None) -> list[str]:
    """Terminate the cluster's tagged instances, then its security and placement groups."""
    say = progress or (lambda _msg: None)
    cluster = describe_cluster(client, cluster_id)
    ids = [i.id for i in cluster.instances]
    say(f"terminating {', '.join(ids)}")
    with aws_errors(f"terminating {', '.join(ids)}"):
        client.terminate_instances(InstanceIds=ids)
    wait_for(client, "instance_terminated", ids, f"waiting for {', '.join(ids)} to terminate")
    delete_security_group(client, cluster.peer_group)
    say(f"deleted security group {cluster.peer_group}")
    if cluster.placement_group:
        _delete_placement_group(client, cluster.placement_group)
        say(f"deleted placement group {cluster.placement_group}")
    return ids


class Ec2NodeHost(Ec2Host):
    """One node of a cluster as an SSH host: that instance, not the profile's newest."""

    def __init__(self, profile: Ec2Profile, instance_id: str, index: int, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self.name = f"{profile.name}/node{index}"
        self.instance_id = instance_id

    def resolve(self) -> SSHTarget:
        from remote.ec2.api import describe_instance

        instance = describe_instance(self.ec2(), self.instance_id)
        if instance is None or instance.state != "running" or not instance.managed:
            state = instance.state if instance else "gone"
            raise Ec2Error(f"cluster node {self.instance_id} is {state}, not running")
        host, port = connect_address(self.profile, instance)
        self.instance = instance
        self.alias, self.port = host, port
        self.identity_file = str(self.profile.key_path)
        target = super(Ec2Host, self).resolve()
        target.host_key_alias = instance.id
        return target


__all__ = [
    "CLUSTER_TAG",
    "LAUNCH_TAG",
    "MANAGED_TAG",
    "NODE_TAG",
    "Cluster",
    "Ec2NodeHost",
    "cluster_run_params",
    "describe_cluster",
    "launch_cluster",
    "terminate_cluster",
]
