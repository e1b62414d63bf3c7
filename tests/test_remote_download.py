"""Downloading a run directory over a real sshd (rsync, scp, SFTP) and locally:
hashes computed on the host, resume from a partial, corrupted partials,
changed and identical files, the OpenSSH client's host-key policy."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from emoconsole.report import CONFUSION_PNG, LEARNING_CURVES_PNG, write_report
from remote.download import (
    BULK_MIN_BYTES,
    DownloadError,
    DownloadProgress,
    _safe_relpath,
    download_run,
)
from remote.errors import RemoteError
from remote.layout import remote_run_dir
from remote.local import LocalHost
from remote.openssh import TARGET_ALIAS, openssh_config
from trainers.events import EventType, EventWriter, RunStatus

pytest_plugins = ["tests.sshd"]

BIG = "checkpoints/best.pt"
BIG_SIZE = 32 << 20  # above BULK_MIN_BYTES, so auto sends it through the OpenSSH client
CLASSES = ["neutral", "happy", "sad"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SSH_METHODS = ["auto", "scp", "rsync", "sftp"]
NEEDS = {"auto": (), "scp": ("ssh", "scp"), "rsync": ("ssh", "rsync"), "sftp": ()}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def need(method: str) -> None:
    missing = [p for p in NEEDS.get(method, ()) if not shutil.which(p)]
    if missing:
        pytest.skip(f"method {method} needs {', '.join(missing)} on this machine")


def make_run(root: Path) -> Path:
    """A run directory shaped like the engine's, with random checkpoint bytes."""
    rng = __import__("random").Random(7)
    run = root / "20250101-000000-hybrid-attention-beef"
    (run / "tb").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "run.json").write_text(json.dumps({"id": run.name, "model": "hybrid-attention"}))
    with EventWriter(run / "events.jsonl") as events:
        events.write(EventType.STATUS, status=RunStatus.RUNNING, device="cpu")
        for epoch, (acc, f1) in enumerate([(0.4, 0.35), (0.7, 0.66)], start=1):
            events.write(
                EventType.VAL, epoch=epoch, split="val", loss=1.0 / epoch, accuracy=acc,
                macro_f1=f1, weighted_f1=f1 + 0.01, uar=acc, train_loss=1.2 / epoch,
            )  # fmt: skip
        events.write(EventType.STATUS, status=RunStatus.COMPLETED, reason="max_epochs")
    (run / "train.log").write_text("2025-01-01 00:00:00 INFO epoch 1\n" * 200)
    confusion = [[3, 1, 0], [0, 4, 1], [1, 0, 2]]
    split = {
        "loss": 0.8, "accuracy": 0.75, "macro_f1": 0.7321, "weighted_f1": 0.7412, "uar": 0.7,
        "per_class": {c: {"precision": 0.7, "recall": 0.7, "f1": 0.7, "support": 4}
                      for c in CLASSES},
        "confusion": confusion,
    }  # fmt: skip
    summary = {
        "run_id": run.name, "model": "hybrid-attention", "classes": CLASSES,
        "monitor": "accuracy", "best_epoch": 2, "best_value": 0.7, "epochs_run": 2,
        "stop_reason": "max_epochs", "val": split, "test": split,
        "majority_floor": {"accuracy": 0.33, "macro_f1": 0.17, "weighted_f1": 0.2, "uar": 0.33},
        "bad_inputs": 0, "timings": {"total_s": 12.0}, "device": "cpu", "amp": "off",
    }  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "bad_inputs.jsonl").write_text("")
    (run / "predictions.jsonl").write_text('{"split": "test", "label": 0, "pred": 0}\n' * 50)
    (run / "tb" / "events.out.tfevents.1700000000.host.1.0").write_bytes(rng.randbytes(40_000))
    (run / BIG).write_bytes(rng.randbytes(BIG_SIZE))
    (run / "checkpoints" / "last.pt").write_bytes(rng.randbytes(300_000))
    # A checkpoint being written: never listed, never fetched.
    (run / "checkpoints" / ".last.pt.tmp").write_bytes(rng.randbytes(1000))
    return run


