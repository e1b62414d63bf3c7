"""Managed runs on EC2 recovered on a new instance, end to end against real parts:
moto's server for EC2, S3 and IAM, two loopback sshds as the old and the new
instance, and a loopback stand-in for the instance metadata service (IMDSv2),
which cannot run outside EC2 (tests/imds.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
from typer.testing import CliRunner

from emoconsole.cli import app
from tests.aws import BUCKET, REGION, reset_moto
from tests.conftest import SMALL_MODEL, trainers_cmd

pytest_plugins = ["tests.sshd", "tests.aws", "tests.imds"]

CALLER = "203.0.113.7"
STORAGE = f"s3://{BUCKET}/runs"
EPOCHS = 3
runner = CliRunner()


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def events_of(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line being written
            out.append(json.loads(line))
    return out


def status_of(run_dir: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((run_dir / "run.json").read_text()).get("status")
    return None


class Cloud:
    """moto's account with a bucket, the profile file, and the launched instances."""

    def __init__(self, endpoint: str, config: Path, work: Path, imds_url: str) -> None:
        reset_moto(endpoint)
        self.endpoint, self.config, self.work, self.imds_url = endpoint, config, work, imds_url
        self.ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=REGION)
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        self.s3.create_bucket(Bucket=BUCKET)
        images = self.ec2.describe_images(Filters=[{"Name": "name", "Values": ["ubuntu*"]}])
        self.ami = images["Images"][0]["ImageId"]

    def profile(self, server, **extra: object) -> None:
        """[ec2.gpu], its instance reached at ``server`` (moto's addresses go nowhere)."""
        values = {
            "region": REGION, "ami": self.ami, "instance_type": "g4dn.xlarge",
            "endpoint_url": self.endpoint, "caller_ip": CALLER,
            "address": f"127.0.0.1:{server.port}", "user": server.user,
            "python": sys.executable, "workdir": str(self.work), "spot": True,
            "on_shutdown": "terminate", "storage": STORAGE, "recover": 1,
            "imds_url": self.imds_url, **extra,
        }  # fmt: skip
        body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"[ec2.gpu]\n{body}")

    def live(self) -> list[dict]:
        rows = self.ec2.describe_instances()["Reservations"]
        return [
            i for r in rows for i in r["Instances"] if i["State"]["Name"] not in ("terminated",)
        ]

    def authorize(self, *servers) -> None:
        """What EC2 does with the key pair: its public half in authorized_keys."""
        (pair,) = self.ec2.describe_key_pairs(KeyNames=["emoconsole-gpu"], IncludePublicKey=True)[
            "KeyPairs"
        ]
        for server in servers:
            with open(server.root / "authorized_keys", "a") as fh:
                fh.write(pair["PublicKey"] + "\n")

    def stored(self, run_id: str, name: str) -> dict | None:
        try:
            body = self.s3.get_object(Bucket=BUCKET, Key=f"runs/{run_id}/{name}")["Body"]
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(body.read())


def streamed_seqs(run_dir: Path, after_seq: int = 0) -> list[int]:
    """The seqs the console's watch stream gives for the run on host gpu's instance,
    from ``after_seq`` until the run's terminal status."""
    from remote.hosts import get_host
    from remote.watch import EventItem, follow

    host = get_host("gpu")
    try:
        items = follow(host, str(run_dir), after_seq=after_seq, interval=0.5)
        return [item.event["seq"] for item in items if isinstance(item, EventItem)]
    finally:
        host.close()


