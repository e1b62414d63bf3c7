"""``python -m trainers export``: a run's model as a Hugging Face-layout folder.

:func:`export_model` loads the model with :func:`~trainers.inference.bundle.load_bundle`
(so the same checks apply: weights_only checkpoints, ``--trust-pickle`` for old ones)
and writes the folder that :mod:`trainers.inference.folder` describes: the weights as
safetensors, config.json, the model card (:mod:`trainers.inference.card`) and the
run's summary.json; with ``onnx`` also ``model.onnx``, with ``torchscript`` ``model.pt``.
The folder loads back through ``load_bundle`` (``predict FOLDER ...``) without the run.

The model's inputs are the tensors its data module's collate puts in a batch, less
the bookkeeping keys (``label``, ``index``, ``sample``): ``audio``/``audio_mask``
``(B, Ta, F)``/``(B, Ta)`` and ``video``/``video_mask`` ``(B, Tv, C, S, S)``/``(B, Tv)``
for audio-visual models, ``video``/``video_mask`` clips for the video models,
``image`` ``(B, 3, S, S)`` for image models (see trainers.data.base). They are found by
collating made-up inputs with the predict pipeline's own collate, never listed per
model, so a new model needs no change here.

ONNX goes through torch.export (``torch.onnx.export(dynamo=True)``, which needs
onnxscript): the older TorchScript-based exporter froze nn.MultiheadAttention's
reshapes to the traced lengths (a second length failed in onnxruntime). Batch and time
axes are dynamic. Every ONNX file is checked with onnxruntime against PyTorch on two
batches of different lengths (image models: different batch sizes) before the export
is reported done.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from trainers.config import to_dict
from trainers.inference import card
from trainers.inference import folder as layout
from trainers.inference.bundle import Bundle, CheckpointKind, load_bundle
from trainers.rundir import RunDir

ExportFormat = Literal["safetensors", "onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("safetensors", "onnx", "torchscript")
# Batch keys that are bookkeeping, not model inputs (see trainers.data.base).
NOT_INPUTS = frozenset({"label", "index", "sample"})
ONNX_OPSET = 18
# The largest |onnxruntime - PyTorch| difference in logits an export may show.
TOLERANCE = 1e-4


class ExportError(Exception):
    """The export cannot be done (as asked); the message names the model and why.
    ``complete`` is set when the safetensors export was written before the failure."""

    complete: bool = False


@dataclass
class ExportResult:
    out: Path
    files: list[Path] = field(default_factory=list)
    # Format -> largest |difference| of its logits from PyTorch's over the check batches.
    checked: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------ inputs


def _av_items(
    bundle: Bundle,
    rng: np.random.Generator,
    audio: int,
    frames: int,
    shrink: tuple[float, ...] = (1.0, 0.7),
) -> list:
    """Decoded recordings as the audio-visual data module stores them, one per ``shrink``
    (its lengths' share of ``audio`` and ``frames``: the batch has padding and masks)."""
    cfg = bundle.config
    items = []
    for shrink_by in shrink:
        item: dict[str, Any] = {"index": 0, "label": 0}
        if "audio" in cfg.data.modalities:
            n = max(2, int(audio * shrink_by))
            item["audio"] = rng.standard_normal((n, cfg.data.audio_dim)).astype(np.float32)
        if "video" in cfg.data.modalities:
            n = max(2, int(frames * shrink_by))
            if getattr(cfg.model, "video_input", "frames") == "embeddings":
                dim = cfg.model.embedding_dim
                item["video"] = rng.standard_normal((n, dim)).astype(np.float32)
            else:
                size, channels = cfg.data.face_size, cfg.data.video_channels
                item["video"] = rng.integers(0, 256, (n, channels, size, size), dtype=np.uint8)
        items.append(item)
    return items


def example_batches(bundle: Bundle, seed: int = 0) -> list[dict[str, Any]]:
    """Two model-input batches of different lengths (image models: batch sizes), made
    up but shaped by the model's own collate; the first is the one export traces."""
    import torch

    from trainers.inference.predict import pipeline_of

    kind, pipeline = pipeline_of(bundle)
    rng = np.random.default_rng(seed)
    data = bundle.config.data
    batches = []
    if kind == "audio-visual":
        max_audio = getattr(data, "max_audio_frames", 0) or 400
        max_frames = getattr(data, "max_frames", 0) or 48
        for audio, frames in ((max_audio // 4, max_frames // 3), (max_audio // 2, max_frames // 2)):
            batches.append(pipeline.collate(_av_items(bundle, rng, audio, frames)))
    elif kind == "video-clips":
        from trainers.data.clips import ClipEvalSet

        # Clips are always clip_frames long (shorter videos padded, the mask saying so), so
        # the two batches differ in size and real lengths, not in T.
        clip = clip_frames(bundle)
        for shrink in ((1.0, 0.7), (0.9, 0.6, 0.3)):
            items = _av_items(bundle, rng, 2, clip, shrink)
            views = ClipEvalSet(items, clip, 1)
            batches.append(pipeline.collate([views[i] for i in range(len(views))]))
    elif kind == "image":
        size = int(bundle.preprocessing.get("image_size") or data.image_size)
        for n in (2, 3):
            items = [
                {"image": torch.from_numpy(rng.standard_normal((3, size, size), np.float32)),
                 "label": 0, "index": i}
                for i in range(n)
            ]  # fmt: skip
            batches.append(pipeline.collate(items))
    else:  # pipeline_of knows no other kind
        raise ExportError(f"model {bundle.model_name!r}: no example inputs for kind {kind!r}")
    return [{k: v for k, v in b.items() if k not in NOT_INPUTS} for b in batches]


def clip_frames(bundle: Bundle) -> int:
    clips = bundle.preprocessing.get("clips") or {}
    return int(clips.get("frames") or bundle.config.data.clip_frames)


def input_spec(batch: dict[str, Any], time_axis: bool = True) -> dict[str, dict[str, Any]]:
    """Each input's dtype and shape with its dynamic axes named (config.json, the card):
    the batch, and with ``time_axis`` the time of every sequence input."""
    spec = {}
    for name, value in batch.items():
        shape: list[Any] = list(value.shape)
        shape[0] = "batch"
        if time_axis and name != "image" and len(shape) > 1:
            shape[1] = f"{name.removesuffix('_mask')}_time"
        spec[name] = {"dtype": str(value.dtype).removeprefix("torch."), "shape": shape}
    return spec


# ------------------------------------------------------------------------------ formats


def has_time_axis(bundle: Bundle) -> bool:
    """Whether the inputs' time axis varies: not for clip models, whose clips are
    always ``clip_frames`` long (and SlowFast's masks are looked up by that length)."""
    return bundle.preprocessing.get("kind") != "video-clips"


def _positional(bundle: Bundle, names: list[str]) -> Any:
    """The model as a module of positional tensors: exporters take tensors, not a dict."""
    from torch import nn

    class Positional(nn.Module):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return self.model(dict(zip(names, inputs, strict=True)))

    return Positional(bundle.model).eval()


def _reference(bundle: Bundle, batch: dict[str, Any]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return bundle.model(batch).float().numpy()


def _first_line(exc: BaseException) -> str:
    """The first line of the root cause: torch.onnx wraps torch.export's error in a
    generic 'Failed to export the model' message."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    return f"{type(exc).__name__}: {text[:300]}"


def export_onnx(bundle: Bundle, path: Path, batches: list[dict[str, Any]]) -> float:
    """Write ``path`` (ONNX, dynamic batch and time axes) and check it with onnxruntime
    on every batch; the largest |difference| from PyTorch's logits."""
    try:
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter needs it)
        import torch
    except ImportError as exc:
        raise ExportError(
            f"--format onnx needs onnx, onnxscript and onnxruntime ({exc.name} is missing): "
            "install the export extra (pip install 'emoconsole[export]')"
        ) from None

    names = list(batches[0])
    spec = input_spec(batches[0], has_time_axis(bundle))
    # Dim.AUTO, not named Dims: torch.export then derives each axis's bounds itself (the
    # audio models need a few frames); an axis it had to fix is caught below by name.
    dynamic = [
        {
            axis: torch.export.Dim.AUTO
            for axis, d in enumerate(spec[n]["shape"])
            if isinstance(d, str)
        }
        for n in names
    ]
    model = _positional(bundle, names)
    chatter = io.StringIO()  # the exporter prints its progress; kept for the error message
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with (
            contextlib.redirect_stdout(chatter),
            _quiet_logger("onnxscript"),
            warnings.catch_warnings(),
            torch.no_grad(),
        ):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                tuple(batches[0][n] for n in names),
                str(tmp),
                input_names=names,
                output_names=["logits"],
                dynamic_shapes=(tuple(dynamic),),
                opset_version=ONNX_OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(
            f"model {bundle.model_name!r} cannot be exported to ONNX: torch.export failed "
            f"on its forward ({_first_line(exc)})"
        ) from exc
    try:
        _name_axes(tmp, spec, bundle.model_name)
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        worst = 0.0
        for batch in batches:
            feeds = {n: batch[n].numpy() for n in names}
            (got,) = session.run(["logits"], feeds)
            want = _reference(bundle, batch)
            if got.shape != want.shape:
                raise ExportError(
                    f"model {bundle.model_name!r}: ONNX gives logits {got.shape}, PyTorch "
                    f"{want.shape} on inputs {_shapes(batch)}"
                )
            worst = max(worst, float(np.abs(got - want).max()))
        if worst > TOLERANCE:
            raise ExportError(
                f"model {bundle.model_name!r}: ONNX logits differ from PyTorch's by {worst:.2e} "
                f"(> {TOLERANCE:g}); the export is not faithful"
            )
    except ExportError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:  # onnxruntime failing on a second length: a frozen shape
        tmp.unlink(missing_ok=True)
        raise ExportError(
            f"model {bundle.model_name!r}: the exported ONNX graph does not run on other "
            f"input lengths in onnxruntime ({_first_line(exc)})"
        ) from exc
    tmp.replace(path)
    return worst


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Silence a library's info messages (onnxscript's optimizer logs every skipped op)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _name_axes(path: Path, spec: dict[str, Any], model_name: str) -> None:
    """Give the graph's dynamic axes the names of :func:`input_spec` (torch.export calls
    them s0, s1, ...) and refuse an axis it fixed to the traced size."""
    import onnx

    graph = onnx.load(str(path))
    names: dict[str, str] = {}
    for value in graph.graph.input:
        labels = spec[value.name]["shape"]
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            label = labels[axis]
            if not isinstance(label, str):
                continue
            if not dim.dim_param:
                raise ExportError(
                    f"model {model_name!r} cannot be exported to ONNX with a variable "
                    f"{label}: torch.export fixed axis {axis} of input {value.name!r} to "
                    f"{dim.dim_value}"
                )
            names.setdefault(dim.dim_param, label)
    for value in [*graph.graph.input, *graph.graph.output, *graph.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]
    onnx.save(graph, str(path))


def _shapes(batch: dict[str, Any]) -> str:
    return ", ".join(f"{k} {tuple(v.shape)}" for k, v in batch.items())


def export_torchscript(bundle: Bundle, path: Path, batches: list[dict[str, Any]]) -> float:
    """Write ``path`` with torch.jit.trace and check it on every batch (largest diff)."""
    import torch

    names = list(batches[0])
    model = _positional(bundle, names)
    reason = ""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, tuple(batches[0][n] for n in names), check_trace=False)
            worst = 0.0
            for batch in batches:
                got = traced(*(batch[n] for n in names)).float().numpy()
                worst = max(worst, float(np.abs(got - _reference(bundle, batch)).max()))
        if worst > TOLERANCE:
            reason = f"the traced model's logits differ by {worst:.2e} on another input length"
    except Exception as exc:
        reason = f"tracing fails: {_first_line(exc)}"
    if reason:
        raise ExportError(
            f"--format torchscript is not supported for model {bundle.model_name!r} "
            f"({reason}); use --format onnx or the safetensors weights"
        )
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
        torch.jit.save(traced, str(tmp))
    tmp.replace(path)
    return worst


# ------------------------------------------------------------------------------ config


def _summary(source: Path) -> dict[str, Any] | None:
    """The run's summary.json (or the copy an exported folder carries)."""
    file = RunDir(source).summary
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return None


def _metrics(summary: dict[str, Any] | None) -> dict[str, Any]:
    if not summary:
        return {}
    keep = ("accuracy", "macro_f1", "weighted_f1", "uar", "loss")
    out: dict[str, Any] = {}
    for split in ("test", "val"):
        if isinstance(summary.get(split), dict):
            out[split] = {k: summary[split][k] for k in keep if k in summary[split]}
    if isinstance(summary.get("majority_floor"), dict):
        out["majority_floor"] = dict(summary["majority_floor"])
    return out


def _source_checkpoint(bundle: Bundle, kind: CheckpointKind, summary: dict | None) -> dict:
    previous = _previous_config(bundle)
    if previous is not None:  # re-exported from a folder: where its weights came from
        return dict(previous.get("checkpoint") or {})
    epoch = None
    if summary:
        epoch = summary.get("best_epoch") if kind == "best" else summary.get("epochs_run")
    return {"kind": kind, "file": f"checkpoints/{bundle.checkpoint.name}", "epoch": epoch}


def _previous_config(bundle: Bundle) -> dict[str, Any] | None:
    if bundle.checkpoint.name != layout.WEIGHTS:
        return None
    try:
        return layout.read_config(bundle.path)
    except layout.FolderError:
        return None


def _run_id(bundle: Bundle, summary: dict[str, Any] | None) -> str:
    previous = _previous_config(bundle)
    if previous is not None and previous.get("run_id"):
        return str(previous["run_id"])
    if summary and summary.get("run_id"):
        return str(summary["run_id"])
    return bundle.path.name


def build_config(
    bundle: Bundle,
    checkpoint: CheckpointKind,
    summary: dict[str, Any] | None,
    inputs: dict[str, Any],
) -> dict[str, Any]:
    """config.json's content (less the format keys :func:`folder.write_config` adds)."""
    import torch

    from trainers import __version__

    classes = list(bundle.classes)
    return {
        "library_name": "emoconsole",
        "model_type": bundle.model_name,
        "architectures": [type(bundle.model).__name__],
        "model_name": bundle.model_name,
        "run_id": _run_id(bundle, summary),
        "checkpoint": _source_checkpoint(bundle, checkpoint, summary),
        "classes": classes,
        "num_labels": len(classes),
        "id2label": {str(i): c for i, c in enumerate(classes)},
        "label2id": {c: i for i, c in enumerate(classes)},
        "inputs": inputs,
        "outputs": {"logits": {"dtype": "float32", "shape": ["batch", len(classes)]}},
        "config": to_dict(bundle.config),
        "inference": bundle.inference,
        "metrics": _metrics(summary),
        "files": {"weights": layout.WEIGHTS},
        "versions": {"emoconsole": __version__, "torch": torch.__version__},
    }


# ------------------------------------------------------------------------------ export


def _prepare_out(out: Path, source: Path) -> None:
    if out.resolve() == source.resolve():
        raise ExportError(f"--out {out}: is the source itself; choose another folder")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / layout.CONFIG).is_file():
        raise ExportError(
            f"--out {out}: not empty and not an earlier export (no {layout.CONFIG}); "
            "choose a new or empty folder"
        )
    out.mkdir(parents=True, exist_ok=True)


