"""Durable run storage against moto's S3 server (a real HTTP endpoint boto3 talks
to): push/pull round trips, what a second push resends, the manifest last, a
pusher killed mid-checkpoint, corrupt objects, the uploader thread, and
``emoconsole download`` from storage."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from unittest.mock import ANY

import pytest
from typer.testing import CliRunner

from remote.errors import ConfigError
from remote.storage import (
    MANIFEST_NAME,
    StorageError,
    StorageUrl,
    Uploader,
    clean_partials,
    pull_run,
    push_run,
    read_state,
    sha256_file,
)

if TYPE_CHECKING:  # imported by pytest as a plugin, so its asserts are rewritten
    from tests.aws import S3

pytest_plugins = ["tests.aws"]

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = "20261203-120000-hybrid-attention-ab12"
runner = CliRunner()


def write_atomic(path: Path, data: bytes) -> None:
    """As the engine saves a checkpoint: a temporary file, then a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def make_run(parent: Path, run_id: str = RUN_ID) -> Path:
    """A run directory shaped like the engine's (fake bytes where torch would write)."""
    run = parent / run_id
    (run / "checkpoints").mkdir(parents=True)
    (run / "tb").mkdir()
    (run / "run.json").write_text(
        json.dumps({"id": run_id, "model": "hybrid-attention", "status": "running"})
    )
    events = [{"seq": i, "type": "status", "status": "running", "time": 1.0 + i} for i in range(3)]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "train.log").write_text("epoch 1\n")
    (run / "tb" / "events.out.tfevents.1.host").write_bytes(os.urandom(3000))
    (run / "predictions.jsonl").write_text('{"path": "a.mp4", "pred": "happy"}\n')
    write_atomic(run / "checkpoints" / "last.pt", os.urandom(200_000))
    write_atomic(run / "checkpoints" / "best.pt", os.urandom(150_000))
    # Never pushed: a save in progress, the uploader's own state, a download's partial.
    (run / "checkpoints" / ".last.pt.tmp").write_bytes(b"half a checkpoint")
    (run / ".storage").mkdir()
    (run / ".storage" / "state.json").write_text("{}")
    (run / "train.log.part").write_text("partial")
    return run