def host_files(run: Path) -> dict[str, str]:
    return {
        p.relative_to(run).as_posix(): sha(p)
        for p in run.rglob("*")
        if p.is_file() and not p.name.endswith(".tmp")
    }


@pytest.fixture(scope="module")
def host_run(tmp_path_factory) -> Path:
    """Shared and never modified; tests that change the host's files copy it."""
    return make_run(tmp_path_factory.mktemp("host"))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, host_run) -> Path:
    """The big checkpoint and the summary only: resume tests need no more, and
    with rsync every file costs a remote shell (0.3-0.5 s on this machine)."""
    run = tmp_path_factory.mktemp("small") / host_run.name
    (run / "checkpoints").mkdir(parents=True)
    for rel in ("summary.json", BIG):
        shutil.copy2(host_run / rel, run / rel)
    return run


@pytest.fixture
def own_run(tmp_path, host_run) -> Path:
    return Path(shutil.copytree(host_run, tmp_path / "host" / host_run.name))


def assert_same_files(local: Path, run: Path) -> None:
    files = host_files(run)
    assert {p.relative_to(local).as_posix(): sha(p) for p in local.rglob("*") if p.is_file()} == {
        **files
    }


# -- the on-host manifest -------------------------------------------------------------------------


def test_manifest_cli_lists_sizes_and_sha256_and_skips_partials(host_run):
    out = subprocess.run(
        [sys.executable, "-m", "remote.manifest", str(host_run)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["root"] == str(host_run)
    listed = {f["path"]: f for f in doc["files"]}
    assert {p: f["sha256"] for p, f in listed.items()} == host_files(host_run)
    assert listed[BIG]["size"] == BIG_SIZE
    assert "checkpoints/.last.pt.tmp" not in listed
    sizes = [f["size"] for f in doc["files"]]
    assert sizes == sorted(sizes)  # summary and logs before checkpoints

    lines = subprocess.run(
        [sys.executable, "-m", "remote.manifest", str(host_run), "--lines"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    messages = [json.loads(line) for line in lines]
    assert messages[0]["kind"] == "list" and messages[-1]["kind"] == "end"
    hashes = [m for m in messages if m["kind"] == "hash"]
    assert [m["path"] for m in hashes] == [f["path"] for f in messages[0]["files"]]
    assert {m["path"]: m["sha256"] for m in hashes} == host_files(host_run)


def test_manifest_cli_names_a_missing_run_directory(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "remote.manifest", str(tmp_path / "nope")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "no run directory at" in proc.stderr


def test_run_ids_resolve_where_deploy_puts_runs(tmp_path, monkeypatch):
    from remote.ssh import SSHHost  # built, never connected

    assert remote_run_dir(SSHHost("gpu", workdir="/srv/emo/"), "r1") == "/srv/emo/runs/r1"
    assert remote_run_dir(SSHHost("gpu"), "r1") == "~/emoconsole/runs/r1"
    assert remote_run_dir(LocalHost(workdir="/srv/emo"), "r1") == "/srv/emo/runs/r1"
    monkeypatch.chdir(tmp_path)  # this checkout: runs under ./runs, as deploy starts them
    assert remote_run_dir(LocalHost(), "r1") == str(tmp_path / "runs" / "r1")
    assert remote_run_dir(SSHHost("gpu"), "/data/runs/r1") == "/data/runs/r1"
    assert remote_run_dir(LocalHost(), "runs/r1") == "runs/r1"
    with pytest.raises(RemoteError, match="no run given"):
        remote_run_dir(LocalHost(), "  ")


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "", "a/b.part"])
def test_a_listing_cannot_name_files_outside_the_run(bad):
    with pytest.raises(DownloadError):
        _safe_relpath(bad)


# -- whole downloads ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", SSH_METHODS)
def test_full_download_over_ssh_verifies_every_file_then_skips_them(
    method, trusted, host_run, tmp_path
):
    need(method)
    local = tmp_path / "dl"
    seen: list[DownloadProgress] = []
    report = download_run(trusted, str(host_run), local, method=method, progress=seen.append)

    assert_same_files(local, host_run)  # tb/, checkpoints, logs: every byte as on the host
    assert not list(local.rglob("*.part")) and not list(local.rglob("*.tmp"))
    assert report.remote_dir == str(host_run)
    assert {f.path: f.sha256 for f in report.files} == host_files(host_run)
    total = sum((host_run / p).stat().st_size for p in host_files(host_run))
    assert report.bytes_transferred == total
    assert all(f.action == "fetched" and not f.refetched for f in report.files)
    assert seen[-1].done == seen[-1].total == total
    big = report.file(BIG)
    if method == "auto":  # the bulk path for the big file, the open connection for the rest
        assert big.method == ("scp" if shutil.which("scp") else "sftp")
        assert report.file("summary.json").method == "sftp"
    else:
        assert {f.method for f in report.files} == {method}
    # The host's mtime travels with the bytes.
    assert (local / BIG).stat().st_mtime == pytest.approx((host_run / BIG).stat().st_mtime)

    again = download_run(trusted, str(host_run), local, method=method)
    assert again.bytes_transferred == 0
    assert sorted(again.skipped) == sorted(host_files(host_run))

    if method == "auto":  # what `emoconsole download` writes next (tests/test_report.py: more)
        summary = write_report(local, report.files).read_text()
        assert "best epoch **2**" in summary and "0.7321" in summary and "0.7412" in summary
        for png in (LEARNING_CURVES_PNG, CONFUSION_PNG):
            data = (local / png).read_bytes()
            assert data.startswith(PNG_MAGIC) and len(data) > 1000
        assert host_files(host_run)[BIG] in summary  # the verified hashes are listed


def test_local_download_is_a_verified_copy(host_run, tmp_path):
    local = tmp_path / "dl"
    report = download_run(LocalHost(), str(host_run), local)
    assert report.method == "copy"
    assert_same_files(local, host_run)
    assert download_run(LocalHost(), str(host_run), local).bytes_transferred == 0


def test_methods_that_cannot_work_are_refused_clearly(trusted, host_run, tmp_path):
    with pytest.raises(DownloadError, match="needs an SSH host"):
        download_run(LocalHost(), str(host_run), tmp_path, method="scp")
    with pytest.raises(DownloadError, match="for this machine"):
        download_run(trusted, str(host_run), tmp_path, method="copy")
    with pytest.raises(DownloadError, match="unknown download method"):
        download_run(LocalHost(), str(host_run), tmp_path, method="ftp")


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_a_missing_run_is_named(where, trusted, tmp_path):
    host = LocalHost() if where == "local" else trusted
    with pytest.raises(DownloadError, match="no run directory at"):
        download_run(host, str(tmp_path / "no-such-run"), tmp_path / "dl")


# -- resuming -------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def stop_at_half(update: DownloadProgress) -> None:
    if update.path == BIG and update.file_done >= BIG_SIZE // 2:
        raise Interrupted


@pytest.mark.parametrize("method", ["scp", "rsync", "sftp", "copy"])
def test_interrupted_download_resumes_from_the_partial(method, trusted, small_run, tmp_path):
    need(method)
    host = LocalHost() if method == "copy" else trusted
    local = tmp_path / "dl"
    with pytest.raises(Interrupted):
        download_run(host, str(small_run), local, method=method, progress=stop_at_half)
    part = local / (BIG + ".part")
    assert not (local / BIG).exists()  # never a half file under the final name
    assert (local / "summary.json").exists()  # smaller files landed before
    have = part.stat().st_size
    if have == BIG_SIZE:
        # The writer process outran the poll that stops it: the scenario is the same
        # from here on with the copy cut back to half.
        os.truncate(part, BIG_SIZE // 2)
        have = BIG_SIZE // 2
    assert BIG_SIZE * 0.4 <= have < BIG_SIZE

    report = download_run(host, str(small_run), local, method=method)
    big = report.file(BIG)
    assert (big.action, big.resumed_from, big.refetched) == ("resumed", have, False)
    assert big.bytes_transferred == BIG_SIZE - have  # only the rest travelled
    assert sha(local / BIG) == sha(small_run / BIG) == big.sha256
    assert not part.exists()
    assert report.file("summary.json").action == "skipped"


def rsync_processes(part: Path) -> dict[int, tuple[str, int]]:
    """{pid: (state, parent pid)} of the rsync processes writing ``part``."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):  # not a process, or it ended meanwhile
            continue
        if argv[0] == b"rsync" and str(part).encode() in argv:
            state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
            found[int(entry.name)] = (state, int(ppid))
    return found


def test_an_interrupt_returns_only_once_rsyncs_writer_is_gone(trusted, small_run, tmp_path):
    """rsync's receiver, the process that writes the partial, is a child of the
    rsync that was started, which exits on SIGTERM without it. Here the receiver
    is held stopped, as the scheduler may hold it: the interrupt must still not
    return while it could write, else the next download measures a partial that
    then changes under it (a flake of the resume test under load)."""
    need("rsync")
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("finds rsync's receiver through /proc")
    local = tmp_path / "dl"
    part = local / (BIG + ".part")
    held: list[int] = []

    def hold_the_receiver(update: DownloadProgress) -> None:
        if update.path == BIG and update.file_done >= BIG_SIZE // 4:
            procs = rsync_processes(part)
            held.extend(pid for pid, (_, ppid) in procs.items() if ppid in procs)
            for pid in held:
                os.kill(pid, signal.SIGSTOP)
            raise Interrupted

    try:
        with pytest.raises(Interrupted):
            download_run(trusted, str(small_run), local, method="rsync", progress=hold_the_receiver)
        assert held, "no rsync receiver (a child of rsync) was found"
        left = {pid: s for pid, (s, _) in rsync_processes(part).items() if s not in ("Z", "X")}
        assert not left  # nothing can write the partial any more
        have = part.stat().st_size
        assert have >= BIG_SIZE // 4
        assert sha(part) == hashlib.sha256((small_run / BIG).read_bytes()[:have]).hexdigest()
    finally:
        for pid in held:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("method", ["scp", "rsync", "sftp", "copy"])
def test_corrupted_partial_is_detected_and_refetched(method, trusted, small_run, tmp_path):
    need(method)
    host = LocalHost() if method == "copy" else trusted
    local = tmp_path / "dl"
    part = local / (BIG + ".part")
    part.parent.mkdir(parents=True)
    half = bytearray((small_run / BIG).read_bytes()[: BIG_SIZE // 2])
    half[1000] ^= 0xFF  # one flipped byte, which no size check can see
    part.write_bytes(bytes(half))

    report = download_run(host, str(small_run), local, method=method)
    big = report.file(BIG)
    assert big.refetched and big.attempts == 2 and report.refetched == [BIG]
    assert big.bytes_transferred == (BIG_SIZE - len(half)) + BIG_SIZE  # the rest, then all
    assert sha(local / BIG) == sha(small_run / BIG)
    assert not part.exists()


def test_changed_files_are_fetched_again_and_identical_ones_skipped(trusted, own_run, tmp_path):
    local = tmp_path / "dl"
    download_run(trusted, str(own_run), local)
    summary = json.loads((own_run / "summary.json").read_text())
    summary["best_epoch"] = 1
    (own_run / "summary.json").write_text(json.dumps(summary))
    data = bytearray((own_run / BIG).read_bytes())
    data[-1] ^= 0xFF  # same size, same name, different bytes
    (own_run / BIG).write_bytes(bytes(data))

    report = download_run(trusted, str(own_run), local)
    fetched = {f.path for f in report.files if f.action == "fetched"}
    assert fetched == {"summary.json", BIG}
    assert set(report.skipped) == set(host_files(own_run)) - fetched
    assert report.bytes_transferred == BIG_SIZE + (own_run / "summary.json").stat().st_size
    assert_same_files(local, own_run)


def test_files_that_change_during_a_download_land_consistent(own_run, tmp_path):
    """A checkpoint replaced and a log appended to while the download runs: the
    checkpoint arrives whole (the new one, after a re-check if need be) and the
    log as a snapshot that the host hashed, never a mix."""
    local = tmp_path / "dl"
    new_ckpt = os.urandom(BIG_SIZE)
    log = own_run / "train.log"
    changed: list[str] = []

    def meddle(update: DownloadProgress) -> None:
        if not changed and update.path == "summary.json":
            tmp = own_run / "checkpoints" / ".best.pt.tmp"
            tmp.write_bytes(new_ckpt)
            os.replace(tmp, own_run / BIG)  # as the engine saves: tmp + rename
            with open(log, "a") as fh:
                fh.write("2025-01-01 00:00:09 INFO appended during the download\n" * 50)
            changed.append("done")

    report = download_run(LocalHost(), str(own_run), local, progress=meddle)
    assert changed
    assert (local / BIG).read_bytes() == new_ckpt
    got = (local / "train.log").read_bytes()
    assert log.read_bytes().startswith(got)  # a prefix of the host's log: a snapshot
    assert sha(local / "train.log") == report.file("train.log").sha256


# -- the OpenSSH client's settings ----------------------------------------------------------------


def test_bulk_path_uses_the_projects_known_hosts_strictly(sshd, ssh_env, tmp_path):
    need("scp")
    ssh_env.trust(sshd)
    host = sshd.ssh_host()
    config = tmp_path / "ssh_config"
    config.write_text(openssh_config(host))
    text = config.read_text()
    assert "StrictHostKeyChecking yes" in text and "GlobalKnownHostsFile /dev/null" in text
    assert str(ssh_env.emoconsole_known_hosts) in text
    argv = ["ssh", "-F", str(config), TARGET_ALIAS, "echo reached"]
    ok = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout == "reached\n", ok.stderr

    ssh_env.emoconsole_known_hosts.write_text("")  # the key is no longer on record
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0
    assert "Host key verification failed" in refused.stderr


def test_bulk_path_goes_through_proxy_jump(sshd, ssh_env, host_run, tmp_path):
    need("scp")
    shutil.copy(sshd.client_key, ssh_env.home / ".ssh" / "id_ed25519")  # a default key
    (ssh_env.home / ".ssh" / "config").write_text(
        f"Host bastion\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n\n"
        f"Host inner\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  ProxyJump bastion\n"
    )
    ssh_env.trust(sshd)
    from remote.ssh import SSHHost

    host = SSHHost("inner", python=sys.executable, allow_agent=False, connect_timeout=5)
    host.workdir = str(Path(__file__).resolve().parents[1])
    before = sshd.log.read_text().count("Accepted publickey")
    try:
        report = download_run(host, str(host_run), tmp_path / "dl", method="scp")
    finally:
        host.close()
    assert report.file(BIG).sha256 == sha(host_run / BIG)
    # Through the jump, each connection authenticates twice (bastion, then inner):
    # paramiko's for the listing and OpenSSH's for the bytes. Straight to the
    # target, OpenSSH's would add one.
    assert sshd.log.read_text().count("Accepted publickey") - before == 4


def test_bulk_min_is_what_the_fixture_assumes():
    assert BIG_SIZE > BULK_MIN_BYTES > 300_000


def test_a_host_without_the_code_is_told_to_deploy(sshd, ssh_env, host_run, tmp_path):
    bare = shutil.which("python3", path="/usr/bin:/bin")
    probe = subprocess.run([bare or "false", "-c", "import remote"], cwd=tmp_path)
    if bare is None or probe.returncode == 0:
        pytest.skip("needs a python3 without this project installed")
    ssh_env.trust(sshd)
    with (
        sshd.ssh_host(python=bare, workdir=str(tmp_path)) as host,
        pytest.raises(DownloadError, match=r"no emoconsole code in .*deploy first"),
    ):
        download_run(host, str(host_run), tmp_path / "dl")
    with (
        sshd.ssh_host(python="/no/such/python") as host,
        pytest.raises(DownloadError, match=r"sent no file listing.*exit 127"),
    ):
        download_run(host, str(host_run), tmp_path / "dl")
