"""Training throughput of the SlowFast models in clips/s: fp32, AMP, and AMP with
channels_last_3d, measured in the same run on the same random clips.

AMP is what the engine itself uses (``trainers.engine.trainer.amp_dtype``: bf16 where
the GPU has it, else fp16 with a GradScaler); each mode runs ``--warmup`` steps, then
``--steps`` timed steps of forward, loss, backward and AdamW, synchronised on CUDA.
Ratios are against fp32 of the same run. On a machine without CUDA it measures fp32
only (AMP is off on the CPU by design) so the script itself is checked anywhere:

    uv run python bench/video_amp.py                       # on a GPU: the models' defaults
    uv run python bench/video_amp.py --steps 3 --set model.depth=18 --set model.width=16 \\
        --set data.face_size=64 --set data.clip_frames=16   # a CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from trainers.config import resolve
from trainers.engine.trainer import amp_dtype
from trainers.registry import get_entry


def clips(cfg, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    frames, size = cfg.data.clip_frames, cfg.data.face_size
    return {
        "video": torch.rand(batch, frames, 3, size, size, device=device),
        "video_mask": torch.ones(batch, frames, dtype=torch.bool, device=device),
        "label": torch.arange(batch, device=device) % 7,
    }


def measure(name: str, sets: list[str], mode: str, steps: int, warmup: int) -> float:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    entry = get_entry(name)
    cfg = resolve(entry.default_config(), assignments=sets)
    torch.manual_seed(0)
    model = entry.build(cfg, 7).to(device).train()
    for p in model.parameters():  # progressive unfreezing starts frozen: time the full model
        p.requires_grad_(True)
    batch = clips(cfg, cfg.train.batch_size, device)
    dtype = amp_dtype(cfg.train.amp, device) if mode != "fp32" else None
    if mode == "amp+channels_last_3d":
        model = model.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    def step() -> None:
        ctx = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with ctx:
            loss = torch.nn.functional.cross_entropy(model(batch), batch["label"])
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.train.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="slowfast-r50,meld-slowfast")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    modes = ["fp32", "amp", "amp+channels_last_3d"] if cuda else ["fp32"]
    where = torch.cuda.get_device_name() if cuda else "CPU (no CUDA: fp32 only)"
    print(f"{where}; {args.steps} timed steps after {args.warmup} warm-up steps")
    for name in args.models.split(","):
        base = None
        for mode in modes:
            rate = measure(name, args.sets, mode, args.steps, args.warmup)
            base = base or rate
            print(f"  {name:<14} {mode:<22} {rate:8.1f} clips/s  x{rate / base:.2f} of fp32")


if __name__ == "__main__":
    main()
