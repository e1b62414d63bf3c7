"""Managed runs: a run on EC2 that is recovered on a new instance when its own is gone.

``emoconsole deploy MODEL --host PROFILE --recover N`` (or ``recover = N`` in the
profile) makes a run *managed*: the ledger (:mod:`remote.ledger`) keeps a
:class:`ManagedRun` row for it, and every ``emoconsole runs``, ``monitor`` or
dashboard refresh calls :func:`check_managed`, which asks EC2 about the run's
instance. When the instance is terminated, shutting down or stopped (a spot
interruption, the ``max_hours`` shutdown, a dead machine) and the run had not
ended by itself (its run.json in storage is not completed, failed or stopped by
the user), the run is recovered: a new instance of the profile is launched,
the code shipped, the data uploaded again when it came from this machine, the
run directory restored from the profile's ``storage`` on the new instance
(:mod:`remote.onhost.restore`, with the instance role's credentials), and
``trainers resume`` started there with the same run id. The resumed run goes on
from its last checkpoint; its events continue the same seq.

Why it looks like this:

* **No daemon on the laptop.** The console need not stay open: the state is
  in the ledger, and whichever console command runs next does the recovery. A
  laptop that is off for a day means the run waits a day (its instance is gone;
  only S3 storage costs money meanwhile).
* **One replacement, whoever notices.** Two consoles (two terminals, or two
  laptops) may notice the same dead instance at once. Before launching, a
  console claims recovery number n with a conditional write to storage
  (``PutObject`` with ``If-None-Match: *`` of ``<run>/recoveries/<n>.json``):
  S3 lets exactly one writer create it; the other console sees the claim and
  launches nothing. On one machine a file lock around the check keeps a second
  process from even asking. The launch request's token is derived from the run
  id and n as well, so a retried request creates no second instance on EC2.
* **The new instance's host key.** Nobody is at the keyboard to type a
  fingerprint. The instance was launched a moment ago by this console for this
  run (its id is in the API's answer), so its key is taken on first contact
  and recorded under that instance id (said in the progress line and the
  README), the same trust SkyPilot and most cluster tools give instances they
  create. A key recorded for another instance id never vouches for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from remote import ledger
from remote.errors import RemoteError

Progress = Callable[[str], None]

# Statuses after which a run is not recovered: it ended by itself or was stopped by its user.
FINISHED = ("completed", "failed", "stopped")
# A managed run's states after which it is never checked again (no AWS call, no import).
ENDED = ("finished", "exhausted")
# Instance states that mean the run's machine is gone (or going).
GONE_STATES = ("shutting-down", "terminated", "stopping", "stopped")


class RecoveryError(RemoteError):
    """A recovery could not be finished; the run stays managed and is retried next time."""


@dataclass
class ManagedRun:
    """A managed run as the ledger remembers it (its latest row)."""

    run_id: str
    host: str  # the EC2 profile's name
    run_dir: str
    model: str
    recover: int  # recoveries allowed
    storage: str  # s3://bucket/prefix
    instance_id: str | None = None
    recoveries: int = 0
    data: str | None = None  # the data set's path on the host
    local_data: str | None = None  # uploaded from here: uploaded again on recovery
    env: str = "auto"
    state: str = "watching"  # watching | recovering | finished | exhausted
    note: str = ""  # the last thing that happened, for `runs`
    instances: list[dict[str, Any]] = field(default_factory=list)  # remote.ec2.prices spans

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ManagedRun | None:
        managed = row.get("managed")
        if not isinstance(managed, dict):
            return None
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in managed.items() if k in known}
        values.update(run_id=row["run_id"], host=row["host"], run_dir=row["run_dir"])
        values.setdefault("model", row.get("model", ""))
        try:
            return cls(**values)
        except TypeError:  # a row from a newer console without a field this one needs
            return None

    def save(self, **extra: Any) -> None:
        """Append this state to the ledger (the latest row of a run is its state)."""
        managed = {k: v for k, v in asdict(self).items() if k not in ("run_id", "host", "run_dir")}
        ledger.record(self.run_id, self.host, self.run_dir, self.model, managed=managed, **extra)


def managed_runs() -> list[ManagedRun]:
    """Every managed run's latest state, in the order they were first deployed."""
    latest: dict[str, dict[str, Any]] = {}
    for row in ledger.entries():
        latest[row["run_id"]] = row
    runs = [ManagedRun.from_row(row) for row in latest.values()]
    return [run for run in runs if run is not None]


def release(instance_ids: set[str], why: str) -> list[ManagedRun]:
    """Stop managing the runs on ``instance_ids`` (the user ended those instances)."""
    released = []
    for run in managed_runs():
        if run.instance_id in instance_ids and run.state not in ENDED:
            run.state, run.note = "finished", why
            _end_span(run)
            run.save()
            released.append(run)
    return released


