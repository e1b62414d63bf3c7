"""The RAVDESS data module: decode every recording once, hold it in memory, batch it.

Why it is built this way:

* :meth:`RavdessDataModule.setup` does all decoding up front (cache first,
  then a process pool for the misses) and keeps uint8 face crops and float32
  features in memory. A whole speech RAVDESS at the defaults is a few
  hundred MB, so epochs never touch the disk and ``__getitem__`` is an index
  lookup: the engine's DataLoader can run with ``num_workers=0``.
* Workers never call ``report_bad``: they return the failures with their
  results and the parent reports each file once, so bad_inputs.jsonl is
  written by one process.
* Workers start from a forkserver, not by forking the caller: the engine
  process holds torch, maybe CUDA, and threads (event sinks) whose locks a
  fork would copy mid-use. The forkserver imports the decoding stack once
  (PyAV, OpenCV, soundfile, soxr: about 0.5 s), and every worker forks from
  it ready. Like any non-fork start, a script calling ``setup()`` with
  workers needs the ``if __name__ == "__main__":`` guard; ``python -m
  trainers`` needs nothing.
* Audio features are standardized per feature dimension with the mean and
  standard deviation of the TRAIN split only (every frame of every train
  recording, padding excluded), then the same statistics are applied to val
  and test, so nothing about held-out actors leaks into training. The
  statistics are kept in :attr:`RavdessDataModule.audio_norm` for use at
  inference time (save them with the model).
* Whether the detector found a face is kept per recording (read from the
  video cache entry, so a warm run knows it without decoding) and summed per
  split and per actor in :meth:`RavdessDataModule.describe`'s ``faces``
  (:mod:`trainers.data.face_counts`): a missed face is cropped from the
  centre of the frame, which must never pass unnoticed.
* ``collate`` is a static method, so handing ``module.collate`` to a
  DataLoader pickles a function reference, not the module and its arrays.
* Only indexing knows the data set: everything after it works on
  :class:`~trainers.data.ravdess.Recording` lists, whatever their origin. So
  :data:`LAYOUTS` maps ``data.layout`` to the classes and an index function
  (RAVDESS, CREMA-D, MELD, and both of the first two in one label space as
  ``combined``); a layout with official splits (MELD) returns them, the
  others are split by actor (or at random) here.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from trainers.data import audio as audio_mod
from trainers.data import face_detectors
from trainers.data import video as video_mod
from trainers.data.base import (
    INFERENCE_FORMAT,
    SPLITS,
    BadInputReporter,
    ProgressReporter,
    SampleInfo,
)
from trainers.data.cache import (
    known_digests,
    load_digest_index,
    remember_digests,
    save_digest_index,
)
from trainers.data.combined import CLASSES as COMBINED_CLASSES
from trainers.data.combined import EXPECTED as COMBINED_EXPECTED
from trainers.data.combined import format_excluded, index_combined, refuse_combined_root
from trainers.data.config import VOCAL_CHANNELS, DataConfig, DataError
from trainers.data.cremad import CLASSES as CREMAD_CLASSES
from trainers.data.cremad import index_cremad
from trainers.data.face_counts import FaceRow, detector_name, summarize_faces
from trainers.data.folds import fold_splits
from trainers.data.guards import admit_suspect
from trainers.data.meld import CLASSES as MELD_CLASSES
from trainers.data.meld import index_meld
from trainers.data.ravdess import (
    CLASSES,
    Prepared,
    PrepareTask,
    Recording,
    actor_sex,
    index_ravdess,
    init_worker,
    prepare_recording,
    single_threaded_blas,
    split_actors,
    split_random,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Indexed:
    """What a layout's index step found."""

    recordings: list[Recording]
    # recording key -> "train" / "val" / "test" when the data set fixes its splits (MELD).
    split_of: dict[str, str] | None = None
    # Recordings a label map left out on purpose (combined: RAVDESS calm, surprised), one
    # row per class: {"corpus", "class", "recordings", "files"}. Counted and shown by
    # describe, prepare and train.log, not listed as bad inputs (the files are fine).
    excluded: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AVLayout:
    classes: tuple[str, ...]
    index: Callable[[str, BadInputReporter, DataConfig], Indexed]
    expected: str = field(default="")  # what the files should look like, for "found nothing"


def _index_ravdess(root: str, report: BadInputReporter, cfg: DataConfig) -> Indexed:
    return Indexed(index_ravdess(root, report, vocal_channels=VOCAL_CHANNELS[cfg.vocal_channel]))


