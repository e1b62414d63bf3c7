"""Preemption figures (issue 15): how long a spot interruption notice takes to put
the run's last checkpoint in storage, and what the storage push costs against a
plain boto3 upload.

**Notice to storage** (:func:`notice_to_storage`), through the real path:
``python -m remote.hostctl launch ... --storage s3://BUCKET/runs --endpoint-url MOTO
--imds STANDIN`` starts the trainer and its guard; the guard takes the instance
role's credentials from the loopback IMDSv2 stand-in (tests/imds.py, the one the
tests use; hostctl scrubs every AWS_* variable and HOME has no ~/.aws, so the
stand-in is the only credential, which moto accepts); the stand-in announces an
interruption mid-epoch (after the run's first step); the guard writes notice.json,
stops the trainer as ``stop`` does, the trainer checkpoints at its next step and
records ``preempted``, the guard pushes the checkpoint (straight to its key, the
default) and the run directory, then notice.json with ``pushed_at``. Meanwhile this process polls S3
every 0.2 s. For each model, in seconds after the announcement:

* ``noticed``: the guard saw the notice (at most one ``--poll`` interval; 5 s on EC2);
* ``ckpt``: ``checkpoints/last.pt`` renamed into place (its mtime);
* ``preempted``: the trainer's final status event;
* ``exited``: the guard found the trainer process gone (it polls every 0.2 s) and
  starts its own push of the checkpoint and the run directory; the guard's
  Uploader thread, which pushes a checkpoint within ~1 s of its rename, often has
  it in S3 before that;
* ``ckpt in S3``: ``runs/<id>/checkpoints/last.pt`` in S3 holds that checkpoint
  (its ``sha256`` metadata equals the local file's; the bytes are downloaded and
  compared afterwards, untimed);
* ``notice in S3``: ``runs/<id>/notice.json`` in S3 carries the guard's ``pushed_at``;

and the checkpoint's size (model, optimizer state, RNG). AWS's notice gives 120 s
before the instance goes: ``ckpt in S3`` is the figure held against it.

Models at the bench's size (CPU, a generated 4-actor RAVDESS corpus):
``hybrid-attention`` at the tests' small size (a 1 MB checkpoint), and ``slowfast-r50`` at its full
depth and width (R50, 64 channels: the largest checkpoint of the zoo) on small
clips (64 px, 8 frames), so the checkpoint is real-sized while a step stays short.

**Upload ratio** (:func:`upload_ratio`): the throughput of
:func:`remote.storage.push_run` for one checkpoint-sized file against a plain
boto3 ``upload_file`` of the same file to the same S3 endpoint. Target: push MB/s
>= 0.8 x plain MB/s. ``push_run`` does more than ``upload_file``: it hashes the
file (SHA-256, for the manifest and the pull-side check), uploads it and puts the
manifest; ``push`` here is ``push_run(temporary_key=True)``, which uploads to a
temporary key, copies it server-side to the final key and deletes the temporary
key (the design's first plan for never taking a half-upload).
Those steps are timed apart too (``hash``, ``copy``), so the figure says which one
costs what. ``direct`` is ``push_run(temporary_key=False)``, the default: straight to the final
key, which S3 never shows half-written (see remote/storage/push.py). Both
contenders use boto3's default TransferConfig (8 MiB parts, 10 at once). Rounds
alternate between the contenders so drift on a shared machine hits both alike;
the best round of each is compared (noise only ever slows a round down). Sizes
are the two models' checkpoints with Adam state (fp32 weights + exp_avg +
exp_avg_sq = 12 bytes per parameter): hybrid-attention 1.05 M parameters ->
12.5 MB; slowfast-r50 36.2 M -> 435 MB.

S3 is moto's server on loopback (CPU-bound Python: its own ingest limits every
contender alike, so the ratio, not the MB/s, is the upload figure; a real S3
endpoint is faster). ``--endpoint-url`` points the upload ratio (only) at another
S3 endpoint, with the caller's credentials. About 3-4 minutes on 2 cores, most of
it decoding the corpus, importing torch and moto ingesting 435 MB a few times.

    uv run python bench/preempt.py [--parts notice,upload]
        [--models hybrid-attention,slowfast-r50] [--poll 5] [--keep DIR]
        [--sizes-mb 12.5,435] [--rounds 2] [--endpoint-url URL --bucket B]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.imds: the IMDSv2 stand-in the tests use

from remote.onhost.proc import pid_alive  # noqa: E402
from remote.storage import StorageUrl, push_run, s3_client, sha256_file  # noqa: E402
from remote.storage.url import error_code  # noqa: E402
from tests.imds import ImdsStandIn  # noqa: E402
from trainers.events import read_events  # noqa: E402

SIZES_MB = {"hybrid-attention": 12.5, "slowfast-r50": 435.0}
BUCKET = "emo-bench"
RUN_ID = "bench-run"
REGION = "us-east-1"
BUDGET_S = 120.0  # AWS's spot interruption notice
S3_POLL_S = 0.2
FIRST_STEP_WAIT_S = 600.0
AFTER_NOTICE_WAIT_S = 300.0

# -- notice to storage ---------------------------------------------------------------------

COMMON = ["train.threads=2", "data.prepare_workers=2", "data.face_detector=haar"]
RECIPES: dict[str, list[str]] = {
    "hybrid-attention": [
        "model.audio_channels=16", "model.frame_width=8", "model.frame_dim=32",
        "model.tcn_channels=32", "model.d_model=32", "model.heads=2", "train.batch_size=8",
    ],
    "slowfast-r50": [
        "model.depth=50", "model.width=64", "data.face_size=64", "data.fps=8",
        "data.max_frames=16", "data.clip_frames=8", "data.clips_per_video_train=1",
        "data.eval_clips=1", "train.batch_size=4",
    ],
}  # fmt: skip


@dataclass(frozen=True)
class NoticeFigures:
    """Seconds after the stand-in announced the interruption."""

    model: str
    status: str | None  # the trainer's final status (preempted)
    noticed: float
    checkpoint: float
    preempted: float
    exited: float  # the guard found the trainer gone; its own push starts here
    ckpt_in_s3: float | None  # None: that checkpoint never reached S3
    notice_in_s3: float | None  # notice.json with pushed_at, seen in S3
    checkpoint_bytes: int

    def line(self) -> str:
        def s(value: float | None) -> str:
            return f"{value:.2f}" if value is not None else "never"

        return (
            f"{self.model:<17}{self.noticed:>8.2f}{self.checkpoint:>8.2f}{self.preempted:>10.2f}"
            f"{self.exited:>8.2f}{s(self.ckpt_in_s3):>11}{s(self.notice_in_s3):>14}"
            f"{self.checkpoint_bytes / 1e6:>9.1f}"
        )

    def verdict(self) -> str:
        if self.ckpt_in_s3 is None:
            return f"{self.model}: the checkpoint written after the notice never reached S3: MISSES"
        left = BUDGET_S - self.ckpt_in_s3
        push = self.ckpt_in_s3 - self.checkpoint
        fits = f"fits with {left:.1f} s to spare" if left >= 0 else f"MISSES by {-left:.1f} s"
        return (
            f"{self.model}: checkpoint in S3 {self.ckpt_in_s3:.1f} s after the notice "
            f"({push:.1f} s of it pushing {self.checkpoint_bytes / 1e6:.0f} MB): "
            f"{fits} of the {BUDGET_S:.0f} s budget"
        )


NOTICE_HEADER = (
    f"{'model':<17}{'noticed':>8}{'ckpt':>8}{'preempted':>10}{'exited':>8}{'ckpt in S3':>11}"
    f"{'notice in S3':>14}{'ckpt MB':>9}"
)


def _events(run_dir: Path) -> list[dict]:
    return read_events(run_dir / "events.jsonl") if run_dir.exists() else []


def _launch_env(home: Path) -> dict[str, str]:
    """This environment less AWS_* (hostctl scrubs them too) and with a HOME that has
    no ~/.aws: the guard's only credentials are the stand-in's instance role."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    return env