def cli(*args: str, code: int = 0) -> str:
    """The command's stdout (ids, JSON); stderr's progress only in a failure's message."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.stdout


def test_a_preempted_spot_run_recovers_on_a_new_instance_and_ends_as_if_uninterrupted(
    moto_endpoint, fake_aws_env, ssh_env, make_sshd, imds, tmp_path, monkeypatch,
    small_corpus, feature_cache,
):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    old_box, new_box = make_sshd(), make_sshd()
    work = tmp_path / "instance-disk"
    cloud = Cloud(moto_endpoint, ssh_env.config_dir / "emoconsole" / "hosts.toml", work, imds.url)
    cloud.profile(old_box, notice_poll_s=0.2)
    settings = [*SMALL_MODEL, f"train.epochs={EPOCHS}", f"data.cache_dir={feature_cache}"]

    # The uninterrupted reference trains meanwhile: this test mostly waits (polls, SSH).
    ref_cmd = trainers_cmd(
        "train", "hybrid-attention", "--data", str(small_corpus), "--out",
        str(tmp_path / "ref"), "--run-id", "straight",
        *[arg for item in settings for arg in ("--set", item)],
    )  # fmt: skip
    ref = subprocess.Popen(ref_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    old_id = cli("hosts", "launch", "gpu").strip().splitlines()[-1]
    cloud.authorize(old_box, new_box)
    cli("hosts", "trust", "gpu", "--fingerprint", old_box.fingerprint())
    sets = [arg for item in settings for arg in ("--set", item)]
    run_id = (
        cli(
            "deploy", "hybrid-attention", "--host", "gpu", "--remote-data", str(small_corpus), *sets
        )
        .strip()
        .splitlines()[-1]
    )
    run_dir = work / "runs" / run_id

    # Epoch 2 starts; the spot market takes the instance back (two minutes' notice).
    def in_epoch_2() -> bool:
        events = events_of(run_dir / "events.jsonl")
        return any(e["type"] == "epoch_start" and e["epoch"] >= 2 for e in events)

    wait_for(in_epoch_2, 240, "epoch 2")
    announced = time.time()
    at = imds.announce("terminate", in_s=120)
    stored = wait_for(
        lambda: (cloud.stored(run_id, "notice.json") or {}).get("pushed_at")
        and cloud.stored(run_id, "run.json"),
        120, "the preempted run in storage",
    )  # fmt: skip
    assert stored["status"] == "preempted"
    notice = cloud.stored(run_id, "notice.json")
    assert (notice["source"], notice["action"], notice["time"]) == ("spot", "terminate", int(at))
    assert announced <= notice["noticed_at"] <= notice["checkpoint_at"] <= notice["pushed_at"]
    assert notice["pushed_at"] - notice["noticed_at"] < 60  # well inside AWS's 120 s
    assert imds.refused == []  # every metadata GET carried its IMDSv2 token
    before = streamed_seqs(run_dir)  # what the console saw on the old instance
    cloud.ec2.terminate_instances(InstanceIds=[old_id])
    shutil.rmtree(work)  # the root volume went with the instance
    imds.instance_action = None  # the new instance's metadata announces nothing
    cloud.profile(new_box, notice_poll_s=0.2)

    # The next console command notices and recovers, with no one at the keyboard.
    listing = runner.invoke(app, ["runs", "--json"])
    assert listing.exit_code == 0, listing.output
    assert "recovering it (1 of 1)" in listing.output
    (new,) = cloud.live()
    assert new["InstanceId"] != old_id
    assert new["IamInstanceProfile"]["Arn"].endswith("/emoconsole-gpu")
    wait_for(lambda: status_of(run_dir) == "completed", 300, "the resumed run to complete")
    after = streamed_seqs(run_dir, after_seq=before[-1])  # on the new one, from the last seq
    assert before + after == list(range(1, len(before) + len(after) + 1))
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["recoveries"] == 1
    assert [span["instance_id"] for span in manifest["instances"]] == [old_id, new["InstanceId"]]

    # Exactly the run that would have finished without the interruption.
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err.decode(errors="replace")[-2000:]
    a = json.loads((tmp_path / "ref" / "straight" / "summary.json").read_text())
    b = json.loads((run_dir / "summary.json").read_text())
    for split in ("val", "test"):
        for key in ("accuracy", "macro_f1", "uar", "loss", "confusion"):
            assert b[split][key] == a[split][key], (split, key)

    events = events_of(run_dir / "events.jsonl")
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # every seq once, in order
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert statuses.index("preempted") < statuses.index("resumed")
    first_stop = next(e for e in events if e.get("status") == "preempted")
    assert any(e["type"] == "val" and e["seq"] < first_stop["seq"] for e in events)
    assert statuses[-1] == "completed"
    rows = json.loads(listing.stdout.strip().splitlines()[-1])
    row = next(r for r in rows if r["id"] == run_id)
    assert row["recoveries"] == 1


def test_two_consoles_noticing_one_dead_instance_launch_one_replacement(
    moto_endpoint, fake_aws_env, ssh_env, make_sshd, imds, tmp_path, monkeypatch
):
    """Two laptops (each its own ledger, so no shared file lock) run `emoconsole runs`
    at once for a managed run whose instance was terminated: the create-only claim
    in storage lets one of them launch; the other says so and launches nothing."""
    from remote.recovery import ManagedRun

    monkeypatch.chdir(tmp_path)
    box = make_sshd()  # answers SSH, but lets no key in: the winner stops after launching
    cloud = Cloud(moto_endpoint, ssh_env.config_dir / "emoconsole" / "hosts.toml",
                  tmp_path / "disk", imds.url)  # fmt: skip
    cloud.profile(box)
    dead = cloud.ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1)["Instances"][0]
    cloud.ec2.terminate_instances(InstanceIds=[dead["InstanceId"]])
    consoles = []
    for name in ("laptop-a", "laptop-b"):
        state = tmp_path / name
        monkeypatch.setenv("EMOCONSOLE_STATE", str(state))
        ManagedRun(
            run_id="hybrid-attention-r1", host="gpu", run_dir=str(tmp_path / "disk/runs/r1"),
            model="hybrid-attention", recover=2, storage=STORAGE,
            instance_id=dead["InstanceId"],
        ).save()  # fmt: skip
        env = {**os.environ, "EMOCONSOLE_STATE": str(state)}
        argv = [sys.executable, "-m", "emoconsole", "runs", "--host", "gpu"]
        consoles.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True))  # fmt: skip
    said = "\n".join(proc.communicate(timeout=180)[0] for proc in consoles)

    assert said.count("recovering it (1 of 2)") == 1, said
    assert said.count("recovery 1 was claimed by another console") == 1, said
    assert len(cloud.live()) == 1  # one replacement
    claims = cloud.s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/hybrid-attention-r1/recoveries/")
    assert [c["Key"].rsplit("/", 1)[1] for c in claims["Contents"]] == ["1.json"]


def test_an_instance_ended_by_hand_is_not_an_interruption(tmp_path, monkeypatch):
    """`hosts terminate` / `hosts stop` release the managed runs on those instances: the
    next check leaves them alone (no AWS call is even made for them)."""
    from remote.recovery import ManagedRun, check_managed, managed_runs, release

    monkeypatch.setenv("EMOCONSOLE_STATE", str(tmp_path / "state"))
    for run_id, instance in (("r-kept", "i-0aaa"), ("r-ended", "i-0bbb")):
        ManagedRun(run_id=run_id, host="gpu", run_dir=f"/w/runs/{run_id}", model="m",
                   recover=1, storage=STORAGE, instance_id=instance).save()  # fmt: skip
    released = release({"i-0bbb"}, "its instance was terminated by `emoconsole hosts terminate`")
    assert [run.run_id for run in released] == ["r-ended"]
    states = {run.run_id: run.state for run in managed_runs()}
    assert states == {"r-kept": "watching", "r-ended": "finished"}
    said: list[str] = []
    checked = check_managed(said.append, only="r-ended")
    assert [run.state for run in checked] == ["finished"] and said == []
