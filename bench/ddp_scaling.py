"""Training throughput (samples/s) from 1 to N processes under torchrun.

Each world size trains the same model on the same generated corpus through the
real launcher (``python -m trainers train ... --nproc-per-node N``), with the
per-process batch fixed, so N processes do N times the work per step. The
figure is the global training throughput of the epochs after the first (the
first pays for process-group set-up and warm-up): rank 0's ``samples`` summed
over its step events, times the world size, over the wall time between the
first and last step event of those epochs. The baseline is the 1-process run
measured in the same invocation.

On a GPU machine use ``--max-procs`` up to the GPU count (NCCL, one GPU per
rank). On this project's 2-core CI machines the ranks share two cores (gloo),
so the CPU figures say that the path works and what it costs, not how GPUs scale.

    uv run python bench/ddp_scaling.py [--model hybrid-attention] [--max-procs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SMALL = [
    "model.audio_channels=16", "model.frame_width=8", "model.frame_dim=32",
    "model.tcn_channels=32", "model.d_model=32", "model.heads=2",
    "train.batch_size=8", "train.log_every=1", "train.epochs=4", "train.patience=100",
]  # fmt: skip


def run(model: str, data: Path, out: Path, cache: Path, procs: int, extra: list[str]) -> dict:
    run_id = f"w{procs}"
    argv = [sys.executable, "-m", "trainers", "train", model, "--data", str(data)]
    argv += ["--out", str(out), "--run-id", run_id, "--nproc-per-node", str(procs)]
    for item in [*SMALL, f"data.cache_dir={cache}", *extra]:
        argv += ["--set", item]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{procs} process(es) failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    lines = (out / run_id / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    steps = [e for e in events if e["type"] == "step" and e["epoch"] >= 2]
    wall = steps[-1]["time"] - steps[0]["time"]
    samples = sum(e["samples"] for e in steps[1:]) * procs  # the first step starts the clock
    return {"procs": procs, "samples_s": samples / wall, "steps": len(steps), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hybrid-attention")
    parser.add_argument("--max-procs", type=int, default=2)
    parser.add_argument("--actors", type=int, default=6)
    parser.add_argument("--data", type=Path, default=None, help="a RAVDESS-layout corpus")
    parser.add_argument("--set", dest="extra", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        root = Path(tmp)
        data = args.data
        if data is None:
            data = root / "data"
            subprocess.run(
                [sys.executable, "-m", "trainers", "synth", "--out", str(data), "--actors",
                 str(args.actors), "--seed", "0", "--statements", "1", "--repetitions", "1"],
                check=True, capture_output=True,
            )  # fmt: skip
        cache = root / "cache"
        rows = []
        for procs in range(1, args.max_procs + 1):
            rows.append(run(args.model, data, root / "runs", cache, procs, args.extra))
        base = rows[0]["samples_s"]
        cores = os.cpu_count()
        print(f"{args.model}, per-process batch 8, epochs 2-4, {cores} CPU cores visible")
        print(f"{'procs':>5}  {'samples/s':>10}  {'vs 1':>6}  {'steps':>5}")
        for row in rows:
            print(
                f"{row['procs']:>5}  {row['samples_s']:>10.1f}  "
                f"{row['samples_s'] / base:>5.2f}x  {row['steps']:>5}"
            )


if __name__ == "__main__":
    main()