def tree(root: Path) -> dict[str, str]:
    """{relpath: sha256} of a run's own files."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".storage" not in p.parts and not p.name.endswith(".part")
        and not p.name.endswith(".tmp")
    }  # fmt: skip


def wait_until(check: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_storage_url_parses_and_names_the_setting_when_wrong():
    url = StorageUrl.parse("s3://my-runs/team/emo/", "[ec2.gpu] storage")
    assert (url.bucket, url.prefix) == ("my-runs", "team/emo")
    assert url.key("r1", "checkpoints/last.pt") == "team/emo/r1/checkpoints/last.pt"
    assert str(url) == "s3://my-runs/team/emo"
    assert StorageUrl.parse("s3://my-runs", "x").key("r1", "a") == "r1/a"
    for bad in ("my-runs/x", "s3://A_b/x", "s3://ab/x", "s3://my-runs/../x", "gs://b/x"):
        with pytest.raises(ConfigError, match=r"\[ec2.gpu\] storage"):
            StorageUrl.parse(bad, "[ec2.gpu] storage")


def test_importing_storage_loads_the_standard_library_only():
    """The on-host guard imports it beside a run: boto3 only once S3 is used."""
    code = (
        "import sys; before = set(sys.modules); import remote.storage\n"
        "print(' '.join(sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] not in sys.stdlib_module_names)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert set(out.stdout.split()) <= {
        "remote", "remote.errors", "remote.storage", "remote.storage.url",
        "remote.storage.push", "remote.storage.pull", "remote.storage.uploader",
    }, out.stdout  # fmt: skip


def test_push_then_pull_round_trip_with_the_manifest_last(s3: S3, tmp_path):
    run = make_run(tmp_path / "host")
    url = s3.url()
    client = s3.new_client()
    calls: list[tuple[str, str]] = []

    def record(params, model, **_):
        if model.name in ("PutObject", "CompleteMultipartUpload", "CopyObject"):
            calls.append((model.name, params["Key"]))

    client.meta.events.register("provide-client-params.s3", record)
    report = push_run(run, url, client)

    assert report.manifest_uploaded
    assert set(report.uploaded) == set(tree(run))
    keys = s3.keys()
    assert not [k for k in keys if ".partial-" in k or ".tmp" in k or ".storage" in k]
    assert not [k for k in keys if k.endswith(".part")]
    # checkpoints first (last.pt first, straight to their keys), the manifest last
    assert calls[:2] == [
        ("PutObject", url.key(RUN_ID, "checkpoints/last.pt")),
        ("PutObject", url.key(RUN_ID, "checkpoints/best.pt")),
    ]
    assert calls[-1] == ("PutObject", url.key(RUN_ID, MANIFEST_NAME))
    manifest = json.loads(s3.body(url.key(RUN_ID, MANIFEST_NAME)))
    assert {k: v["sha256"] for k, v in manifest.items()} == tree(run)

    dest = tmp_path / "laptop" / RUN_ID
    seen = []
    pulled = pull_run(url, RUN_ID, dest, s3.new_client(), progress=seen.append)
    assert tree(dest) == tree(run)
    assert {f.action for f in pulled.files} == {"fetched"}
    assert seen[-1].done == seen[-1].total == sum(f.size for f in pulled.files)
    again = pull_run(url, RUN_ID, dest, s3.new_client())  # resumable: nothing to fetch
    assert sorted(again.skipped) == sorted(tree(run)) and again.bytes_transferred == 0
    # the pulled copy knows what storage holds: pushing it back sends nothing
    back = push_run(dest, url, s3.new_client())
    assert back.uploaded == [] and not back.manifest_uploaded


def test_a_second_push_sends_only_what_changed(s3: S3, tmp_path):
    run = make_run(tmp_path)
    url = s3.url()
    push_run(run, url, s3.new_client())

    with open(run / "events.jsonl", "a") as fh:
        fh.write(json.dumps({"seq": 3, "type": "status", "status": "running"}) + "\n")
    os.utime(run / "run.json", ns=(1, 1))  # touched, same bytes: not resent
    write_atomic(run / "checkpoints" / "last.pt", b"new checkpoint" * 1000)
    report = push_run(run, url, s3.new_client())

    assert sorted(report.uploaded) == ["checkpoints/last.pt", "events.jsonl"]
    assert "run.json" in report.unchanged and report.manifest_uploaded
    assert s3.body(url.key(RUN_ID, "checkpoints/last.pt")) == b"new checkpoint" * 1000
    manifest = json.loads(s3.body(url.key(RUN_ID, MANIFEST_NAME)))
    assert manifest["events.jsonl"]["sha256"] == sha256_file(run / "events.jsonl")

    idle = push_run(run, url, s3.new_client())
    assert idle.uploaded == [] and not idle.manifest_uploaded
    # checkpoints only (the uploader's quick path) leaves the rest for later
    (run / "train.log").write_text("epoch 2\n")
    only = push_run(run, url, s3.new_client(), others=False)
    assert only.uploaded == [] and "train.log" not in only.unchanged


SLOW_PUSH = """
import sys
from pathlib import Path
from boto3.s3.transfer import TransferConfig
from remote.storage import StorageUrl, push_run, s3_client
run_dir, url, endpoint = sys.argv[1:4]
# 5 MiB parts one at a time at 8 MiB/s: 3 s for the checkpoint, the kill comes after 0.6 s
slow = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20,
                      max_concurrency=1, max_bandwidth=8 << 20)
push_run(Path(run_dir), StorageUrl.parse(url, "argv"), s3_client(endpoint, "us-east-1"),
         others=False, transfer=slow)
