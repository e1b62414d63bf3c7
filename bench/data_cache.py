"""Data time of epoch 2 against epoch 1 for a face-crop video model (r3d-18 at a tiny
size) on a generated RAVDESS corpus: does only the first epoch pay for decoding?

"Data time" is what the training loop spends waiting for its inputs, read from
the engine's own records of a real run: the ``data_s`` of every step event
(``train.log_every=1``, so the step events of an epoch add up to all of its
waits) and ``timings.prepare_s`` in summary.json. This engine decodes in the
data module's ``setup()``, before the first batch (face detection, cropping,
audio features; cache first, a process pool for the misses), rather than
lazily inside epoch 1's batches, so epoch 1's data time is setup plus its
batch waits, and each later epoch's is its batch waits alone (the decoded
arrays stay in memory). Both parts are printed, never only their sum.

Two runs on one fresh cache directory: the first decodes and fills the cache
(cold), the second finds every entry (warm): what the next run on the same
data pays. Target: epoch 2 at least 20x faster than epoch 1 of the cold run.

    uv run python bench/data_cache.py [--actors 4] [--data DIR] [--device cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MODEL = "r3d-18"
TINY = [
    "model.layers=1,1,1,1", "model.width=16",
    "data.face_size=32", "data.fps=8", "data.max_frames=16", "data.clip_frames=8",
    "train.epochs=2", "train.patience=10", "train.batch_size=8", "train.log_every=1",
    "train.scheduler=none",
]  # fmt: skip


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """The engine echoes its log to the stdout it saw at import: silence fd 1 itself, so
    only the figures reach stdout (train.log keeps the log)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def run_once(data: Path, cache: Path, runs: Path, run_id: str, extra: list[str]) -> dict[str, Any]:
    """One engine run; per-epoch batch waits from its events, setup from its summary."""
    from trainers.config import resolve
    from trainers.engine.trainer import Trainer, new_manifest
    from trainers.events import read_events
    from trainers.registry import get_entry
    from trainers.rundir import RunDir

    entry = get_entry(MODEL)
    cfg = resolve(entry.default_config(), assignments=[*TINY, f"data.cache_dir={cache}", *extra])
    cfg.data.root = str(data)
    run = RunDir(runs / run_id).create()
    run.write_manifest(new_manifest(run, entry, cfg, sys.argv))
    t0 = time.perf_counter()
    with quiet_stdout():
        summary = Trainer(entry, cfg, run).fit()
    wall = time.perf_counter() - t0
    events = read_events(run.events)
    waits: dict[int, list[float]] = {}
    for event in events:
        if event["type"] == "step":
            waits.setdefault(event["epoch"], []).append(event["data_s"])
    info = json.loads(run.summary.read_text("utf-8"))["data"]
    return {
        "prepare_s": summary["timings"]["prepare_s"],
        "wait_s": {epoch: sum(w) for epoch, w in sorted(waits.items())},
        "steps": {epoch: len(w) for epoch, w in sorted(waits.items())},
        "decoded": info["decoded_recordings"],
        "cached": info["cached_recordings"],
        "recordings": info["recordings"],
        "wall_s": wall,
        "device": summary["device"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--actors", type=int, default=4, help="generated RAVDESS actors (4: 2 train, 1 val, 1 test)"
    )
    parser.add_argument("--data", type=Path, default=None, help="an existing RAVDESS folder")
    parser.add_argument("--device", default="cpu", help="train.device (data time is CPU work)")
    parser.add_argument("--workers", type=int, default=2, help="data.prepare_workers")
    args = parser.parse_args()
    extra = [f"train.device={args.device}", f"data.prepare_workers={args.workers}"]

    with tempfile.TemporaryDirectory(prefix="bench-data-cache-") as tmp:
        work = Path(tmp)
        data = args.data
        if data is None:
            from trainers.data.synth import write_corpus

            data = work / "ravdess"
            t0 = time.perf_counter()
            manifest = write_corpus(
                "ravdess", data, actors=args.actors, seed=0, statements=1, repetitions=1,
                workers=args.workers,
            )  # fmt: skip
            print(
                f"generated {len(manifest.recordings)} recordings ({args.actors} actors) in "
                f"{time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
            )
        cache = work / "cache"  # fresh: the first run decodes everything
        os.environ["EMOCONSOLE_CACHE"] = str(cache)  # nothing lands in ~/.cache
        cold = run_once(data, cache, work / "runs", "cold", extra)
        warm = run_once(data, cache, work / "runs", "warm", extra)

    c1 = cold["prepare_s"] + cold["wait_s"][1]
    c2 = cold["wait_s"][2]
    w1 = warm["prepare_s"] + warm["wait_s"][1]
    print(
        f"model {MODEL} (tiny: width 16, one block per stage), {cold['recordings']} RAVDESS "
        f"recordings, 8-frame 32 px clips, batch 8, {cold['steps'][1]} steps/epoch, "
        f"{cold['device']}, prepare workers {args.workers}"
    )
    print(
        f"cold cache, epoch 1 data: {c1:7.3f} s = setup {cold['prepare_s']:.3f} s "
        f"({cold['decoded']} decoded into the cache, {cold['cached']} cached) "
        f"+ batch waits {cold['wait_s'][1]:.3f} s"
    )
    print(f"cold cache, epoch 2 data: {c2:7.3f} s = batch waits (arrays in memory)")
    print(f"ratio epoch 1 / epoch 2 : {c1 / c2:7.1f}x  (target >= 20x)")
    print(
        f"batch waits alone, epoch 1 / epoch 2: {cold['wait_s'][1] / c2:.1f}x (decoding is in "
        "setup, so the batches of both epochs are cut from arrays in memory)"
    )
    print(
        f"warm cache, epoch 1 data: {w1:7.3f} s = setup {warm['prepare_s']:.3f} s "
        f"({warm['decoded']} decoded, {warm['cached']} read from the cache) "
        f"+ batch waits {warm['wait_s'][1]:.3f} s; epoch 2 {warm['wait_s'][2]:.3f} s"
    )
    print(f"setup cold / warm       : {cold['prepare_s'] / warm['prepare_s']:7.1f}x")


if __name__ == "__main__":
    main()