def _s3_object(client: Any, bucket: str, key: str, body: bool) -> Any:
    """head_object (or the body with ``body``), None when there is no such object."""
    try:
        if body:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey"):
            return None
        raise


def _s3_sha256(client: Any, bucket: str, key: str) -> str:
    """The SHA-256 of the object's bytes, downloaded (not its metadata's claim)."""
    digest = hashlib.sha256()
    stream = client.get_object(Bucket=bucket, Key=key)["Body"]
    while chunk := stream.read(4 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def notice_to_storage(
    model: str,
    corpus: Path,
    work: Path,
    imds: ImdsStandIn,
    endpoint: str,
    client: Any,
    poll: float,
) -> NoticeFigures:
    """Train ``model`` under ``hostctl launch`` with a guard pushing to ``endpoint``,
    announce an interruption after its first step, and time the checkpoint into S3."""
    runs = work / "runs"
    run_dir = runs / model
    url = StorageUrl.parse(f"s3://{BUCKET}/runs", "bench")
    ckpt_key = url.key(model, "checkpoints/last.pt")
    notice_key = url.key(model, "notice.json")
    sets = []
    for item in [*COMMON, *RECIPES[model], "train.epochs=20", f"data.cache_dir={work / 'cache'}"]:
        sets += ["--set", item]
    argv = [sys.executable, "-m", "trainers", "train", model, "--data", str(corpus),
            "--out", str(runs), "--run-id", model, *sets]  # fmt: skip
    launch = [sys.executable, "-m", "remote.hostctl", "launch", "--runs", str(runs),
              "--run-id", model, "--storage", str(url), "--endpoint-url", endpoint,
              "--region", REGION, "--imds", imds.url, "--poll", str(poll),
              "--", *argv]  # fmt: skip
    imds.clear()  # each run on a fresh "instance": the last model's notice is gone
    imds.requests.clear()
    out = subprocess.run(
        launch, capture_output=True, text=True, check=True, cwd=REPO, env=_launch_env(work / "home")
    )
    answer = json.loads(out.stdout.splitlines()[-1])
    if "guard_pid" not in answer:
        raise SystemExit(f"{model}: hostctl launch started no guard: {answer}")
    t0 = time.time()
    # Mid-epoch: after the run's first step, so the stop saves a mid-epoch checkpoint.
    while not any(e["type"] == "step" for e in _events(run_dir)):
        if not pid_alive(answer["pid"]) or time.time() - t0 > FIRST_STEP_WAIT_S:
            log = (runs / ".launches" / model / "output.log").read_text()[-3000:]
            raise SystemExit(f"{model}: the run never reached its first step:\n{log}")
        time.sleep(0.2)
    announced = time.time()
    imds.announce("terminate", in_s=BUDGET_S)

    # S3 as the next instance would see it: each checkpoint version's first sighting
    # (by its sha256 metadata), and notice.json once it carries pushed_at.
    seen: dict[str, float] = {}
    notice_seen: float | None = None
    while True:
        head = _s3_object(client, BUCKET, ckpt_key, body=False)
        if head is not None:
            seen.setdefault(head.get("Metadata", {}).get("sha256", "?"), time.time() - announced)
        if notice_seen is None:
            body = _s3_object(client, BUCKET, notice_key, body=True)
            if body is not None and "pushed_at" in json.loads(body):
                notice_seen = time.time() - announced
        if notice_seen is not None and not pid_alive(answer["guard_pid"]):
            break
        if time.time() - announced > AFTER_NOTICE_WAIT_S:
            log = (run_dir / "guard.log").read_text()[-3000:] if run_dir.exists() else ""
            raise SystemExit(f"{model}: notice.json with pushed_at never reached S3:\n{log}")
        time.sleep(S3_POLL_S)

    if not any("security-credentials" in path for _, path in imds.requests):
        raise SystemExit(f"{model}: the guard did not take its credentials from the stand-in")
    notice = json.loads((run_dir / "notice.json").read_text())
    final = read_events(run_dir / "events.jsonl")[-1]
    ckpt = run_dir / "checkpoints" / "last.pt"
    if notice.get("checkpoint_at", 0.0) < notice["noticed_at"]:
        raise SystemExit(f"{model}: no checkpoint written after the notice ({ckpt}); "
                         f"see {run_dir / 'guard.log'}")  # fmt: skip
    local_sha = sha256_file(ckpt)
    in_s3 = seen.get(local_sha)
    if in_s3 is not None and _s3_sha256(client, BUCKET, ckpt_key) != local_sha:
        raise SystemExit(f"{model}: s3://{BUCKET}/{ckpt_key} has the checkpoint's sha256 "
                         "metadata but not its bytes")  # fmt: skip
    _empty(client, BUCKET)  # moto keeps objects in memory
    return NoticeFigures(
        model=model,
        status=final.get("status"),
        noticed=notice["noticed_at"] - announced,
        checkpoint=notice["checkpoint_at"] - announced,
        preempted=final["time"] - announced,
        exited=notice["stopped_at"] - announced,
        ckpt_in_s3=in_s3,
        notice_in_s3=notice_seen,
        checkpoint_bytes=ckpt.stat().st_size,
    )


def notice_part(models: list[str], endpoint: str, client: Any, args: argparse.Namespace) -> None:
    from trainers.data.synth import write_corpus

    work = args.keep or Path(tempfile.mkdtemp(prefix="preempt-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "ravdess"
    if not corpus.exists():
        write_corpus("ravdess", corpus, actors=args.actors, seed=3, statements=1, repetitions=1)
    imds = ImdsStandIn().start()
    rows = []
    try:
        for model in models:
            if (work / "runs" / model).exists():
                shutil.rmtree(work / "runs" / model)
                shutil.rmtree(work / "runs" / ".launches" / model, ignore_errors=True)
            print(f"{model}: hostctl launch with a guard; the notice after step 1", flush=True)
            rows.append(notice_to_storage(model, corpus, work, imds, endpoint, client, args.poll))
    finally:
        imds.close()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nnotice to storage: seconds after the stand-in announced the interruption "
        f"(guard poll {args.poll:g} s, S3 polled every {S3_POLL_S:g} s; AWS gives {BUDGET_S:.0f} s)"
    )
    print(NOTICE_HEADER)
    for row in rows:
        print(row.line())
    for row in rows:
        if row.status != "preempted":
            print(f"{row.model}: final status {row.status!r}, expected 'preempted'")
        print(row.verdict())


# -- upload ratio --------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadFigures:
    size: int  # bytes
    plain_s: float  # best round of upload_file
    push_s: float  # best round of push_run (hash + temporary key + copy + manifest)
    direct_s: float  # best round of push_run(temporary_key=False): no copy
    hash_s: float  # SHA-256 of the file alone
    copy_s: float  # one server-side copy of the object alone

    @property
    def ratio(self) -> float:
        """push throughput / plain throughput (same bytes, so plain_s / push_s)."""
        return self.plain_s / self.push_s

    @property
    def direct_ratio(self) -> float:
        return self.plain_s / self.direct_s

    def line(self, name: str) -> str:
        mb = self.size / 1e6
        return (
            f"{name:<17}{mb:>7.1f} MB  plain {mb / self.plain_s:6.1f} MB/s  "
            f"push {mb / self.push_s:6.1f} MB/s = {self.ratio:4.2f}x  "
            f"direct {mb / self.direct_s:6.1f} MB/s = {self.direct_ratio:4.2f}x  "
            f"(hash {self.hash_s:.2f} s, copy {self.copy_s:.2f} s)"
        )


def write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    with open(path, "wb") as fh:
        left, i = size, 0
        while left > 0:
            # A different block each MiB, cheaply: nothing on the way gets a break.
            chunk = (i.to_bytes(8, "little") + block[8:])[: min(left, len(block))]
            fh.write(chunk)
            left -= len(chunk)
            i += 1


def _timed(fn: Callable[[], object]) -> float:
    subprocess.run(["sync"], check=False)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def upload_ratio(
    client_factory: Callable[[], Any],
    bucket: str,
    size: int,
    *,
    rounds: int = 3,
    workdir: Path | None = None,
) -> UploadFigures:
    """Time ``push_run`` of a run whose one big file is a ``size``-byte
    ``checkpoints/last.pt`` against ``upload_file`` of that file, ``rounds`` each,
    alternating; the objects are deleted after each round."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        run = Path(tmp) / RUN_ID
        ckpt = run / "checkpoints" / "last.pt"
        write_random(ckpt, size)
        (run / "run.json").write_text('{"id": "bench-run"}\n')
        url = StorageUrl.parse(f"s3://{bucket}/bench", "bench")
        client = client_factory()
        from boto3.s3.transfer import TransferConfig

        plain_key = "plain/last.pt"

        def plain() -> None:
            client.upload_file(str(ckpt), bucket, plain_key, Config=TransferConfig())

        def pusher(temporary_key: bool) -> Callable[[], None]:
            def push() -> None:
                (run / ".storage" / "pushed.json").unlink(missing_ok=True)  # send it all again
                report = push_run(run, url, client, temporary_key=temporary_key)
                assert "checkpoints/last.pt" in report.uploaded, report

            return push

        times: dict[str, list[float]] = {"plain": [], "push": [], "direct": []}
        order = [("plain", plain), ("push", pusher(True)), ("direct", pusher(False))]
        for i in range(rounds):
            for name, fn in order[i % 3 :] + order[: i % 3]:  # each goes first in turn
                times[name].append(_timed(fn))
                _empty(client, bucket)
        hash_s = _timed(lambda: sha256_file(ckpt))
        plain()
        copy_s = _timed(
            lambda: client.copy_object(
                Bucket=bucket, Key="plain/copy.pt", CopySource={"Bucket": bucket, "Key": plain_key}
            )
        )
        _empty(client, bucket)
    best = {name: min(t) for name, t in times.items()}
    return UploadFigures(size, best["plain"], best["push"], best["direct"], hash_s, copy_s)


def _empty(client: Any, bucket: str) -> None:
    for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=obj["Key"])


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's server on loopback with fake credentials (for this process's own
    client; the guard takes the stand-in's); its endpoint."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(
        AWS_ACCESS_KEY_ID="AKIAEMOCONSOLEBENCH0",
        AWS_SECRET_ACCESS_KEY="bench-secret-not-real",
        AWS_DEFAULT_REGION=REGION,
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def upload_part(sizes: list[float], endpoint: str, bucket: str, rounds: int) -> None:
    names = {v: k for k, v in SIZES_MB.items()}

    def factory() -> Any:
        return s3_client(endpoint)

    print(f"\nupload ratio: push_run vs plain upload_file, best of {rounds} alternating rounds")
    worst = {"push": float("inf"), "direct": float("inf")}
    for mb in sizes:
        figures = upload_ratio(factory, bucket, int(mb * 1e6), rounds=rounds)
        print(figures.line(names.get(mb, "checkpoint")), flush=True)
        worst["push"] = min(worst["push"], figures.ratio)
        worst["direct"] = min(worst["direct"], figures.direct_ratio)
    for name, ratio in worst.items():
        verdict = "meets" if ratio >= 0.8 else "MISSES"
        print(f"{name}: worst ratio {ratio:.2f}, {verdict} the 0.8 target")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="notice,upload", help="notice, upload or both")
    parser.add_argument("--models", default=",".join(RECIPES), help="for the notice part")
    parser.add_argument("--poll", type=float, default=5.0, help="the guard's IMDS poll (s)")
    parser.add_argument("--actors", type=int, default=4, help="of the generated corpus")
    parser.add_argument("--keep", type=Path, default=None, help="leave the runs here")
    parser.add_argument(
        "--sizes-mb",
        default=",".join(str(v) for v in SIZES_MB.values()),
        help="upload part: sizes in MB, comma-separated (default: the two checkpoints)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="upload part: rounds")
    parser.add_argument("--endpoint-url", help="upload part: an S3 endpoint (default: moto)")
    parser.add_argument("--bucket", default=BUCKET, help="with --endpoint-url: an existing bucket")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts or parts - {"notice", "upload"}:
        parser.error(f"--parts {args.parts!r}: expected notice, upload or notice,upload")
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in RECIPES]
    if unknown:
        parser.error(f"--models: no recipe for {', '.join(unknown)} (known: {', '.join(RECIPES)})")
    sizes = [float(s) for s in args.sizes_mb.split(",") if s.strip()]

    started = time.time()
    with moto_s3() as endpoint:
        client = s3_client(endpoint, REGION)
        client.create_bucket(Bucket=BUCKET)
        if "notice" in parts:
            notice_part(models, endpoint, client, args)
            print(f"(notice part: {time.time() - started:.0f} s)")
        if "upload" in parts:
            upload_started = time.time()
            if args.endpoint_url:
                upload_part(sizes, args.endpoint_url, args.bucket, args.rounds)
            else:
                upload_part(sizes, endpoint, BUCKET, args.rounds)
            print(f"(upload part: {time.time() - upload_started:.0f} s)")
    print(f"\nbench took {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