def span(instance: Any, start: float | None = None) -> dict[str, Any]:
    """The record of one instance a run ran on (``remote.ec2.prices`` sums their cost)."""
    launched = instance.launch_time.timestamp() if instance.launch_time else time.time()
    return {
        "instance_id": instance.id,
        "instance_type": instance.instance_type,
        "az": instance.availability_zone,
        "market": "spot" if instance.spot else "on-demand",
        "start": start if start is not None else launched,
        "end": None,
    }


# -- noticing -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(run_id: str) -> Iterator[bool]:
    """A per-run file lock on this machine: True when this process holds it."""
    path = ledger.ledger_path().parent / "locks" / f"recover-{run_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _latest(run_id: str) -> ManagedRun | None:
    found = ledger.matches(run_id)
    row = found.get(run_id)
    return ManagedRun.from_row(row) if row else None


def stored_status(run: ManagedRun, s3: Any) -> str | None:
    """The run's status as its last push left it in storage (None: nothing there yet)."""
    from remote.storage import StorageUrl

    url = StorageUrl.parse(run.storage, f"run {run.run_id} storage")
    try:
        body = s3.get_object(Bucket=url.bucket, Key=url.key(run.run_id, "run.json"))["Body"]
        return json.loads(body.read()).get("status")
    except Exception:  # no object yet, or unreadable: the run has not pushed a state
        return None


def why_recover(run: ManagedRun, ec2: Any) -> str | None:
    """Why the run's instance is gone, or None while it runs."""
    from remote.ec2.api import describe_instance

    if run.instance_id is None:
        return None
    instance = describe_instance(ec2, run.instance_id)
    if instance is None:
        return f"instance {run.instance_id} no longer exists"
    if instance.state in GONE_STATES:
        return f"instance {run.instance_id} is {instance.state}"
    return None


