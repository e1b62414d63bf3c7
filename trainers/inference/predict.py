"""Predictions for media files, with the run's own preprocessing and nothing else.

Given a :class:`~trainers.inference.bundle.Bundle`, :func:`predict_inputs`
turns files into probabilities exactly as the run's final evaluation turned
its test files into ``predictions.jsonl``:

* the same decoding: audio-visual recordings go through
  :func:`trainers.data.ravdess.prepare_recording` (face crops, audio
  features, and its source fallback: video from the first working video
  file, audio from the first working audio file, else the video's track),
  with no feature cache; images through :func:`trainers.data.images.decode_image`;
* the statistics fitted on the train split, from the checkpoint
  (``inference["fitted"]``), never from a data set;
* the evaluation views (several clips of a video, the TTA views of an image)
  built by the data modules' own eval sets, their probabilities averaged as
  ``Trainer._predict`` averages rows sharing ``"sample"``.

How inputs are grouped (:func:`collect_inputs`): files named the RAVDESS way
(``MM-VV-EE-II-SS-RR-AA``) are one recording per take, as the RAVDESS loader
groups them (:func:`trainers.data.ravdess.group_recordings`); other files are
one recording per folder and file stem, so ``clip.mp4`` with ``clip.wav``
is one input whose audio comes from the wav, and ``clip.mp4`` alone takes
its audio from its own track. Image models read image files.

Which pipeline applies is the checkpoint's ``preprocessing.kind``; a new kind
is one more entry in :data:`PIPELINES`.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainers.data.base import BadInputReporter, ProgressReporter
from trainers.inference.bundle import Bundle, BundleError
from trainers.inference.table import Prediction, table_line

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".flv"})
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".m4a", ".mp3"})


class InputError(Exception):
    """One input cannot be predicted (unreadable, a needed modality missing)."""


@dataclass(frozen=True)
class MediaInput:
    """One thing to predict: a recording (video and/or audio candidates) or an image."""

    name: str  # how the output names it: its first file
    key: str  # the recording key (RAVDESS) or "<folder>/<stem>"
    video: tuple[str, ...] = ()  # candidate sources, best first
    audio: tuple[str, ...] = ()
    image: str | None = None


# ------------------------------------------------------------------------------ inputs


def _files(paths: Iterable[str | Path], suffixes: frozenset[str], missing: list[str]) -> list[str]:
    from trainers.data.ravdess import walk_media

    out: list[str] = []
    for raw in paths:
        path = str(raw)
        if os.path.isdir(path):
            out += walk_media(path, suffixes)
        elif os.path.exists(path):
            out.append(path)
        else:
            missing.append(path)
    return list(dict.fromkeys(out))


def collect_inputs(
    paths: Iterable[str | Path], kind: str
) -> tuple[list[MediaInput], list[Prediction]]:
    """The inputs under ``paths`` (files and folders) for a model of ``kind``, and an
    error row for each path that does not exist (see the module docstring)."""
    missing: list[str] = []
    if kind == "image":
        from trainers.data.images import IMAGE_EXTENSIONS

        files = _files(paths, frozenset(IMAGE_EXTENSIONS), missing)
        inputs = [
            MediaInput(name=f, key=f"{Path(f).parent.name}/{Path(f).stem}", image=f) for f in files
        ]
    else:
        files = _files(paths, VIDEO_SUFFIXES | AUDIO_SUFFIXES, missing)
        inputs = _recordings(files)
    errors = [Prediction(p, Path(p).stem, error="no such file or directory") for p in missing]
    return inputs, errors


def _recordings(files: Sequence[str]) -> list[MediaInput]:
    from trainers.data.ravdess import SONG, SPEECH, group_recordings, parse_name

    named, other = [], []
    for path in files:
        try:
            parse_name(os.path.basename(path))
            named.append(path)
        except ValueError:
            other.append(path)
    out: list[MediaInput] = []
    for rec in group_recordings(named, lambda path, reason: None, vocal_channels=(SPEECH, SONG)):
        out.append(
            MediaInput(
                name=rec.files[0], key=rec.key, video=rec.video_sources, audio=rec.audio_sources
            )
        )
    stems: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in other:
        stems[(os.path.dirname(path), Path(path).stem)].append(path)
    for (folder, stem), group in stems.items():
        videos = tuple(sorted(p for p in group if Path(p).suffix.lower() in VIDEO_SUFFIXES))
        audios = tuple(sorted(p for p in group if Path(p).suffix.lower() in AUDIO_SUFFIXES))
        out.append(
            MediaInput(
                name=(videos or audios)[0],
                key=f"{Path(folder).name}/{stem}",
                video=videos,
                audio=audios + videos,  # a video's own track when no audio file is there
            )
        )
    return out


# --------------------------------------------------------------------------- pipelines


@dataclass
class Pipeline:
    """A model kind's way from one input to its evaluation rows and their batch."""

    rows: Callable[[Bundle, MediaInput], tuple[list[dict[str, Any]], tuple[str, ...]]]
    collate: Callable[[list[dict[str, Any]]], dict[str, Any]]


