"""One loader for inference: a run directory or an exported folder -> a Bundle.

A :class:`Bundle` is everything needed to turn media files into predictions
without the training data: the model (built through the registry from the
checkpoint's own config, weights loaded, in eval mode), its classes, the
resolved config, and the checkpoint's ``inference`` dict (the preprocessing
spec and the statistics fitted on the train split, written by the data
module's ``inference_state``; see trainers.data.base).

Why the checkpoint and not run.json: the checkpoint is the file that travels
(copied alone, or exported), so it carries model name, config and classes
itself; run.json is not read.

Checkpoints are read with ``torch.load(weights_only=True)``: a file needing
arbitrary pickle (written before checkpoints became weights_only-safe) is
refused unless the caller passes ``trust_pickle=True``. A checkpoint without
``inference`` (older) still loads; :attr:`Bundle.notes` then says what must
come from the data set instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trainers.config import ConfigError, apply_saved, validate
from trainers.data.base import INFERENCE_FORMAT
from trainers.inference import folder as exported
from trainers.registry import ModelEntry, UnknownModelError, get_entry
from trainers.rundir import RUN_JSON, RunDir

CheckpointKind = Literal["best", "last"]
CHECKPOINTS: tuple[str, ...] = ("best", "last")


class BundleError(Exception):
    """The path cannot be loaded for inference; the message says why and what to do."""


@dataclass
class Bundle:
    model: Any  # torch.nn.Module, in eval mode on ``device``
    model_name: str
    classes: list[str]
    config: Any  # the resolved ExperimentConfig the model was trained with
    inference: dict[str, Any] | None  # None: an old checkpoint (see ``notes``)
    path: Path  # the run directory
    checkpoint: Path  # the file the weights came from
    entry: ModelEntry
    device: str = "cpu"
    # What the caller should tell the user (e.g. statistics that must be recomputed).
    notes: list[str] = field(default_factory=list)

    @property
    def fitted(self) -> dict[str, Any]:
        """Statistics fitted on the train split (empty for old checkpoints)."""
        return dict((self.inference or {}).get("fitted") or {})

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict((self.inference or {}).get("preprocessing") or {})


def _is_run_directory(path: Path) -> bool:
    return (path / RUN_JSON).is_file() or (path / "checkpoints").is_dir()


def _run_checkpoint(path: Path, checkpoint: CheckpointKind) -> Path:
    run = RunDir(path)
    file = run.best_ckpt if checkpoint == "best" else run.last_ckpt
    if not file.is_file():
        other = run.last_ckpt if checkpoint == "best" else run.best_ckpt
        hint = f"; {other.name} exists: pass --checkpoint {other.stem}" if other.is_file() else ""
        raise BundleError(f"{file}: no {checkpoint} checkpoint in this run{hint}")
    return file


def _exported_weights(path: Path, checkpoint: CheckpointKind) -> Path:
    # One set of weights per folder: the checkpoint it was exported from is in config.json.
    return path / exported.WEIGHTS


def _read_exported(file: Path, trust_pickle: bool = False) -> dict[str, Any]:
    """The exported folder's checkpoint-shaped dict: JSON and safetensors, no pickle."""
    try:
        return exported.read_folder(file)
    except exported.FolderError as exc:
        raise BundleError(str(exc)) from None


# Where a model can be loaded from: (what it is, does this path look like one, its
# checkpoint file, the reader of that file -> the checkpoint dict). load_bundle tries
# them in order.
SOURCES: list[
    tuple[
        str,
        Callable[[Path], bool],
        Callable[[Path, CheckpointKind], Path],
        Callable[[Path, bool], dict[str, Any]],
    ]
] = [
    ("run directory", _is_run_directory, _run_checkpoint, lambda f, t: read_checkpoint(f, t)),
    ("exported folder", exported.is_exported_folder, _exported_weights, _read_exported),
]


def read_checkpoint(file: Path, trust_pickle: bool = False) -> dict[str, Any]:
    """The checkpoint dict, read weights_only (see the module docstring)."""
    from trainers.engine.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(file, map_location="cpu", trust_pickle=trust_pickle)
    except CheckpointError as exc:
        raise BundleError(str(exc)) from None
    except (OSError, RuntimeError, EOFError) as exc:
        raise BundleError(f"{file}: cannot read the checkpoint: {exc}") from None


def _config(entry: ModelEntry, saved: dict[str, Any], file: Path) -> Any:
    cfg = entry.default_config()
    try:
        apply_saved(cfg, saved, source=str(file))
        validate(cfg)
    except ConfigError as exc:
        raise BundleError(f"{file}: its config does not fit model {entry.name!r}: {exc}") from None
    return cfg


def _check_inference(inference: Any, file: Path) -> dict[str, Any] | None:
    if inference is None:
        return None
    if not isinstance(inference, dict) or "preprocessing" not in inference:
        raise BundleError(f"{file}: 'inference' is not a preprocessing dict")
    fmt = inference.get("format")
    if not isinstance(fmt, int) or fmt > INFERENCE_FORMAT:
        raise BundleError(
            f"{file}: inference format {fmt!r} is newer than this version reads "
            f"({INFERENCE_FORMAT}): update emoconsole"
        )
    return inference


def load_bundle(
    path: str | Path,
    checkpoint: CheckpointKind = "best",
    trust_pickle: bool = False,
    device: str = "cpu",
) -> Bundle:
    """The model of the run directory ``path`` ready for inference (see the module doc)."""
    import torch

    from trainers.engine.checkpoint import CheckpointError, load_model_state

    if checkpoint not in CHECKPOINTS:
        raise BundleError(f"checkpoint {checkpoint!r}: expected one of {', '.join(CHECKPOINTS)}")
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: not a directory (expected a run directory or an export)")
    for _name, matches, checkpoint_file, reader in SOURCES:
        if matches(path):
            file = checkpoint_file(path, checkpoint)
            read = reader
            break
    else:
        raise BundleError(
            f"{path}: not a run directory (no {RUN_JSON}, no checkpoints/) nor an exported "
            f"folder (no {exported.CONFIG} with {exported.WEIGHTS})"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BundleError(f"device {device!r}: CUDA is not available on this machine")

    ckpt = read(file, trust_pickle)
    missing = [k for k in ("model", "model_name", "config", "classes") if k not in ckpt]
    if missing:
        raise BundleError(f"{file}: not a training checkpoint (no {', '.join(missing)})")
    try:
        entry = get_entry(ckpt["model_name"])
    except UnknownModelError as exc:
        raise BundleError(f"{file}: {exc}") from None
    cfg = _config(entry, ckpt["config"], file)
    classes = [str(c) for c in ckpt["classes"]]
    model = entry.build(cfg, len(classes))
    try:
        load_model_state(model, ckpt["model"], file)
    except CheckpointError as exc:
        raise BundleError(str(exc)) from None
    model = model.to(device).eval()

    inference = _check_inference(ckpt.get("inference"), file)
    notes = []
    if inference is None:
        notes.append(
            f"{file} has no inference state (written by an older version): the "
            "preprocessing comes from its config alone, and the statistics fitted on the "
            "train split (the audio normalisation) must be recomputed from the training "
            "data (--data)"
        )
    return Bundle(
        model=model,
        model_name=entry.name,
        classes=classes,
        config=cfg,
        inference=inference,
        path=path,
        checkpoint=file,
        entry=entry,
        device=device,
        notes=notes,
    )
