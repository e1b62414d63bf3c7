"""Checkpoints: one dict with everything needed to continue, written atomically.

A checkpoint is written to a temporary file in the same directory and renamed
over the old one, so a kill at any moment leaves either the old or the new
file, never half of one. RNG states of python, numpy, torch and CUDA travel
with it so a resumed run draws the same dropout masks as an uninterrupted one.

Everything in a checkpoint is a tensor or a plain Python value (dict, list,
tuple, str, number, None), so ``torch.load(weights_only=True)`` reads it: a
checkpoint can be opened for inference without trusting arbitrary pickle.
numpy's RNG state is the one object that is not: it is stored as a dict with
its key array as a tensor (:func:`rng_state`) and turned back on resume.
Checkpoints written before that hold numpy's tuple with an ndarray; they load
only with ``trust_pickle=True``.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    pass


def numpy_rng_state() -> dict[str, Any]:
    """numpy's legacy RNG state as plain values and a tensor (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "kind": str(kind),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),  # uint32 values
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def set_numpy_rng_state(state: Any) -> None:
    """Inverse of :func:`numpy_rng_state`; also takes numpy's own tuple (old checkpoints)."""
    if isinstance(state, dict):
        keys = state["keys"]
        keys = np.asarray(keys.numpy() if torch.is_tensor(keys) else keys)
        state = (
            state["kind"],
            keys.astype(np.uint32),
            state["pos"],
            state["has_gauss"],
            state["cached_gaussian"],
        )
    np.random.set_state(state)


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": numpy_rng_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    set_numpy_rng_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format_version": FORMAT_VERSION, **payload}, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(
    path: Path, map_location: str | torch.device = "cpu", trust_pickle: bool = False
) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a file that needs arbitrary pickle
    (one written before checkpoints became weights_only-safe) is refused unless
    ``trust_pickle``. Resume passes True: it reads the run's own files."""
    if not path.exists():
        raise CheckpointError(f"{path}: no checkpoint (the run saved none before it ended?)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's message: a page with ANSI codes
        if not trust_pickle:
            raise CheckpointError(
                f"{path}: holds pickled objects besides tensors and plain values (a "
                "checkpoint written by an older version?); loading it runs arbitrary code, "
                "so it is refused: pass trust_pickle=True (--trust-pickle) if you trust "
                "the file"
            ) from exc
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(ckpt).__name__}, not a dict)")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {ckpt.get('format_version')} != {FORMAT_VERSION}"
        )
    return ckpt


def load_model_state(model: torch.nn.Module, state: dict[str, Any], source: Path) -> None:
    """Strict load that says what disagrees instead of torch's wall of text."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append("shape mismatch: " + "; ".join(shapes[:3]))
        raise CheckpointError(f"{source}: does not fit the model: " + " | ".join(parts))
    model.load_state_dict(state)
