"""Sweep overhead: 8 tiny runs as one `python -m trainers sweep` (a 2x2 grid x 2 seeds)
against the same 8 started by hand one after another (`python -m trainers train` each).

Each arm gets its own empty feature cache, so both pay the corpus's decoding once (the
first run decodes, the others read the cache): the difference is what running the runs
in one process costs or saves per run (torch imported once, no process start per run).
Per-run overhead ratio = sweep wall / by-hand wall over the same 8 runs (target <= 1.05).
"Decoded once": the sweep's runs decoded the corpus's recordings exactly once in all
(summary.json's data.decoded_recordings summed over the runs).

    uv run python bench/sweep.py [--rounds 1] [--epochs 1] [--keep DIR]

Figures (2026-12-03, 2 cores, PYTHONDONTWRITEBYTECODE unset, bytecode warm, --rounds 2):
sweep 25.2 s / 28.2 s for the 8 runs, by hand 68.0 s / 90.9 s: ratio 0.37 (best of each),
0.64-0.75 s per run outside the engine against 4.3-5.6 s; the sweep's runs decoded the 60
recordings once in all (the first run), as did the by-hand runs sharing one cache.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL = [
    "model.audio_channels=16", "model.frame_width=8", "model.frame_dim=32",
    "model.tcn_channels=32", "model.d_model=32", "model.heads=2",
    "train.batch_size=8", "train.threads=1", "data.prepare_workers=2",
    "data.face_detector=haar",
]  # fmt: skip
LRS = ("1e-3", "3e-4")
DROPOUTS = ("0.1", "0.2")
SEEDS = (42, 43)


def trainers(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "trainers", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"python -m trainers {args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def summaries(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("**/summary.json"))]


def by_hand(data: Path, out: Path, cache: Path, epochs: int) -> float:
    common = [*SMALL, f"train.epochs={epochs}", f"data.cache_dir={cache}"]
    t0 = time.perf_counter()
    for i, (lr, dropout, seed) in enumerate(itertools.product(LRS, DROPOUTS, SEEDS)):
        cell = [f"train.lr={lr}", f"model.dropout={dropout}", f"train.seed={seed}"]
        trainers(
            "train", "hybrid-attention", "--data", str(data), "--out", str(out),
            "--run-id", f"r{i}", *sets([*common, *cell]),
        )  # fmt: skip
    return time.perf_counter() - t0


def as_sweep(data: Path, out: Path, cache: Path, epochs: int) -> float:
    common = [*SMALL, f"train.epochs={epochs}", f"data.cache_dir={cache}"]
    t0 = time.perf_counter()
    trainers(
        "sweep", "hybrid-attention", "--data", str(data), "--out", str(out), "--id", "e",
        "--grid", f"train.lr={','.join(LRS)}", "--grid", f"model.dropout={','.join(DROPOUTS)}",
        "--seeds", str(len(SEEDS)), *sets(common),
    )  # fmt: skip
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=1, help="hand/sweep pairs (ABBA order)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--keep", type=Path, default=None, help="work here and keep it")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("EMOCONSOLE_CACHE", str(work / "default-cache"))
    data = work / "ravdess"
    if not data.exists():
        trainers(
            "synth", "--layout", "ravdess", "--out", str(data), "--actors", "4", "--seed", "3",
            "--statements", "1", "--repetitions", "1",
        )  # fmt: skip
    print(f"corpus: 4 actors; {len(LRS) * len(DROPOUTS) * len(SEEDS)} runs of "
          f"{args.epochs} epoch(s) per arm; cpus {os.cpu_count()}")  # fmt: skip
    n_recordings = 0
    # Python's bytecode cache decides what a process start costs (torch and torch._dynamo,
    # which the optimizer imports, compile from source in about 20 s on 2 busy cores when
    # PYTHONDONTWRITEBYTECODE is set): say which case this is, and import once untimed.
    print(f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}")
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import torch._dynamo, trainers.engine.trainer\n"
            "from trainers.registry import get_entry; get_entry('hybrid-attention')",
        ],
        check=True,
    )
    hand_s, sweep_s, decoded = [], [], []
    for r in range(args.rounds):
        order = ("hand", "sweep") if r % 2 == 0 else ("sweep", "hand")
        for arm in order:
            base = work / f"round{r}-{arm}"
            shutil.rmtree(base, ignore_errors=True)
            cache = base / "cache"
            if arm == "hand":
                wall = by_hand(data, base / "runs", cache, args.epochs)
                hand_s.append(wall)
            else:
                wall = as_sweep(data, base / "runs", cache, args.epochs)
                sweep_s.append(wall)
            rows = summaries(base / "runs")
            train = sum(s["timings"]["total_s"] for s in rows)
            dec = [s["data"]["decoded_recordings"] for s in rows]
            n_recordings = rows[0]["data"]["recordings"]
            if arm == "sweep":
                decoded.append(dec)
            print(
                f"round {r} {arm:5s}: {wall:6.1f} s wall for {len(rows)} runs "
                f"({wall / len(rows):.2f} s/run; in the engine {train:.1f} s, outside it "
                f"{(wall - train) / len(rows):.2f} s/run); decoded per run {dec}"
            )
    hand, sweep = min(hand_s), min(sweep_s)
    once = all(sum(d) == n_recordings and sum(x > 0 for x in d) == 1 for d in decoded)
    print(
        f"per-run overhead ratio sweep/by-hand: {sweep / hand:.3f} (target <= 1.05; "
        f"{sweep / 8:.2f} s vs {hand / 8:.2f} s per run, best of {args.rounds})"
    )
    print(f"sweep decoded the corpus once: {'yes' if once else 'no'} ({decoded})")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if once else 1


if __name__ == "__main__":
    raise SystemExit(main())