def claim(run: ManagedRun, number: int, s3: Any) -> bool:
    """Claim recovery ``number`` of ``run`` with a create-only write; False: taken."""
    from botocore.exceptions import ClientError

    from remote.storage import StorageUrl

    url = StorageUrl.parse(run.storage, f"run {run.run_id} storage")
    body = json.dumps({"by": f"{socket.gethostname()}:{os.getpid()}", "at": time.time()})
    try:
        s3.put_object(
            Bucket=url.bucket,
            Key=url.key(run.run_id, f"recoveries/{number}.json"),
            Body=body.encode(),
            IfNoneMatch="*",
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
            return False
        raise
    return True


def launch_token(run_id: str, number: int) -> str:
    """RunInstances' idempotency token for recovery ``number`` (at most 64 ASCII)."""
    return hashlib.sha256(f"{run_id}#{number}".encode()).hexdigest()[:40]


# -- recovering ----------------------------------------------------------------------------------


def check_managed(
    progress: Progress | None = None, *, only: str | None = None, recover: bool = True
) -> list[ManagedRun]:
    """Look at every managed run (or the one named ``only``) and recover those whose
    instance is gone. Returns their states after the check. Ended runs cost a ledger
    read only. Errors of one run are kept in its ``note`` and never stop the others (or
    the command that called this)."""
    say = progress or (lambda _msg: None)
    out = []
    for run in managed_runs():
        if only is not None and run.run_id != only:
            continue
        if run.state in ENDED:
            out.append(run)
            continue
        try:
            out.append(_check_one(run, say, recover))
        except Exception as exc:  # AWS, SSH or storage: kept in the note, retried next time
            run.note = f"recovery failed: {type(exc).__name__}: {exc}"
            say(f"{run.run_id}: {run.note}")
            out.append(run)
    return out


def _check_one(run: ManagedRun, say: Progress, recover: bool) -> ManagedRun:
    from remote.config import load_ec2_profiles
    from remote.ec2.api import profile_client
    from remote.storage import s3_client

    profile = load_ec2_profiles().get(run.host)
    if profile is None:
        raise RecoveryError(f"ec2 profile {run.host} is no longer configured")
    ec2 = profile_client(profile)
    reason = why_recover(run, ec2)
    if reason is None:
        return run
    s3 = s3_client(profile.endpoint_url, profile.region)
    status = stored_status(run, s3)
    if status in FINISHED:
        run.state, run.note = "finished", f"{reason}; the run had ended ({status})"
        _end_span(run)
        run.save()
        return run
    if run.recoveries >= run.recover:
        run.state = "exhausted"
        run.note = f"{reason}; all {run.recover} recoveries used (resume it by hand)"
        _end_span(run)
        run.save()
        say(f"{run.run_id}: {run.note}")
        return run
    if not recover:
        run.note = f"{reason}; needs recovery"
        return run
    with _locked(run.run_id) as mine:
        if not mine:
            run.note = "another console on this machine is recovering it"
            return run
        fresh = _latest(run.run_id) or run  # what the lock's last holder left
        if why_recover(fresh, ec2) is None:
            return fresh
        return recover_run(fresh, profile, ec2, s3, reason, say)


def _end_span(run: ManagedRun, at: float | None = None) -> None:
    for item in run.instances:
        if item.get("instance_id") == run.instance_id and item.get("end") is None:
            item["end"] = at or time.time()


def recover_run(
    run: ManagedRun, profile: Any, ec2: Any, s3: Any, reason: str, say: Progress
) -> ManagedRun:
    """Claim, launch, ship, restore, resume: the run goes on on a new instance."""
    from remote.deploy import guard_options, prepare_host
    from remote.ec2.host import Ec2Host
    from remote.resume import resume_run
    from remote.ssh import fingerprint

    number = run.recoveries + 1
    if not claim(run, number, s3):
        run.note = f"recovery {number} was claimed by another console"
        say(f"{run.run_id}: {reason}; {run.note}")
        return run
    say(f"{run.run_id}: {reason}; recovering it ({number} of {run.recover})")
    _end_span(run)
    run.state, run.note = "recovering", f"recovery {number}: launching"
    run.save()
    instance = _launch_with_fallbacks(profile, ec2, launch_token(run.run_id, number), say)
    run.instance_id = instance.id
    run.instances.append(span(instance))
    run.save()
    host = Ec2Host(profile, client=ec2)
    try:
        # Launched a moment ago by this console for this run: its key is taken on first
        # contact and recorded under its instance id (see the module's docstring).
        key = host.fetch_host_key()
        host.trust_host_key(fingerprint(key))
        say(f"  trusted {instance.id}'s host key {key.get_name()} {fingerprint(key)} (new)")
        upload = Path(run.local_data) if run.local_data else None
        _layout, code_dir, _data, python = prepare_host(
            host, run.data or "", upload, run.env, lambda msg: say(f"  {msg}")
        )
        restore_on_host(host, profile, run, code_dir, python, number)
        say(f"  restored {run.run_dir} from {run.storage}")
        resumed = resume_run(host, run.run_id, guard=guard_options(profile, instance))
        say(f"  resumed {run.run_id} on {instance.id} (pid {resumed.pid})")
    finally:
        host.close()
    run.recoveries = number
    run.state, run.note = "watching", f"recovered {number} time(s); on {instance.id}"
    run.save(pid=resumed.pid)
    return run


# EC2's answers when a market or zone has no room for the instance right now.
CAPACITY_CODES = (
    "InsufficientInstanceCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "InsufficientCapacity",
    "capacity-not-available",
    "Unsupported",
)


def launch_plan(profile: Any) -> list[tuple[str, Any]]:
    """The profile, then its other zones, then on-demand (when allowed): what a
    recovery tries, in order, when EC2 has no capacity for the one before."""
    import dataclasses

    plan = [("as configured", profile)]
    for zone in getattr(profile, "fallback_zones", ()) or ():
        if zone != profile.availability_zone:
            plan.append((f"zone {zone}", dataclasses.replace(profile, availability_zone=zone)))
    if profile.spot and getattr(profile, "fallback_on_demand", False):
        plan.append(("on-demand", dataclasses.replace(profile, spot=False)))
    return plan


def _launch_with_fallbacks(profile: Any, ec2: Any, token: str, say: Progress) -> Any:
    from remote.ec2.api import LaunchError
    from remote.ec2.launch import launch

    plan = launch_plan(profile)
    for index, (what, variant) in enumerate(plan):
        try:
            result = launch(
                variant,
                progress=lambda msg: say(f"  {msg}"),
                ssh_timeout=600.0,
                client=ec2,
                token=f"{token}-{index}",
            )
            return result.instance
        except LaunchError as exc:
            text = str(exc)
            last = index == len(plan) - 1
            if last or not any(code in text for code in CAPACITY_CODES):
                raise
            say(f"  no capacity {what} ({text.splitlines()[0]}); trying {plan[index + 1][0]}")
    raise AssertionError("unreachable")


def restore_on_host(
    host: Any, profile: Any, run: ManagedRun, code_dir: str, python: str, number: int
) -> None:
    """``remote.onhost.restore`` on the new instance: the run directory from storage,
    with the instance role's credentials, and the recovery noted in run.json."""
    from remote.deploy import DeployError, storage_endpoint
    from remote.layout import python_module

    note = {"recoveries": number, "instances": run.instances}
    args = ["--storage", run.storage, "--run-id", run.run_id, "--dest", run.run_dir]
    args += ["--note", json.dumps(note), *storage_endpoint(profile)]
    if profile.imds_url:
        args += ["--imds", profile.imds_url]
    argv = python_module(host, "remote.onhost.restore", args, code_dir=code_dir, python=python)
    result = host.run(argv, timeout=3600)
    if not result.ok:
        raise DeployError(f"{host.name}: restoring {run.run_id} failed:\n{result.tail(12)}")