def _decoded_recording(bundle: Bundle, item: MediaInput) -> tuple[dict[str, Any], tuple[str, ...]]:
    """One recording's model inputs as the data module stores them (one eval item)."""
    from trainers.data.av_dataset import AudioNorm
    from trainers.data.ravdess import PrepareTask, Recording, prepare_recording

    cfg = bundle.config.data
    pre = bundle.preprocessing
    if pre.get("video", {}).get("source") == "embeddings":
        raise BundleError(
            f"{bundle.checkpoint}: the model reads precomputed video embeddings "
            "(model.video_input=embeddings), which predict cannot compute from media files"
        )
    rec = Recording(
        key=item.key, label=0, actor="", vocal=1, intensity=1,
        video_sources=item.video, audio_sources=item.audio,
    )  # fmt: skip
    result = prepare_recording(PrepareTask(rec, cfg, cache_root=None, decode=True))
    if result.missing:
        what = " and ".join(result.missing)
        if not result.bad:  # no candidate file at all
            raise InputError(f"no {what} file or track found for it")
        if len(result.bad) == 1:  # the usual case: one file, no need to name it again
            raise InputError(f"no usable {what}: {next(iter(result.bad.values()))}")
        why = "; ".join(f"{Path(p).name}: {r}" for p, r in result.bad.items())
        raise InputError(f"no usable {what}: {why}")
    row: dict[str, Any] = {"index": 0, "label": 0}
    if "audio" in cfg.modalities:
        norm = bundle.fitted.get("audio_norm")
        if norm is None:
            raise BundleError(
                f"{bundle.checkpoint}: no fitted audio normalisation (an old checkpoint): "
                "pass --data with the run's training data to recompute it"
            )
        assert result.audio is not None
        row["audio"] = AudioNorm.from_dict(norm).apply(result.audio[cfg.audio_features])
    if "video" in cfg.modalities:
        row["video"] = result.video
    return row, result.sources


def _av_rows(bundle: Bundle, item: MediaInput) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    row, sources = _decoded_recording(bundle, item)
    return [row], sources


def _clip_rows(bundle: Bundle, item: MediaInput) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    from trainers.data.clips import ClipEvalSet

    row, sources = _decoded_recording(bundle, item)
    clips = bundle.preprocessing["clips"]
    views = ClipEvalSet([row], clips["frames"], clips["eval_clips"])
    return [views[i] for i in range(len(views))], sources


def _image_rows(bundle: Bundle, item: MediaInput) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    import torch

    from trainers.data.config import DecodeError
    from trainers.data.images import ImageEvalSet, decode_image

    pre = bundle.preprocessing
    assert item.image is not None
    try:
        array = decode_image(item.image, pre["image_size"], pre["resize"])
    except DecodeError as exc:
        raise InputError(str(exc)) from None
    # As FIDataModule stores them: (N, S, S, 3) stacked (a writable copy) -> (N, 3, S, S).
    images = torch.from_numpy(np.stack([array])).permute(0, 3, 1, 2).contiguous()
    tta = len(pre["tta"]["views"]) > 1
    views = ImageEvalSet(
        images, np.zeros(1, np.int64), np.zeros(1, np.int64), [item.key], pre["image_size"], tta
    )
    return [views[i] for i in range(len(views))], (item.image,)


