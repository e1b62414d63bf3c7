"""The exported folder: a model outside its run, in a Hugging Face model repository's layout.

``python -m trainers export`` writes it (trainers.inference.export); ``load_bundle``
reads it as a second source beside the run directory. It holds::

    model.safetensors   the weights: tensors only, no pickle (safetensors format)
    config.json         model name and config, classes, the checkpoint's inference dict
                        (preprocessing spec and fitted statistics), format version, run id
    README.md           the model card (trainers.inference.card)
    model.onnx          with --format onnx
    model.pt            with --format torchscript

Reading it never unpickles anything: the weights come from safetensors and the rest
from JSON, so an exported folder is safe to open whoever made it. This module is the
format's one reader and writer of those two files; it imports neither the loader nor
the exporter, which both import it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
ONNX = "model.onnx"
TORCHSCRIPT = "model.pt"

# config.json's "format"/"format_version": readers refuse other formats and newer versions.
FORMAT = "emoconsole-export"
FORMAT_VERSION = 1


class FolderError(Exception):
    """An exported folder that cannot be read; the message names the file and why."""


def is_exported_folder(path: Path) -> bool:
    return (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename: never half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_weights(state: dict[str, Any], path: Path, metadata: dict[str, str] | None = None) -> None:
    """A state dict as safetensors. Each tensor is copied contiguous and on its own:
    safetensors refuses tensors sharing storage (tied weights, views), and
    ``load_state_dict`` does not need the sharing back."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", **(metadata or {})})
    _sort_header(tmp)
    os.replace(tmp, path)


def _sort_header(path: Path) -> None:
    """Rewrite the safetensors header with its keys sorted, in place. safetensors writes
    the metadata map in hash order, which changes from process to process: two exports
    of the same weights then differ byte for byte, and the Hub would store the weights
    again on every push (trainers.inference.push). The sorted header is the same JSON
    of the same length (a reordering), so the data after it does not move."""
    with open(path, "r+b") as fh:
        size = int.from_bytes(fh.read(8), "little")
        raw = fh.read(size)
        header = json.loads(raw)
        meta = header.pop("__metadata__", None)
        ordered = {"__metadata__": dict(sorted(meta.items()))} if meta else {}
        ordered.update(sorted(header.items()))
        text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:  # not a reordering after all: leave the file as written
            return
        fh.seek(8)
        fh.write(text.ljust(size, b" "))  # safetensors pads its header with spaces


def load_weights(path: Path) -> dict[str, Any]:
    """The state dict :func:`save_weights` wrote (tensors on the CPU)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise FolderError(f"{path}: cannot read the weights: {exc}") from None


def write_config(folder: Path, config: dict[str, Any]) -> None:
    text = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **config}, indent=2)
    write_atomic(folder / CONFIG, (text + "\n").encode())


def read_config(folder: Path) -> dict[str, Any]:
    """config.json, checked for the format, its version and the keys a loader needs."""
    file = folder / CONFIG
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise FolderError(f"{file}: cannot read it: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise FolderError(f'{file}: not an emoconsole export (no "format": "{FORMAT}")')
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise FolderError(
            f"{file}: export format version {version!r} is newer than this version reads "
            f"({FORMAT_VERSION}): update emoconsole"
        )
    missing = [k for k in ("model_name", "config", "classes") if k not in config]
    if missing:
        raise FolderError(f"{file}: incomplete export (no {', '.join(missing)})")
    return config


def read_folder(weights: Path) -> dict[str, Any]:
    """The folder holding ``weights`` as the checkpoint-shaped dict ``load_bundle`` reads:
    ``model`` (the state dict), ``model_name``, ``config``, ``classes``, ``inference``."""
    config = read_config(weights.parent)
    return {
        "model": load_weights(weights),
        "model_name": config["model_name"],
        "config": config["config"],
        "classes": config["classes"],
        "inference": config.get("inference"),
    }