print("finished", flush=True)
"""


def test_a_pusher_killed_mid_checkpoint_leaves_the_previous_one_loadable(s3: S3, tmp_path):
    import torch

    run = make_run(tmp_path / "host")
    url = s3.url()
    last = run / "checkpoints" / "last.pt"
    torch.save({"epoch": 1, "weights": torch.arange(1000, dtype=torch.float32)}, last)
    push_run(run, url, s3.new_client())
    previous = sha256_file(last)

    # epoch 2's checkpoint (24 MB), saved as the engine saves, pushed slowly by another process
    tmp = last.with_name(".last.pt.tmp")
    torch.save({"epoch": 2, "weights": torch.rand(6_000_000)}, tmp)
    os.replace(tmp, last)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_PUSH, str(run), str(url), s3.endpoint],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:

        def parts_sent() -> int:
            uploads = s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
            if not uploads:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                return 0
            (up,) = uploads
            assert up["Key"] == url.key(RUN_ID, "checkpoints/last.pt")  # straight to its key
            parts = s3.client.list_parts(Bucket=s3.bucket, Key=up["Key"], UploadId=up["UploadId"])
            return len(parts.get("Parts", []))

        wait_until(lambda: parts_sent() >= 1, timeout=30)
        os.kill(proc.pid, signal.SIGKILL)  # mid-checkpoint: parts sent, upload not complete
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    key = url.key(RUN_ID, "checkpoints/last.pt")
    assert hashlib.sha256(s3.body(key)).hexdigest() == previous
    dest = tmp_path / "recovered" / RUN_ID
    pull_run(url, RUN_ID, dest, s3.new_client())
    restored = torch.load(dest / "checkpoints" / "last.pt", weights_only=True)
    assert restored["epoch"] == 1 and torch.equal(
        restored["weights"], torch.arange(1000, dtype=torch.float32)
    )

    # The next push cleans up after the dead one and sends epoch 2 whole.
    assert list((run / ".storage").glob("snap-*"))  # the dead pusher's hard link
    assert clean_partials(url, RUN_ID, s3.new_client(), older_than=0) >= 1
    assert not s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")
    push_run(run, url, s3.new_client())
    assert not list((run / ".storage").glob("snap-*"))
    assert hashlib.sha256(s3.body(key)).hexdigest() == sha256_file(last)


def test_pull_refuses_a_corrupt_object_and_names_the_key(s3: S3, tmp_path):
    run = make_run(tmp_path / "host")
    url = s3.url()
    push_run(run, url, s3.new_client())
    key = url.key(RUN_ID, "checkpoints/best.pt")
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=b"bit rot")  # no hash of its own

    dest = tmp_path / "laptop" / RUN_ID
    with pytest.raises(StorageError, match=rf"s3://{s3.bucket}/{key}: SHA-256 .* refusing"):
        pull_run(url, RUN_ID, dest, s3.new_client())
    assert not (dest / "checkpoints" / "best.pt").exists()
    assert not (dest / "checkpoints" / "best.pt.part").exists()

    # Missing things are named too: an object the manifest lists, a whole run.
    s3.client.delete_object(Bucket=s3.bucket, Key=key)
    with pytest.raises(StorageError, match=rf"s3://{s3.bucket}/{key} is listed .* missing"):
        pull_run(url, RUN_ID, dest, s3.new_client())
    manifest_key = url.key("nope", MANIFEST_NAME)
    with pytest.raises(StorageError, match=rf"no run 'nope'.*s3://{s3.bucket}/{manifest_key}"):
        pull_run(url, "nope", dest, s3.new_client())


def test_pull_takes_an_object_newer_than_the_manifest_by_its_own_hash(s3: S3, tmp_path):
    """A push cut short after a checkpoint and before its manifest."""
    run = make_run(tmp_path / "host")
    url = s3.url()
    push_run(run, url, s3.new_client())
    newer = b"epoch 3" * 5000
    s3.client.put_object(
        Bucket=s3.bucket,
        Key=url.key(RUN_ID, "checkpoints/last.pt"),
        Body=newer,
        Metadata={"sha256": hashlib.sha256(newer).hexdigest()},
    )
    dest = tmp_path / "laptop" / RUN_ID
    report = pull_run(url, RUN_ID, dest, s3.new_client())
    assert report.newer == ["checkpoints/last.pt"]
    assert (dest / "checkpoints" / "last.pt").read_bytes() == newer


def test_uploader_pushes_new_checkpoints_at_once_and_retries_failures(s3: S3, tmp_path):
    run = make_run(tmp_path / "a")
    url = s3.url()
    states: list[dict] = []
    up = Uploader(run, url, s3.new_client, interval=60, poll=0.05, on_state=states.append)
    up.start()
    try:
        wait_until(lambda: states and states[-1]["ok"])  # the first, full push
        assert "events.jsonl" in states[0]["pushed"]
        write_atomic(run / "checkpoints" / "last.pt", b"epoch 2" * 1000)
        key = url.key(RUN_ID, "checkpoints/last.pt")
        wait_until(lambda: s3.body(key) == b"epoch 2" * 1000, timeout=5)
        with open(run / "events.jsonl", "a") as fh:
            fh.write('{"seq": 3, "type": "status", "status": "stopped"}\n')
        assert up.flush(timeout=10)
        manifest = json.loads(s3.body(url.key(RUN_ID, MANIFEST_NAME)))
        assert manifest["events.jsonl"]["sha256"] == sha256_file(run / "events.jsonl")
    finally:
        up.stop()
    assert read_state(run)["ok"] is True

    # A bucket that is not there (yet): failures are reported and retried, never raised.
    other = make_run(tmp_path / "b")
    missing = StorageUrl.parse("s3://emo-late-bucket/runs", "test")
    bad: list[dict] = []
    up = Uploader(
        other, missing, s3.new_client, poll=0.05, backoff=(0.05, 0.2), on_state=bad.append
    )
    up.start()
    try:
        wait_until(lambda: len(bad) >= 3)
        assert not bad[-1]["ok"] and bad[-1]["failures"] >= 3
        assert "emo-late-bucket" in bad[-1]["error"]
        state = read_state(other)
        assert state is not None and state["ok"] is False and "does not exist" in state["error"]
        assert not up.flush(timeout=0.3)
        s3.client.create_bucket(Bucket="emo-late-bucket")
        assert up.flush(timeout=10)
    finally:
        up.stop()
    assert read_state(other)["ok"] is True and read_state(other)["failures"] == 0


def test_download_cli_fetches_from_storage_and_falls_back_to_it(s3: S3, tmp_path, monkeypatch):
    from emoconsole.cli import app
    from remote import ledger

    monkeypatch.setenv("EMOCONSOLE_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("EMOCONSOLE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    run = make_run(tmp_path / "host")
    url = s3.url()
    push_run(run, url, s3.new_client())

    result = runner.invoke(
        app,
        ["download", RUN_ID[:12], "--from-storage", f"{url}/", "--endpoint-url", s3.endpoint,
         "--region", s3.region, "--to", str(tmp_path / "dl")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert tree(tmp_path / "dl" / RUN_ID) == {**tree(run), "summary.md": ANY}
    assert "every file SHA-256 checked" in result.output
    assert (tmp_path / "dl" / RUN_ID / "summary.md").exists()

    # The instance is gone (its host no longer configured): the ledger's storage serves.
    ledger.record(
        RUN_ID, "gone-gpu", f"/home/ubuntu/runs/{RUN_ID}", "hybrid-attention",
        storage=str(url), endpoint_url=s3.endpoint, region=s3.region,
    )  # fmt: skip
    result = runner.invoke(app, ["download", RUN_ID, "--to", str(tmp_path / "dl2")])
    assert result.exit_code == 0, result.output
    assert f"fetching run {RUN_ID} from its storage {url}" in result.output
    assert tree(tmp_path / "dl2" / RUN_ID) == {**tree(run), "summary.md": ANY}

    result = runner.invoke(
        app, ["download", "zzz", "--from-storage", str(url), "--endpoint-url", s3.endpoint]
    )
    assert result.exit_code == 1 and f"no run 'zzz' in {url}" in result.output


def test_failing_pushes_reach_monitor_and_dashboard_as_a_warning(tmp_path):
    """The guard's uploader state rides on the watcher's system samples; the monitor and
    the run view list it with the run's own warnings (events.jsonl stays the run's)."""
    from emoconsole.monitor_view import MonitorState
    from remote.onhost.watcher import Sampler
    from remote.storage.uploader import state_path
    from remote.watch import SysItem
    from trainers.rundir import RunDir

    run = tmp_path / "host" / RUN_ID
    run.mkdir(parents=True)
    sampler = Sampler(RunDir(run))
    assert "storage" not in sampler.sample({})  # no guard pushing: nothing said
    state_path(run).parent.mkdir()
    state = {"ok": False, "error": "AccessDenied on PutObject", "failures": 3, "url": "s3://b/p"}
    state_path(run).write_text(json.dumps({**state, "time": 1.0, "pushed": []}))
    sample = sampler.sample({})
    assert sample["storage"]["ok"] is False
    monitor = MonitorState(run=RUN_ID, host="gpu")
    monitor.add(SysItem(sample))
    (warning,) = monitor.run_warnings
    assert "last 3 push(es) to s3://b/p failed (AccessDenied on PutObject)" in warning