def _collate_av(items: list[dict[str, Any]]) -> dict[str, Any]:
    from trainers.data.av_dataset import collate_av

    return collate_av(items)


def _collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    from trainers.data.clips import collate_clips

    return collate_clips(items)


def _collate_images(items: list[dict[str, Any]]) -> dict[str, Any]:
    from trainers.data.images import collate_images

    return collate_images(items)


# preprocessing.kind -> pipeline (see trainers.data.base.DataModule.inference_state).
PIPELINES: dict[str, Pipeline] = {
    "audio-visual": Pipeline(_av_rows, _collate_av),
    "video-clips": Pipeline(_clip_rows, _collate_clips),
    "image": Pipeline(_image_rows, _collate_images),
}


def pipeline_of(bundle: Bundle) -> tuple[str, Pipeline]:
    kind = bundle.preprocessing.get("kind")
    if kind is None:
        raise BundleError(
            f"{bundle.checkpoint}: no inference state (an older checkpoint): pass --data with "
            "the run's training data so its preprocessing and statistics are recomputed"
        )
    if kind not in PIPELINES:
        raise BundleError(
            f"{bundle.checkpoint}: predict does not know input kind {kind!r} "
            f"(known: {', '.join(PIPELINES)})"
        )
    return kind, PIPELINES[kind]


def recompute_inference(
    bundle: Bundle,
    data_root: str,
    report_bad: BadInputReporter | None = None,
    progress: ProgressReporter | None = None,
) -> None:
    """Fill an old checkpoint's missing inference state by setting up its data module on
    ``data_root`` (the training data: the statistics are the train split's)."""
    from trainers.config import set_value

    cfg = dataclasses.replace(bundle.config)
    cfg.data = dataclasses.replace(bundle.config.data)
    set_value(cfg, "data.root", str(Path(data_root).resolve()))
    module = bundle.entry.data(cfg)
    module.setup(report_bad=report_bad or (lambda path, reason: None), progress=progress)
    state = getattr(module, "inference_state", None)
    if not callable(state):
        raise BundleError(f"model {bundle.model_name!r}: its data module has no inference state")
    bundle.inference = state()


# ---------------------------------------------------------------------------- predict


def predict_one(bundle: Bundle, pipeline: Pipeline, item: MediaInput) -> Prediction:
    """Probabilities of one input, its evaluation views averaged; an InputError becomes
    the row's error."""
    import torch

    try:
        rows, sources = pipeline.rows(bundle, item)
    except InputError as exc:
        return Prediction(input=item.name, key=item.key, error=str(exc))
    device = torch.device(bundle.device)
    batch = pipeline.collate(rows)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    with torch.no_grad():
        logits = bundle.model(batch).float()
    probs = torch.softmax(logits, dim=-1).cpu().numpy().astype(np.float64).mean(axis=0)
    return Prediction(
        input=item.name,
        key=item.key,
        probabilities={c: float(p) for c, p in zip(bundle.classes, probs, strict=True)},
        sources=tuple(sources),
    )


def predict_inputs(
    bundle: Bundle, paths: Iterable[str | Path], progress: ProgressReporter | None = None
) -> Iterator[Prediction]:
    """One Prediction per input under ``paths``, in order (errors included)."""
    _kind, pipeline = pipeline_of(bundle)
    inputs, errors = collect_inputs(paths, _kind)
    yield from errors
    for done, item in enumerate(inputs, start=1):
        yield predict_one(bundle, pipeline, item)
        if progress is not None:
            progress(done, len(inputs), Path(item.name).name)


# ---------------------------------------------------------------------------- output


def table_row(row: Prediction, classes: Sequence[str], name_width: int = 40) -> str:
    """One fixed-width line: the input, the top class, each class's probability."""
    assert row.probabilities is not None
    return table_line(row.input, row.prediction, row.probabilities, classes, name_width)
