"""Every model of the zoo trained end to end at a small size on generated data.

Each model trains through the headless CLI (the same path as a real run) on a
generated corpus with held-out actors (RAVDESS layout) or held-out images (FI
layout); fusion entries are built from the finished runs. Prints one table:
model, parameters at that size, wall seconds, test accuracy, macro-F1, and
chance for the split, so "beats chance by a wide margin" can be read off.

Sizes are small so the whole zoo fits on a 2-core CPU; the recipes (optimizer,
schedule, loss, augmentation, clips, TTA...) are the models' own, with only
widths, frame counts, image sizes and epochs reduced.

    uv run python bench/zoo.py [--actors 8] [--only r3d-18,slowfast-r50] [--epochs-scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "out" / "zoo"

AV_SMALL = ["data.prepare_workers=2", "train.threads=2"]
HYBRID = [
    "model.audio_channels=32", "model.frame_width=8", "model.frame_dim=64",
    "model.tcn_channels=64", "model.d_model=64", "model.heads=4", "train.epochs=20",
]  # fmt: skip
BRANCHED = [
    "model.frame_width=8", "model.frame_dim=32", "model.audio_conv_channels=32,64",
    "model.audio_lstm=32", "model.audio_dense=64", "model.video_lstm=32",
    "model.tcn_channels=32", "model.video_dense=64", "model.fusion_dims=64,32",
    "train.epochs=15",
]  # fmt: skip
CLIPS = ["data.face_size=48", "data.fps=8", "data.max_frames=16", "data.clip_frames=8"]

# model -> (layout, overrides)
RECIPES: dict[str, tuple[str, list[str]]] = {
    "hybrid-attention": ("ravdess", HYBRID),
    "branched-baseline": ("ravdess", BRANCHED),
    "branched-regularization": ("ravdess", BRANCHED),
    "branched-sync-aug": ("ravdess", BRANCHED),
    "branched-optimizer": ("ravdess", BRANCHED),
    "branched-tcn": ("ravdess", BRANCHED),
    "r3d-18": (
        "ravdess",
        ["model.layers=1,1,1,1", "model.width=16", *CLIPS, "train.epochs=30", "train.lr=1e-3"],
    ),
    "slowfast-r50": (
        "ravdess",
        [
            "model.depth=18",
            "model.width=16",
            *CLIPS,
            "train.epochs=30",
            "train.lr=1e-3",
            "train.batch_size=8",
        ],
    ),
    "meld-slowfast": (
        "ravdess",
        # No pretrained SlowFast here: a frozen random backbone learns nothing, so unfrozen.
        [
            "data.layout=ravdess",  # its default is MELD's layout; the zoo compares on RAVDESS
            "model.depth=18",
            "model.width=16",
            "model.freeze_backbone=false",
            *CLIPS,
            "data.face_size=48",
            "train.epochs=30",
            "train.min_epochs=10",
            "train.grad_accum=1",
            "train.batch_size=8",
        ],
    ),
}
IMAGE = [
    "data.image_size=64", "data.start_size=48", "data.resize_epoch=8", "train.epochs=15",
    "train.batch_size=16", "train.grad_accum=1", "train.min_epochs=0", "train.num_workers=0",
    "train.threads=2",
]  # fmt: skip
IMAGE_RECIPES: dict[str, list[str]] = {
    "image-resnet50": IMAGE,
    "image-efficientnet-b0": IMAGE,
    "image-vit-b16": [
        *IMAGE, "data.start_size=64", "model.patch_size=8", "model.layers=4", "model.heads=4",
        "model.hidden_dim=128", "model.mlp_dim=256", "train.lr=5e-4",
    ],
}  # fmt: skip
FUSIONS = {
    # (fusion, members): built from the finished runs above.
    "late-fusion": ("r3d-18", "branched-tcn"),
    "attention-fusion": ("r3d-18", "branched-tcn"),
    "image-ensemble": ("image-resnet50", "image-efficientnet-b0", "image-vit-b16"),
}


def run(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-15:]
        raise RuntimeError(
            f"{' '.join(cmd[:5])} failed (exit {proc.returncode}):\n" + "\n".join(tail)
        )
    return time.perf_counter() - t0


def corpus(layout: str, actors: int, seed: int) -> Path:
    path = OUT / f"{layout}-{actors}-s{seed}"
    if not (path / "synth_manifest.json").exists():
        cmd = [sys.executable, "-m", "trainers", "synth", "--layout", layout, "--out", str(path),
               "--actors", str(actors), "--seed", str(seed)]  # fmt: skip
        subprocess.run(cmd, check=True)
    return path


def params_of(model: str, overrides: list[str]) -> int:
    code = (
        "import sys, torch\n"
        "from trainers.config import resolve\n"
        "from trainers.registry import get_entry\n"
        "e = get_entry(sys.argv[1]); cfg = resolve(e.default_config(), assignments=sys.argv[2:])\n"
        "with torch.device('meta'):\n"
        "    m = e.build(cfg, 8)\n"
        "print(sum(p.numel() for p in m.parameters()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, model, *overrides], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actors", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="comma-separated model names")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs_dir = OUT / "runs" / stamp
    runs_dir.mkdir(parents=True)
    cache = OUT / "features"
    rows: list[dict] = []
    finished: dict[str, Path] = {}

    recipes = {**RECIPES, **{m: ("fi", o) for m, o in IMAGE_RECIPES.items()}}
    for model, (layout, overrides) in recipes.items():
        if only and model not in only:
            continue
        # FI's "actors" is the size of its smallest class: 16 gives ~290 images.
        data = corpus(layout, args.actors if layout == "ravdess" else 16, args.seed)
        sets = [*overrides, *AV_SMALL, f"data.cache_dir={cache}"]
        if layout == "fi":  # images are decoded in memory: no feature cache, no worker pool
            sets = [s for s in sets if not s.startswith(("data.prepare_workers", "data.cache_dir"))]
        cmd = [sys.executable, "-m", "trainers", "train", model, "--data", str(data),
               "--out", str(runs_dir), "--run-id", model]  # fmt: skip
        for item in sets:
            cmd += ["--set", item]
        try:
            seconds = run(cmd, runs_dir / f"{model}.log")
        except RuntimeError as exc:
            print(f"{model}: FAILED\n{exc}", file=sys.stderr)
            continue
        finished[model] = runs_dir / model
        rows.append(row(model, params_of(model, overrides), seconds, runs_dir / model))
        print_row(rows[-1])

    for fusion, members in FUSIONS.items():
        if (only and fusion not in only) or not all(m in finished for m in members):
            continue
        sources = [str(finished[m]) for m in members]
        cmd = [sys.executable, "-m", "trainers", "fuse", fusion, *sources,
               "--out", str(runs_dir), "--run-id", fusion]  # fmt: skip
        try:
            seconds = run(cmd, runs_dir / f"{fusion}.log")
        except RuntimeError as exc:
            print(f"{fusion}: FAILED\n{exc}", file=sys.stderr)
            continue
        rows.append(row(fusion, None, seconds, runs_dir / fusion))
        print_row(rows[-1])

    print()
    print(f"{'model':<26}{'params':>12}{'seconds':>9}{'test acc':>10}{'macro-F1':>10}{'chance':>8}")
    for r in rows:
        params = f"{r['params']:,}" if r["params"] is not None else "-"
        print(f"{r['model']:<26}{params:>12}{r['seconds']:>9.0f}{r['accuracy']:>10.3f}"
              f"{r['macro_f1']:>10.3f}{r['chance']:>8.3f}")  # fmt: skip
    (runs_dir / "zoo.json").write_text(json.dumps(rows, indent=2))


def row(model: str, params: int | None, seconds: float, run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    test = summary["test"]
    chance = 1.0 / len(summary["classes"])
    return {
        "model": model,
        "params": params,
        "seconds": seconds,
        "accuracy": test["accuracy"],
        "macro_f1": test["macro_f1"],
        "chance": chance,
        "test_samples": sum(map(sum, test["confusion"])),
    }


def print_row(r: dict) -> None:
    print(f"{r['model']}: acc {r['accuracy']:.3f} macro-F1 {r['macro_f1']:.3f} "
          f"({r['test_samples']} test samples, {r['seconds']:.0f}s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
