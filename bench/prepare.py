"""``prepare`` on a realistic RAVDESS-layout corpus against the decode-only floor.

What a researcher pays before the first epoch on real downloads: ``python -m
trainers prepare`` (decode, face detection and crop, audio resampling and
features, cache writes) on a corpus as RAVDESS ships it (``synth --realistic``:
1280x720 H.264 with B-frames at 29.97 fps, 48 kHz audio), in recordings per
second per core, against the floor: PyAV decoding every frame of the same video
file and every sample of the same audio file, nothing else, in the same number
of processes. Target: prepare at most 2x the floor's time.

One row per face detector (``--detectors``), each into a fresh cache, so each
row decodes everything. The corpus is written once under ``--out`` and reused.

    uv run python bench/prepare.py [--actors 6] [--workers 2] [--detectors haar,mtcnn]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def corpus(out: Path, actors: int) -> Path:
    """A realistic RAVDESS corpus of ``actors`` actors (written once, then reused)."""
    from trainers.data.synth import MANIFEST_NAME, write_corpus

    root = out / f"ravdess-realistic-{actors}"
    if not (root / MANIFEST_NAME).is_file():
        shutil.rmtree(root, ignore_errors=True)
        start = time.perf_counter()
        write_corpus("ravdess", root, actors=actors, seed=0, realistic=True)
        print(f"wrote {root} in {time.perf_counter() - start:.0f} s", flush=True)
    return root


def sources(root: Path) -> list[tuple[str, str]]:
    """(video file, audio file) of each speech recording, as the loader picks them."""
    from trainers.data.ravdess import index_ravdess

    records = index_ravdess(str(root), lambda path, reason: None)
    return [(rec.video_sources[0], rec.audio_sources[0]) for rec in records]


def decode_only(pair: tuple[str, str]) -> int:
    """Every video frame and every audio sample of one recording, and nothing else."""
    import av

    frames = 0
    with av.open(pair[0]) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            frames += 1
    with av.open(pair[1]) as container:
        for frame in container.decode(container.streams.audio[0]):
            frame.to_ndarray()
    return frames


def floor(pairs: list[tuple[str, str]], workers: int) -> float:
    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(decode_only, pairs, chunksize=4))
    return time.perf_counter() - start


def prepare(root: Path, cache: Path, workers: int, detector: str) -> float:
    shutil.rmtree(cache, ignore_errors=True)
    argv = [
        sys.executable, "-m", "trainers", "prepare", "ravdess", str(root), "--out", str(cache),
        "--workers", str(workers), "--set", f"data.face_detector={detector}",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"prepare failed ({detector}):\n{done.stderr[-2000:]}")
    print("   ", done.stdout.strip().splitlines()[0], flush=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actors", type=int, default=6)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--detectors", default="haar,mtcnn")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "prepare")
    parser.add_argument("--corpus", type=Path, help="a realistic RAVDESS corpus to reuse")
    args = parser.parse_args()

    root = args.corpus or corpus(args.out, args.actors)
    pairs = sources(root)
    n, w = len(pairs), args.workers
    base = floor(pairs, w)
    actors = len({Path(video).parent.name for video, _ in pairs})
    print(f"\n{n} recordings ({actors} actors, realistic RAVDESS), {w} processes\n")
    print(f"{'':24} {'seconds':>8} {'rec/s/core':>11} {'x floor':>8}")
    print(f"{'decode only (PyAV)':24} {base:8.1f} {n / base / w:11.2f} {1.0:8.2f}")
    for detector in args.detectors.split(","):
        took = prepare(root, args.out / f"cache-{detector}", w, detector)
        label = f"prepare ({detector})"
        print(f"{label:24} {took:8.1f} {n / took / w:11.2f} {took / base:8.2f}", flush=True)
    print("\ntarget: prepare <= 2.00 x floor")


if __name__ == "__main__":
    main()
