"""Held-out-actor accuracy of a model on a generated corpus, with its spread over splits.

Generates (or reuses) a RAVDESS-layout corpus (``--realistic``: 1280x720 H.264
at 29.97 fps with 48 kHz audio, as RAVDESS ships), trains with the model's
default recipe through the headless CLI once per split seed and per variant,
and prints the test metrics on the held-out actors (accuracy, macro-F1, UAR)
with faces not found per split, then each variant's mean and standard
deviation over the split seeds. A number from one held-out actor is an
anecdote: the spread is the point.

Variants are ``--variant NAME:key=v,key=v`` (repeatable); by default one per
face detector (``data.face_detector=haar`` and ``mtcnn``). Every variant
shares one feature cache, so a second variant with the same decode settings
decodes nothing.

    uv run python bench/accuracy.py [--actors 12] [--realistic] [--split-seeds 0,1,2]
        [--variant haar:data.face_detector=haar] [--set train.epochs=20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "out"
METRICS = ("accuracy", "macro_f1", "uar")


def faces_line(data: dict) -> str:
    """Faces not found per split, from summary.json's data section."""
    faces = data.get("faces")
    if isinstance(faces, dict) and isinstance(faces.get("splits"), dict):
        parts = []
        for split, row in faces["splits"].items():
            parts.append(f"{split} {row.get('without_face', '?')}/{row.get('recordings', '?')}")
        return "faces not found: " + ", ".join(parts)
    return f"faces not found: {data.get('faces_not_found', '?')} recordings"


def train(args: argparse.Namespace, corpus: Path, name: str, sets: list[str], seed: int) -> dict:
    run_id = f"{args.model}-{name}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = [sys.executable, "-m", "trainers", "train", args.model, "--data", str(corpus),
           "--out", str(OUT / "runs"), "--run-id", run_id,
           "--set", f"data.cache_dir={OUT / 'features'}",
           "--set", f"data.split_seed={seed}"]  # fmt: skip
    for item in [*args.overrides, *sets]:
        cmd += ["--set", item]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((OUT / "runs" / run_id / "summary.json").read_text())
    test, data = summary["test"], summary["data"]
    print(
        f"{name:>10} split {seed}: test actors {data['splits']['test']['actors']}: "
        + ", ".join(f"{m} {test[m]:.3f}" for m in METRICS)
        + f" (floor {summary['majority_floor']['accuracy']:.3f}); {faces_line(data)}; "
        f"{summary['epochs_run']} epochs, {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actors", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0, help="the corpus's generator seed")
    parser.add_argument("--realistic", action="store_true", help="synth --realistic")
    parser.add_argument("--repetitions", type=int, default=2, choices=(1, 2))
    parser.add_argument("--split-seeds", default="0,1,2")
    parser.add_argument("--model", default="hybrid-attention")
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=v,key=v")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    kind = "realistic" if args.realistic else "standard"
    corpus = OUT / f"ravdess-{kind}-{args.actors}a-r{args.repetitions}-s{args.seed}"
    if not (corpus / "synth_manifest.json").exists():
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "trainers", "synth", "--layout", "ravdess",
               "--out", str(corpus), "--actors", str(args.actors),
               "--seed", str(args.seed), "--repetitions", str(args.repetitions)]  # fmt: skip
        subprocess.run(cmd + (["--realistic"] if args.realistic else []), check=True)
        print(f"wrote {corpus} in {time.perf_counter() - start:.0f} s")
    variants = args.variant or ["haar:data.face_detector=haar", "mtcnn:data.face_detector=mtcnn"]
    seeds = [int(s) for s in args.split_seeds.split(",")]
    print(f"{args.model} on {args.actors} {kind} actors, split seeds {seeds}")
    results: dict[str, list[dict]] = {}
    for spec in variants:
        name, _, sets = spec.partition(":")
        for seed in seeds:
            results.setdefault(name, []).append(
                train(args, corpus, name, [s for s in sets.split(",") if s], seed)
            )
    print(f"\nmean +- std over {len(seeds)} split seeds (held-out actors)")
    for name, rows in results.items():
        cells = []
        for m in METRICS:
            values = [r[m] for r in rows]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{m} {statistics.mean(values):.3f} +- {spread:.3f}")
        print(f"{name:>10}: " + ", ".join(cells) + f" (n={len(rows)})")


if __name__ == "__main__":
    main()
