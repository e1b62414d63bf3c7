"""Held-out-actor accuracy of a model on a generated corpus, and what it cost.

Generates (or reuses) a RAVDESS-layout corpus, trains with the model's
default recipe through the headless CLI, and prints the test metrics on the
held-out actors next to the wall time. Issue target for hybrid-attention on
12 actors: accuracy >= 0.90 within 10 minutes of CPU.

    uv run python bench/accuracy.py [--actors 12] [--model hybrid-attention] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actors", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="hybrid-attention")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    corpus = OUT / f"ravdess-{args.actors}a-s{args.seed}"
    cache = OUT / "features"
    t0 = time.perf_counter()
    if not (corpus / "synth_manifest.json").exists():
        subprocess.run(
            [sys.executable, "-m", "trainers", "synth", "--layout", "ravdess", "--out", str(corpus),
             "--actors", str(args.actors), "--seed", str(args.seed)],
            check=True,
        )  # fmt: skip
    synth_s = time.perf_counter() - t0
    run_id = f"{args.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = [sys.executable, "-m", "trainers", "train", args.model, "--data", str(corpus),
           "--out", str(OUT / "runs"), "--run-id", run_id,
           "--set", f"data.cache_dir={cache}"]  # fmt: skip
    for item in args.overrides:
        cmd += ["--set", item]
    t1 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    train_s = time.perf_counter() - t1
    summary = json.loads((OUT / "runs" / run_id / "summary.json").read_text())
    test, t = summary["test"], summary["timings"]
    print(f"corpus: {args.actors} actors, {summary['data']['splits']['train']['samples']} train / "
          f"{summary['data']['splits']['val']['samples']} val / "
          f"{summary['data']['splits']['test']['samples']} test recordings; "
          f"test actors {summary['data']['splits']['test']['actors']}")  # fmt: skip
    print(
        f"synth {synth_s:.0f}s (0 when reused); train process {train_s:.0f}s wall "
        f"(prepare {t['prepare_s']:.0f}s, train {t['train_s']:.0f}s, "
        f"{summary['epochs_run']} epochs at {t['epoch_mean_s']:.1f}s, {summary['stop_reason']})"
    )
    print(
        f"best epoch {summary['best_epoch']}: test accuracy {test['accuracy']:.4f}, "
        f"macro-F1 {test['macro_f1']:.4f}, weighted-F1 {test['weighted_f1']:.4f}, "
        f"UAR {test['uar']:.4f}; majority floor {summary['majority_floor']['accuracy']:.4f}"
    )
    print("per-class recall: " + ", ".join(
        f"{k} {v['recall']:.2f}" for k, v in test["per_class"].items()))  # fmt: skip


if __name__ == "__main__":
    main()
