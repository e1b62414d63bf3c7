"""Preemption figures (issue 15). Upload part: the throughput of
:func:`remote.storage.push_run` for one checkpoint-sized file against a plain
boto3 ``upload_file`` of the same file to the same S3 endpoint, as a ratio.
Target: push MB/s >= 0.8 x plain MB/s.

``push_run`` does more than ``upload_file``: it hashes the file (SHA-256, for the
manifest and the pull-side check), uploads it to a temporary key and copies it
server-side to the final key (so a half-upload is never taken for a checkpoint),
deletes the temporary key and puts the manifest. Those steps are timed apart too
(``hash``, ``copy``), so the figure says which one costs what. ``direct`` is
``push_run(temporary_key=False)``: straight to the final key, which S3 also never
shows half-written (see remote/storage/push.py). Both contenders
use boto3's default TransferConfig (8 MiB parts, 10 at once). Rounds alternate
between the contenders so drift on a shared machine hits both alike; the best
round of each is compared (noise only ever slows a round down).

Sizes are the two models' checkpoints with Adam state (fp32 weights + exp_avg +
exp_avg_sq = 12 bytes per parameter): hybrid-attention 1.05 M parameters ->
12.5 MB; slowfast-r50 36.2 M -> 435 MB.

    uv run python bench/preempt.py [--sizes-mb 12.5,435] [--rounds 3] [--endpoint-url URL]

Without --endpoint-url a moto server on loopback (CPU-bound Python: its own
ingest limits both contenders alike, so the ratio, not the MB/s, is the figure).
The notice-to-storage timing part (the guard) sits beside :func:`upload_ratio`.
"""

from __future__ import annotations

import argparse
import logging
import os
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
sys.path.insert(0, str(REPO))

from remote.storage import StorageUrl, push_run, s3_client, sha256_file  # noqa: E402

SIZES_MB = {"hybrid-attention": 12.5, "slowfast-r50": 435.0}
BUCKET = "emo-bench"
RUN_ID = "bench-run"


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
    """moto's server on loopback with fake credentials; its endpoint."""
    import socket

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(
        AWS_ACCESS_KEY_ID="AKIAEMOCONSOLEBENCH0",
        AWS_SECRET_ACCESS_KEY="bench-secret-not-real",
        AWS_DEFAULT_REGION="us-east-1",
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes-mb",
        default=",".join(str(v) for v in SIZES_MB.values()),
        help="checkpoint sizes in MB, comma-separated (default: hybrid-attention, slowfast-r50)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--endpoint-url", help="an S3 endpoint (default: moto on loopback)")
    parser.add_argument("--bucket", default=BUCKET, help="with --endpoint-url: an existing bucket")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes_mb.split(",") if s.strip()]
    names = {v: k for k, v in SIZES_MB.items()}

    def run(endpoint: str | None) -> int:
        def factory() -> Any:
            return s3_client(endpoint)

        if endpoint is None or args.endpoint_url is None:
            factory().create_bucket(Bucket=args.bucket)
        worst = {"push": float("inf"), "direct": float("inf")}
        for mb in sizes:
            figures = upload_ratio(factory, args.bucket, int(mb * 1e6), rounds=args.rounds)
            print(figures.line(names.get(mb, "checkpoint")), flush=True)
            worst["push"] = min(worst["push"], figures.ratio)
            worst["direct"] = min(worst["direct"], figures.direct_ratio)
        for name, ratio in worst.items():
            verdict = "meets" if ratio >= 0.8 else "MISSES"
            print(f"{name}: worst ratio {ratio:.2f}, {verdict} the 0.8 target")
        return 0

    if args.endpoint_url:
        return run(args.endpoint_url)
    with moto_s3() as endpoint:
        return run(endpoint)


if __name__ == "__main__":
    raise SystemExit(main())