def export_model(
    source: str | Path,
    out: str | Path,
    fmt: ExportFormat = "safetensors",
    checkpoint: CheckpointKind = "best",
    trust_pickle: bool = False,
) -> ExportResult:
    """Export the model of ``source`` (a run directory or an exported folder) to ``out``.

    The safetensors weights, config.json, README.md (and summary.json when the run has
    one) are always written first; ``onnx`` and ``torchscript`` then add their file. When
    that second step fails, :class:`ExportError` says why and the folder still holds a
    complete safetensors export."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    source, out = Path(source), Path(out)
    bundle = load_bundle(source, checkpoint, trust_pickle)
    for note in bundle.notes:
        if "no inference state" in note:
            raise ExportError(
                f"{bundle.checkpoint}: no inference state (written by an older version): an "
                "export without its preprocessing and fitted statistics could not predict; "
                "re-run `resume` or train again with this version"
            )
    _prepare_out(out, source)
    summary = _summary(source)
    batches = example_batches(bundle)
    config = build_config(
        bundle, checkpoint, summary, input_spec(batches[0], has_time_axis(bundle))
    )
    result = ExportResult(out)

    # A stale file of another format would contradict config.json.
    for stale in (layout.ONNX, layout.TORCHSCRIPT):
        (out / stale).unlink(missing_ok=True)
    weights = out / layout.WEIGHTS
    layout.save_weights(bundle.model.state_dict(), weights, {"model_name": bundle.model_name})
    result.files.append(weights)
    if summary is not None and source / "summary.json" != out / "summary.json":
        layout.write_atomic(out / "summary.json", (json.dumps(summary, indent=1) + "\n").encode())
        result.files.append(out / "summary.json")
    _write_text(out, config, summary, result)

    try:
        _export_format(bundle, fmt, out, batches, config, result)
    except ExportError as exc:
        exc.complete = True
        raise
    if fmt != "safetensors":
        result.files = [f for f in result.files if f.name not in (layout.CONFIG, layout.CARD)]
        _write_text(out, config, summary, result)
    return result


def _export_format(
    bundle: Bundle,
    fmt: str,
    out: Path,
    batches: list[dict[str, Any]],
    config: dict[str, Any],
    result: ExportResult,
) -> None:
    """The ONNX or TorchScript file beside the weights, recorded in ``config``."""
    if fmt == "onnx":
        path = out / layout.ONNX
        result.checked["onnx"] = export_onnx(bundle, path, batches)
        config["files"]["onnx"] = layout.ONNX
        config["onnx"] = {
            "opset": ONNX_OPSET,
            "inputs": list(config["inputs"]),
            "outputs": ["logits"],
            "checked": {
                "runtime": "onnxruntime (CPU)",
                "inputs": [_shapes(b) for b in batches],
                "max_abs_diff": result.checked["onnx"],
                "tolerance": TOLERANCE,
            },
        }
        result.files.append(path)
    elif fmt == "torchscript":
        path = out / layout.TORCHSCRIPT
        result.checked["torchscript"] = export_torchscript(bundle, path, batches)
        config["files"]["torchscript"] = layout.TORCHSCRIPT
        result.files.append(path)


def _write_text(out: Path, config: dict, summary: dict | None, result: ExportResult) -> None:
    layout.write_config(out, config)
    text = card.render(config, summary, card.generated_corpus(summary))
    layout.write_atomic(out / layout.CARD, text.encode())
    result.files += [out / layout.CONFIG, out / layout.CARD]