def _index_cremad(root: str, report: BadInputReporter, cfg: DataConfig) -> Indexed:
    return Indexed(index_cremad(root, report))


def _index_meld(root: str, report: BadInputReporter, cfg: DataConfig) -> Indexed:
    found = index_meld(root, report)
    return Indexed(found.recordings, found.split_of)


def _index_combined(root: str, report: BadInputReporter, cfg: DataConfig) -> Indexed:
    found = index_combined(root, report, VOCAL_CHANNELS[cfg.vocal_channel])
    return Indexed(found.recordings, excluded=found.excluded)


# data.layout -> how to read it (see trainers.data.config.AV_LAYOUTS).
LAYOUTS: dict[str, AVLayout] = {
    "ravdess": AVLayout(
        CLASSES, _index_ravdess, "files named MM-VV-EE-II-SS-RR-AA.mp4/.wav (Actor_XX folders)"
    ),
    "crema-d": AVLayout(
        CREMAD_CLASSES,
        _index_cremad,
        "files named ActorID_Sentence_Emotion_Level.wav/.mp4/.flv, e.g. 1001_DFA_ANG_XX.wav",
    ),
    "meld": AVLayout(
        MELD_CLASSES,
        _index_meld,
        "train/dev/test_sent_emo.csv and their dia{D}_utt{U}.mp4 clip folders",
    ),
    # RAVDESS + CREMA-D in one label space (trainers.data.combined, docs/datasets.md).
    "combined": AVLayout(COMBINED_CLASSES, _index_combined, COMBINED_EXPECTED),
}

# Imported once in the forkserver, so every preparation worker starts with them loaded
# (ravdess imports the whole decoding stack: audio, spectral, video, faces).
_WORKER_PRELOAD = ["trainers.data.ravdess"]
_STD_FLOOR = 1e-5
# data.audio_norm=speaker: an actor with fewer recordings than this gets the train
# statistics instead; a mean and std from a handful of utterances would mostly
# normalise away their emotion (MELD has hundreds of one-line speakers).
MIN_SPEAKER_RECORDINGS = 8


