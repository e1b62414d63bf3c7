"""Engine overhead: time per optimizer step of the engine against a bare PyTorch
loop on the same model, batches, loss and optimizer.

The engine's step time is read from its own events (epoch_start to the last
step event of each epoch, so event writing, TensorBoard and timing are
included); validation is excluded from both. The bare loop runs before and
after the engine and the faster of the two is the baseline (machine drift
over a run only ever flatters the engine otherwise). Target: ratio <= 1.05.

A second engine row runs with the trackers on (W&B offline, MLflow on a local
file store): target ratio <= 1.10 (W&B once halved one user's it/s). Leave it
out with --no-trackers, or when wandb/mlflow are not installed.

    uv run python bench/engine_overhead.py [--epochs 4] [--n 240] [--no-trackers]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from trainers.config import resolve
from trainers.data.tensors import TensorDataModule
from trainers.engine.losses import build_loss, class_weights
from trainers.engine.optim import build_optimizer
from trainers.engine.trainer import Trainer, epoch_batches, new_manifest, seed_everything
from trainers.events import read_events
from trainers.registry import ModelEntry, get_entry
from trainers.rundir import RunDir


def bare_loop(entry: ModelEntry, cfg, data: TensorDataModule, epochs: int) -> float:
    """Seconds per optimizer step of the textbook loop."""
    seed_everything(cfg.train.seed)
    model = entry.build(cfg, len(data.classes))
    model.train()
    weight = class_weights(data.labels("train"), len(data.classes), cfg.train.class_weights)
    criterion = build_loss(cfg.train.loss, weight, gamma=cfg.train.focal_gamma)
    optimizer = build_optimizer(model.parameters(), cfg.train)
    train = data.dataset("train")
    per_epoch = []
    for epoch in range(1, epochs + 1):
        batches = epoch_batches(len(train), cfg.train.batch_size, cfg.train.seed, epoch, True)
        loader = torch.utils.data.DataLoader(train, batch_sampler=batches, collate_fn=data.collate)
        t0 = time.perf_counter()
        for batch in loader:
            loss = criterion(model(batch), batch["label"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        per_epoch.append((time.perf_counter() - t0) / len(batches))
    print("  per-epoch ms/step:", [round(x * 1000, 1) for x in per_epoch], file=sys.stderr)
    return min(per_epoch[1:]) if len(per_epoch) > 1 else per_epoch[0]


def engine_loop(
    entry: ModelEntry, cfg, data: TensorDataModule, epochs: int, trackers: bool = False
) -> float:
    """Seconds per optimizer step of the engine; ``trackers``: with W&B (offline) and
    MLflow (a ``file:`` store) logging every step, both inside the temporary run."""
    bench_entry = ModelEntry(
        entry.name, entry.description, entry.config, entry.build, lambda c: data
    )
    cfg.train.epochs = epochs
    cfg.train.patience = epochs + 1
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "run").create()
        cfg.track.wandb = trackers
        cfg.track.wandb_mode = "offline"
        cfg.track.mlflow_uri = f"file:{Path(tmp) / 'mlruns'}" if trackers else ""
        run.write_manifest(new_manifest(run, bench_entry, cfg, sys.argv))
        Trainer(bench_entry, cfg, run).fit()
        events = read_events(run.events)
    per_epoch = []
    for epoch in range(1, epochs + 1):
        start = next(e for e in events if e["type"] == "epoch_start" and e["epoch"] == epoch)
        steps = [e for e in events if e["type"] == "step" and e["epoch"] == epoch]
        per_epoch.append((steps[-1]["time"] - start["time"]) / len(steps))
    print("  per-epoch ms/step:", [round(x * 1000, 1) for x in per_epoch], file=sys.stderr)
    return min(per_epoch[1:]) if len(per_epoch) > 1 else per_epoch[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--n", type=int, default=240, help="training samples per epoch")
    parser.add_argument("--model", default="hybrid-attention")
    parser.add_argument("--no-trackers", action="store_true", help="skip the W&B+MLflow row")
    args = parser.parse_args()
    trackers = not args.no_trackers and all(
        importlib.util.find_spec(name) is not None for name in ("wandb", "mlflow")
    )
    if trackers:
        # MLflow 3 refuses its file store without this; W&B stays off the network.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        os.environ.setdefault("WANDB_SILENT", "true")
    entry = get_entry(args.model)
    cfg = resolve(entry.default_config(), assignments=["train.scheduler=none", "train.log_every=1"])
    data = TensorDataModule(n=args.n)
    before = bare_loop(entry, cfg, data, args.epochs)
    engine = engine_loop(entry, cfg, data, args.epochs)
    tracked = engine_loop(entry, cfg, data, args.epochs, trackers=True) if trackers else None
    after = bare_loop(entry, cfg, data, args.epochs)
    bare = min(before, after)  # the faster baseline: a conservative ratio for the engine
    print(
        f"model {args.model}, batch {cfg.train.batch_size}, {args.n // cfg.train.batch_size} "
        f"steps/epoch, {args.epochs} epochs, torch threads {torch.get_num_threads()}"
    )
    print(f"bare loop : {before * 1000:.1f} / {after * 1000:.1f} ms per step (before/after)")
    print(f"engine    : {engine * 1000:.1f} ms per step")
    print(f"ratio     : {engine / bare:.3f}  (target <= 1.05)")
    if tracked is not None:
        print(f"engine+W&B offline+MLflow file store: {tracked * 1000:.1f} ms per step")
        print(f"ratio     : {tracked / bare:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