@dataclass(frozen=True)
class AudioNorm:
    """Per-feature statistics of the train split; features are stored as ``(x - mean) / std``."""

    mean: np.ndarray  # float32 (F,)
    std: np.ndarray  # float32 (F,)

    def apply(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        """Plain lists (exact: float32 values survive the float64 round trip)."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AudioNorm:
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float32),
            std=np.asarray(data["std"], dtype=np.float32),
        )


def fit_audio_norm(features: list[np.ndarray], dim: int) -> AudioNorm:
    """Per-feature mean and std over every frame of ``features`` (``(T, F)`` arrays).

    Running sums in float64: no concatenated copy of the whole split."""
    count, total, squares = 0, np.zeros(dim), np.zeros(dim)
    for array in features:
        values = array.astype(np.float64)
        count += len(values)
        total += values.sum(axis=0)
        squares += np.square(values).sum(axis=0)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - np.square(mean), 0.0))
    return AudioNorm(
        mean=mean.astype(np.float32), std=np.maximum(std, _STD_FLOOR).astype(np.float32)
    )


def fit_speaker_norms(
    recordings: list[tuple[str | int, np.ndarray | None]], dim: int
) -> dict[str | int, AudioNorm]:
    """Each actor's own statistics (``data.audio_norm=speaker``), for every split.

    Speaker normalisation is a standard step of speech emotion recognition: actors
    differ in pitch and loudness far more than one emotion from another, and a
    held-out actor's own mean is known without its labels. Actors with fewer than
    :data:`MIN_SPEAKER_RECORDINGS` recordings are left out (the caller falls back
    to the train statistics)."""
    by_actor: dict[str | int, list[np.ndarray]] = {}
    for actor, features in recordings:
        if features is not None:
            by_actor.setdefault(actor, []).append(features)
    return {
        actor: fit_audio_norm(arrays, dim)
        for actor, arrays in by_actor.items()
        if len(arrays) >= MIN_SPEAKER_RECORDINGS
    }


class AVDataset(Dataset):
    """In-memory rows of one split; items are dicts of read-only numpy arrays.

    ``"video"`` is uint8 ``(Tv, C, S, S)``, ``"audio"`` float32 ``(Ta, F)``;
    copy before modifying (augmentations), the arrays are shared by every epoch.
    """

    def __init__(
        self,
        labels: np.ndarray,
        audio: list[np.ndarray] | None,
        video: list[np.ndarray] | None,
    ) -> None:
        self.labels = labels
        self.audio = audio
        self.video = video

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index = index % len(self)
        item: dict[str, Any] = {"index": index, "label": int(self.labels[index])}
        if self.audio is not None:
            item["audio"] = self.audio[index]
        if self.video is not None:
            item["video"] = self.video[index]
        return item


def _pad(sequences: list[np.ndarray], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    longest = max(len(seq) for seq in sequences)
    out = np.zeros((len(sequences), longest, *sequences[0].shape[1:]), dtype=dtype)
    mask = np.zeros((len(sequences), longest), dtype=bool)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = seq
        mask[row, : len(seq)] = True
    return out, mask


def collate_av(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad to the longest item of the batch; see trainers.data.base for the keys.

    Video arrives as uint8 and leaves as float32 in 0..1; an item whose video
    is already floating point (an augmentation produced it) is taken as 0..1.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch = {
        "label": torch.tensor([int(item["label"]) for item in items], dtype=torch.long),
        "index": torch.tensor([int(item["index"]) for item in items], dtype=torch.long),
    }
    if "sample" in items[0]:  # several rows per sample (clips, views): see Trainer._predict
        batch["sample"] = torch.tensor([int(item["sample"]) for item in items], dtype=torch.long)
    if "audio" in items[0]:
        audio, mask = _pad([np.asarray(item["audio"]) for item in items], np.float32)
        batch["audio"] = torch.from_numpy(audio)
        batch["audio_mask"] = torch.from_numpy(mask)
    if "video" in items[0]:
        frames = [np.asarray(item["video"]) for item in items]
        if all(f.dtype == np.uint8 for f in frames):
            video, mask = _pad(frames, np.uint8)
            batch["video"] = torch.from_numpy(video).float().div_(255.0)
        else:
            # Mixed batches happen when only some items were augmented: scale each uint8
            # item on its own so every row ends up in 0..1.
            frames = [f.astype(np.float32) / 255.0 if f.dtype == np.uint8 else f for f in frames]
            video, mask = _pad(frames, np.float32)
            batch["video"] = torch.from_numpy(video)
        batch["video_mask"] = torch.from_numpy(mask)
    return batch


@dataclass
class _Split:
    samples: list[SampleInfo]
    labels: np.ndarray  # int64 (N,)
    audio: list[np.ndarray] | None
    video: list[np.ndarray] | None
    faces: list[FaceRow]  # per sample; found is None when video is not used


class RavdessDataModule:
    """RAVDESS speech recordings as audio-visual samples (see the module docstring).

    ``seed`` is the run's seed; splits deliberately use ``cfg.split_seed``
    instead, so runs with different seeds are evaluated on the same actors.
    """

    classes: Sequence[str] = CLASSES

    def __init__(self, cfg: DataConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.seed = seed
        layout = LAYOUTS.get(cfg.layout)  # an unknown layout fails in setup's validate()
        self.classes = list(layout.classes if layout is not None else CLASSES)
        self._fixed_split: dict[str, str] | None = None
        self.audio_norm: AudioNorm | None = None
        # data.audio_norm=speaker: each actor's own statistics, fitted in setup.
        self.speaker_norms: dict[str | int, AudioNorm] = {}
        # Statistics fitted on another data set's train split (use_fitted), used instead of
        # fitting on this one's: a trained model evaluated on other data (evaluate).
        self._given_audio_norm: AudioNorm | None = None
        self._splits: dict[str, _Split] | None = None
        self._stats: dict[str, Any] = {}

    # ---------------------------------------------------------------- setup

    def setup(self, report_bad: BadInputReporter, progress: ProgressReporter | None = None) -> None:
        cfg = self.cfg
        cfg.validate()
        if not cfg.root:
            raise DataError("data.root is empty: pass --data <directory holding Actor_XX folders>")
        started = time.perf_counter()
        reported: set[str] = set()

        def report(path: str, reason: str) -> None:
            if path not in reported:  # one line per file, however many modalities tried it
                reported.add(path)
                report_bad(path, reason)

        refuse_combined_root(cfg.root, cfg.layout)
        layout = LAYOUTS[cfg.layout]
        self.classes = list(layout.classes)
        indexed = layout.index(cfg.root, report, cfg)
        recordings, self._fixed_split = indexed.recordings, indexed.split_of
        if indexed.excluded:
            log.info("excluded by the label map: %s", format_excluded(indexed.excluded))
        if not recordings and cfg.layout == "ravdess":
            raise DataError(
                f"no RAVDESS speech recordings under {cfg.root!r}: expected files named "
                f"MM-VV-EE-II-SS-RR-AA.mp4/.wav ({len(reported)} media files had other names)"
            )
        if not recordings:
            raise DataError(
                f"no {cfg.layout} recordings under {cfg.root!r}: expected {layout.expected} "
                f"({len(reported)} inputs were unusable and reported)"
            )
        results = self._prepare(recordings, progress)
        # Reported in recording order, after preparation, so bad_inputs.jsonl is the same
        # whichever worker finished first.

        kept: list[tuple[Recording, Prepared]] = []
        dropped = 0
        suspect = 0
        for rec in recordings:
            result = results[rec.key]
            for path, reason in result.bad.items():
                report(path, reason)
            if result.missing:
                dropped += 1
                what = " and ".join(result.missing)
                for path in rec.files:
                    report(path, f"skipped: recording {rec.key} has no working {what} source")
                continue
            if result.suspect and not admit_suspect(
                rec.key, rec.files, result.suspect, cfg.keep_suspect, report
            ):
                suspect += 1
                continue
            kept.append((rec, result))
        if dropped + suspect > cfg.max_bad_fraction * len(recordings) or not kept:
            raise DataError(
                f"{dropped} of {len(recordings)} recordings under {cfg.root!r} have no usable "
                f"source and {suspect} look wrong (allowed: data.max_bad_fraction="
                f"{cfg.max_bad_fraction}; data.keep_suspect=true keeps the second kind); "
                "the bad files and reasons were reported to bad_inputs"
            )

        self._splits = self._build_splits(kept)
        decoded = [r for _, r in kept if r.decoded]
        self._stats = {
            "recordings": len(recordings),
            "dropped_recordings": dropped,
            "suspect_recordings": suspect,
            "bad_inputs": len(reported),
            "decoded_recordings": len(decoded),
            "cached_recordings": len(kept) - len(decoded),
            "decode_seconds_per_recording": (
                round(sum(r.seconds for r in decoded) / len(decoded), 4) if decoded else None
            ),
            "setup_seconds": round(time.perf_counter() - started, 3),
        }
        if indexed.excluded:
            self._stats["excluded"] = indexed.excluded

    def _prepare(
        self, recordings: list[Recording], progress: ProgressReporter | None
    ) -> dict[str, Prepared]:
        """Cache lookups in this process, then decoding of the misses in a pool."""
        cfg = self.cfg
        cache_dir = cfg.resolved_cache_dir()
        cache_root = str(cache_dir)
        load_digest_index(cache_dir)
        try:
            return self._lookup_then_decode(recordings, cache_root, progress)
        finally:
            save_digest_index(cache_dir)

    def _lookup_then_decode(
        self, recordings: list[Recording], cache_root: str, progress: ProgressReporter | None
    ) -> dict[str, Prepared]:
        cfg = self.cfg
        total = len(recordings)
        done = 0
        results: dict[str, Prepared] = {}
        pending: list[Recording] = []
        if progress:
            progress(0, total, "reading the feature cache")
        for rec in recordings:
            result = prepare_recording(PrepareTask(rec, cfg, cache_root, decode=False))
            if result.pending:
                pending.append(rec)
                continue
            results[rec.key] = result
            done += 1
            if progress:
                progress(done, total, f"{rec.key} from cache")

        workers = min(cfg.resolved_workers(), len(pending))
        if workers <= 1:
            with single_threaded_blas():
                for rec in pending:
                    task = PrepareTask(rec, cfg, cache_root, decode=True)
                    results[rec.key] = prepare_recording(task)
                    done += 1
                    if progress:
                        progress(done, total, f"{rec.key} decoded")
            return results

        log.info("decoding %d recordings with %d workers", len(pending), workers)
        context = multiprocessing.get_context("forkserver")
        preload = face_detectors.detector_class(cfg.face_detector).preload
        context.set_forkserver_preload([*_WORKER_PRELOAD, *preload])
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker)
        try:
            futures = {}
            for rec in pending:
                # Digests the cache lookups already computed travel along: no second hashing.
                digests = known_digests(list(rec.files))
                task = PrepareTask(rec, cfg, cache_root, True, threads=1, digests=digests)
                futures[pool.submit(prepare_recording, task)] = rec
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for future in finished:
                    rec = futures[future]
                    try:
                        results[rec.key] = future.result()
                        remember_digests(results[rec.key].digests)
                    except Exception as exc:  # a crash or a bug, not a bad file: those come back
                        raise RuntimeError(
                            f"preparing recording {rec.key} failed: {exc!r}"
                        ) from exc
                    done += 1
                    if progress:
                        progress(done, total, f"{rec.key} decoded")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results

    def _build_splits(self, kept: list[tuple[Recording, Prepared]]) -> dict[str, _Split]:
        cfg = self.cfg
        if self._fixed_split is not None:
            # The data set's official splits (MELD): comparable with published results.
            assign = [self._fixed_split[rec.key] for rec, _ in kept]
        elif cfg.folds:
            # Speaker-independent k-fold: this fold's actors are the test split.
            recs = [rec for rec, _ in kept]
            actors = fold_splits(
                [rec.actor for rec in recs],
                cfg.folds,
                cfg.fold,
                cfg.val_fraction,
                cfg.split_seed,
                sex_of=actor_sex(recs),
            )
            split_of = {actor: split for split, names in actors.items() for actor in names}
            assign = [split_of[rec.actor] for rec, _ in kept]
        elif cfg.split == "actor":
            recs = [rec for rec, _ in kept]
            actors = split_actors(
                [rec.actor for rec in recs], *self._fractions(), sex_of=actor_sex(recs)
            )
            split_of = {actor: split for split, names in actors.items() for actor in names}
            assign = [split_of[rec.actor] for rec, _ in kept]
        else:
            log.warning(
                "data.split=random puts the same actors in train and test: accuracy will be "
                "inflated compared with an actor-disjoint split"
            )
            keys = split_random([rec.key for rec, _ in kept], *self._fractions())
            split_of = {key: split for split, names in keys.items() for key in names}
            assign = [split_of[rec.key] for rec, _ in kept]
        n_actors = len({rec.actor for rec, _ in kept})
        for split in ("val", "test"):
            if split not in assign:
                log.warning("the %s split is empty (%d actors in all)", split, n_actors)

        use_audio = "audio" in cfg.modalities
        use_video = "video" in cfg.modalities
        if use_audio and self._given_audio_norm is not None:
            self.audio_norm = self._given_audio_norm
        elif use_audio:
            train = [r.audio[cfg.audio_features] for (_, r), s in zip(kept, assign, strict=True)
                     if s == "train" and r.audio is not None]  # fmt: skip
            self.audio_norm = fit_audio_norm(train, cfg.audio_dim)
        self.speaker_norms = {}
        if use_audio and cfg.audio_norm == "speaker":
            self.speaker_norms = fit_speaker_norms(
                [(rec.actor, r.audio[cfg.audio_features]) for rec, r in kept], cfg.audio_dim
            )

        splits: dict[str, _Split] = {}
        for split in SPLITS:
            rows = [(rec, r) for (rec, r), s in zip(kept, assign, strict=True) if s == split]
            audio = video = None
            if use_audio and self.audio_norm is not None:
                audio = [
                    _frozen(
                        self.speaker_norms.get(rec.actor, self.audio_norm).apply(
                            r.audio[cfg.audio_features]
                        )
                    )
                    for rec, r in rows
                ]
            if use_video:
                video = [_frozen(r.video) for _, r in rows]
            splits[split] = _Split(
                samples=[
                    SampleInfo(key=rec.key, label=rec.label, actor=rec.actor, sources=r.sources)
                    for rec, r in rows
                ],
                labels=np.array([rec.label for rec, _ in rows], dtype=np.int64),
                audio=audio,
                video=video,
                faces=[FaceRow(split, rec.actor, r.face_found, r.face_frames) for rec, r in rows],
            )
        return splits

    def use_fitted(self, fitted: dict[str, Any]) -> None:
        """Normalise with ``fitted`` (a checkpoint's ``inference["fitted"]``) instead of
        statistics of this data's own train split; call before :meth:`setup`.

        For scoring a trained model on other data (trainers.inference.evaluate): its
        inputs must be what the model saw in training, so nothing is refitted."""
        norm = fitted.get("audio_norm")
        if "audio" in self.cfg.modalities and norm is None:
            raise ValueError("fitted statistics without audio_norm for a model that reads audio")
        self._given_audio_norm = AudioNorm.from_dict(norm) if norm is not None else None

    def inference_state(self) -> dict[str, Any]:
        """The decode settings of each modality and the train split's audio statistics
        (see trainers.data.base.DataModule.inference_state)."""
        cfg = self.cfg
        pre: dict[str, Any] = {
            "kind": "audio-visual",
            "layout": cfg.layout,
            "modalities": list(cfg.modalities),
        }
        if "video" in cfg.modalities:
            pre["video"] = {
                **video_mod.video_settings(cfg),
                "channels": cfg.video_channels,
                "face_detector": face_detectors.describe(cfg.face_detector),
            }
        fitted: dict[str, Any] = {}
        if "audio" in cfg.modalities:
            pre["audio"] = {
                **audio_mod.audio_settings(cfg),
                "features": cfg.audio_features,
                "dim": cfg.audio_dim,
                "normalization": "per feature: (x - mean) / std, train split statistics"
                if cfg.audio_norm == "train"
                else "per feature: (x - mean) / std, each actor's own statistics (actors "
                f"with fewer than {MIN_SPEAKER_RECORDINGS} recordings: train split statistics)",
                "norm": cfg.audio_norm,
            }
            if self.audio_norm is None:
                raise RuntimeError("RavdessDataModule.setup() has not been called")
            fitted["audio_norm"] = self.audio_norm.to_dict()
        return {"format": INFERENCE_FORMAT, "preprocessing": pre, "fitted": fitted}

    def _fractions(self) -> tuple[float, float, int]:
        return self.cfg.val_fraction, self.cfg.test_fraction, self.cfg.split_seed

    # ---------------------------------------------------------------- access

    def _split(self, split: str) -> _Split:
        if self._splits is None:
            raise RuntimeError("RavdessDataModule.setup() has not been called")
        if split not in self._splits:
            raise KeyError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self._splits[split]

    def dataset(self, split: str) -> AVDataset:
        data = self._split(split)
        return AVDataset(data.labels, data.audio, data.video)

    def samples(self, split: str) -> list[SampleInfo]:
        return list(self._split(split).samples)

    def labels(self, split: str) -> np.ndarray:
        """Labels of ``split`` as int64, aligned with ``dataset(split)`` (for class weights)."""
        return self._split(split).labels.copy()

    collate = staticmethod(collate_av)

    def memory_bytes(self) -> int:
        """Bytes held by the decoded arrays of every split."""
        total = 0
        for split in SPLITS:
            data = self._split(split)
            for arrays in (data.audio, data.video):
                total += sum(a.nbytes for a in arrays or [])
        return total

    def describe(self) -> dict[str, Any]:
        # Here, not at the top: the generator package is a heavy import for workers.
        from trainers.data.synth.manifest import is_generated

        cfg = self.cfg
        splits: dict[str, Any] = {}
        for split in SPLITS:
            data = self._split(split)
            counts = np.bincount(data.labels, minlength=len(self.classes))
            splits[split] = {
                "samples": len(data.labels),
                "per_class": {name: int(n) for name, n in zip(self.classes, counts, strict=True)},
                "actors": sorted({s.actor for s in data.samples}),
            }
        out: dict[str, Any] = {
            "dataset": cfg.layout,
            "root": cfg.root,
            "generated": is_generated(cfg.root),
            "classes": list(self.classes),
            "modalities": list(cfg.modalities),
            "split": "official" if self._fixed_split is not None else cfg.split,
            "split_seed": cfg.split_seed,
            **(
                {"folds": cfg.folds, "fold": cfg.fold, "fold_group": cfg.fold_group}
                if cfg.folds
                else {}
            ),
            "splits": splits,
            "faces_not_found": sum(
                row.found is False for split in SPLITS for row in self._split(split).faces
            ),
            **self._stats,
            "memory_mb": round(self.memory_bytes() / 2**20, 1),
        }
        if "audio" in cfg.modalities:
            # The statistics themselves are in self.audio_norm (too long for a log line).
            out["audio"] = {
                "features": cfg.audio_features,
                "dim": cfg.audio_dim,
                "normalized": "per feature, with train-split mean and std"
                if cfg.audio_norm == "train"
                else f"per feature, with each actor's own mean and std "
                f"({len(self.speaker_norms)} actors; the rest with train-split statistics)",
            }
        if "video" in cfg.modalities:
            out["video"] = {"channels": cfg.video_channels, "size": cfg.face_size, "fps": cfg.fps}
            rows = [row for split in SPLITS for row in self._split(split).faces]
            out["faces"] = summarize_faces(rows, detector_name(cfg), cfg.face_warn_fraction)
        return out


def _frozen(array: np.ndarray) -> np.ndarray:
    """Read-only, so an augmentation that forgets to copy fails loudly instead of drifting."""
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array
