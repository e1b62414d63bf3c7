"""The RAVDESS layout: file names, recordings, sources, splits, and preparing one recording.

RAVDESS names every file ``MM-VV-EE-II-SS-RR-AA.ext``: modality (01
audio-video mp4, 02 video-only mp4, 03 audio-only wav), vocal channel (01
speech, 02 song), emotion (01..08), intensity (01 normal, 02 strong),
statement, repetition and actor (odd numbers male, even female).

The 01 and 02 files of one take are the same recording (the 02 file is the
01 file with its audio track removed), and the 03 wav is its audio. Using
them as separate samples would put one take into a batch two or three times,
and with a random split into both train and test, so files are grouped into
recordings by everything except the modality field, and each recording
becomes one sample that draws its video from the 01 mp4 (else the 02 mp4)
and its audio from the 03 wav (else the 01 mp4's track). A source that
fails is reported and the next one is tried.

This module imports no torch: :func:`prepare_recording` runs in worker
processes that should start fast.
"""

from __future__ import annotations

import contextlib
import os
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainers.data import audio as audio_mod
from trainers.data import face_detectors, guards
from trainers.data import video as video_mod
from trainers.data.base import BadInputReporter
from trainers.data.cache import (
    ERROR_FIELD,
    FeatureCache,
    StatKey,
    known_digests,
    remember_digests,
)
from trainers.data.config import DataConfig, DataError, DecodeError
from trainers.data.face_counts import frames_with_face
from trainers.data.files import walk_files

CLASSES = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
MODALITY_AV, MODALITY_VIDEO_ONLY, MODALITY_AUDIO_ONLY = 1, 2, 3
SPEECH, SONG = 1, 2
_EXTENSION = {MODALITY_AV: ".mp4", MODALITY_VIDEO_ONLY: ".mp4", MODALITY_AUDIO_ONLY: ".wav"}
# Files with these suffixes are expected to follow the naming scheme; anything
# else under root (READMEs, manifests, spreadsheets) is not an input and is ignored.
MEDIA_SUFFIXES = frozenset({".mp4", ".wav", ".avi", ".mov", ".mkv", ".m4a", ".flac", ".webm"})

__all__ = [
    "CLASSES",
    "DataError",
    "PrepareTask",
    "Prepared",
    "RavdessName",
    "Recording",
    "actor_sex",
    "group_recordings",
    "index_ravdess",
    "parse_name",
    "prepare_recording",
    "split_actors",
    "split_random",
    "walk_media",
]


@dataclass(frozen=True)
class RavdessName:
    modality: int
    vocal: int
    emotion: int  # 1..8, see CLASSES
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def recording_key(self) -> str:
        """The stem the take's audio-video (01) file has, whichever files exist.

        Shared by the 01, 02 and 03 files of a take, and the same id the
        synthetic corpus manifest uses.
        """
        fields = (self.vocal, self.emotion, self.intensity, self.statement)
        return "-".join(f"{v:02d}" for v in (MODALITY_AV, *fields, self.repetition, self.actor))


def parse_name(filename: str) -> RavdessName:
    """Parse ``MM-VV-EE-II-SS-RR-AA.ext``; ValueError says what is wrong.

    Statement, repetition and actor accept any positive two-digit number
    (RAVDESS itself has 2, 2 and 24) so generated corpora may be larger.
    """
    stem, dot, ext = filename.rpartition(".")
    if not dot:
        raise ValueError("no file extension")
    parts = stem.split("-")
    if len(parts) != 7:
        raise ValueError(f"expected 7 dash-separated fields MM-VV-EE-II-SS-RR-AA, got {len(parts)}")
    if not all(len(p) == 2 and p.isdigit() for p in parts):
        raise ValueError("every field must be two digits")
    modality, vocal, emotion, intensity, statement, repetition, actor = (int(p) for p in parts)
    if modality not in _EXTENSION:
        raise ValueError(f"modality {modality:02d} is not 01 (AV), 02 (video) or 03 (audio)")
    if vocal not in (SPEECH, SONG):
        raise ValueError(f"vocal channel {vocal:02d} is not 01 (speech) or 02 (song)")
    if not 1 <= emotion <= len(CLASSES):
        raise ValueError(f"emotion {emotion:02d} is not in 01..08")
    if intensity not in (1, 2):
        raise ValueError(f"intensity {intensity:02d} is not 01 or 02")
    for name, value in (("statement", statement), ("repetition", repetition), ("actor", actor)):
        if value < 1:
            raise ValueError(f"{name} {value:02d} must be >= 01")
    expected = _EXTENSION[modality]
    if "." + ext.lower() != expected:
        raise ValueError(f"modality {modality:02d} should be a {expected} file, not .{ext}")
    return RavdessName(modality, vocal, emotion, intensity, statement, repetition, actor)


@dataclass(frozen=True)
class Recording:
    """One take; its candidate sources per modality, best first."""

    key: str  # "01-VV-EE-II-SS-RR-AA", the stem of the take's audio-video file
    label: int  # index into CLASSES
    actor: str  # "07"
    vocal: int
    intensity: int
    video_sources: tuple[str, ...]
    audio_sources: tuple[str, ...]
    # "male" / "female" where the corpus says (CREMA-D's VideoDemographics.csv); None
    # otherwise, and for RAVDESS, whose actor numbers say it (odd male, even female).
    sex: str | None = None

    def sources(self, modality: str) -> tuple[str, ...]:
        return self.video_sources if modality == "video" else self.audio_sources

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.video_sources, *self.audio_sources)))


def walk_media(root: str, suffixes: frozenset[str] = MEDIA_SUFFIXES) -> list[str]:
    """Media files under ``root`` in sorted order (:func:`trainers.data.files.walk_files`)."""
    return walk_files(root, suffixes)


def index_ravdess(
    root: str,
    report_bad: BadInputReporter,
    vocal_channels: Sequence[int] = (SPEECH,),
) -> list[Recording]:
    """Group the files under ``root`` into recordings, sorted by key.

    Names that do not parse are reported and skipped. Song files are skipped
    silently unless ``vocal_channels`` includes 2: they are a choice, not an
    error.
    """
    if not os.path.isdir(root):
        raise DataError(f"data root {root!r} is not a directory")
    return group_recordings(walk_media(root), report_bad, vocal_channels)


def group_recordings(
    paths: Sequence[str],
    report_bad: BadInputReporter,
    vocal_channels: Sequence[int] = (SPEECH,),
) -> list[Recording]:
    """The recordings of RAVDESS-named ``paths`` (see :func:`index_ravdess`), by key;
    also what ``predict`` reads a folder of RAVDESS files with."""
    groups: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    names: dict[str, RavdessName] = {}
    for path in paths:
        try:
            name = parse_name(os.path.basename(path))
        except ValueError as exc:
            report_bad(path, f"not a RAVDESS file name: {exc}")
            continue
        if name.vocal not in vocal_channels:
            continue
        groups[name.recording_key][name.modality].append(path)
        names.setdefault(name.recording_key, name)
    recordings = []
    for key in sorted(groups):
        by_modality, name = groups[key], names[key]
        recordings.append(
            Recording(
                key=key,
                label=name.emotion - 1,
                actor=f"{name.actor:02d}",
                vocal=name.vocal,
                intensity=name.intensity,
                video_sources=(*by_modality[MODALITY_AV], *by_modality[MODALITY_VIDEO_ONLY]),
                audio_sources=(*by_modality[MODALITY_AUDIO_ONLY], *by_modality[MODALITY_AV]),
            )
        )
    return recordings


def actor_sex(recordings: Iterable[Recording]) -> dict[str, str]:
    """Actor -> sex where the recordings record it: what :func:`split_actors` balances."""
    return {rec.actor: rec.sex for rec in recordings if rec.sex}


def _is_male(actor: str, sex_of: Mapping[str, str]) -> bool:
    """The recorded sex; else RAVDESS's rule (odd actor numbers are male)."""
    if actor in sex_of:
        return sex_of[actor] == "male"
    local = actor.rpartition(":")[2]  # "ravdess:07" -> "07" (combined ids)
    return local.isdigit() and int(local) % 2 == 1


def _actor_order(
    actors: Sequence[str], rng: np.random.Generator, sex_of: Mapping[str, str]
) -> list[str]:
    """A shuffled order alternating male and female actors.

    Cutting val and test off its front gives splits as balanced between
    the two as their sizes allow, which a plain shuffle does not promise.
    """
    male = [a for a in actors if _is_male(a, sex_of)]
    female = [a for a in actors if a not in male]
    groups = [
        [male[i] for i in rng.permutation(len(male))],
        [female[i] for i in rng.permutation(len(female))],
    ]
    if rng.integers(2):
        groups.reverse()
    order = []
    for i in range(max(len(g) for g in groups)):
        order.extend(g[i] for g in groups if i < len(g))
    return order


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Held-out sizes: at least one each (when asked for and n >= 3), never all of n."""

    def size(fraction: float) -> int:
        return max(1, round(n * fraction)) if fraction > 0 else 0

    if n >= 3:
        n_val, n_test = size(val_fraction), size(test_fraction)
        while n_val + n_test > n - 1:
            if n_test >= n_val and n_test > 1:
                n_test -= 1
            else:
                n_val -= 1
        return n_val, n_test
    if n == 2:  # one to train on; the other validates (early stopping needs it) or tests
        return (1, 0) if val_fraction > 0 else (0, 1 if test_fraction > 0 else 0)
    return 0, 0


def split_actors(
    actors: Sequence[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    sex_of: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """Actor-disjoint splits, the same for the same actors and seed (order of input ignored).

    Each split alternates male and female actors as far as its size allows:
    ``sex_of`` (:func:`actor_sex`: CREMA-D's demographics) where it names an
    actor, else RAVDESS's rule, odd actor numbers male (for an id without it,
    a fixed but meaningless grouping).

    Actor ids of the form ``corpus:actor`` (the combined data set's) are split
    corpus by corpus with the same fractions and the parts joined, so every
    split holds actors of each corpus in proportion, which one shuffle of 24
    RAVDESS and 91 CREMA-D actors would not promise. Plain ids form a single
    group split exactly as before.
    """
    groups: dict[str, list[str]] = {}
    for actor in sorted(set(actors)):
        groups.setdefault(actor.rpartition(":")[0], []).append(actor)
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for corpus, unique in sorted(groups.items()):
        n_val, n_test = _split_sizes(len(unique), val_fraction, test_fraction)
        # A corpus's own stream, so adding or removing the other corpus leaves its split alone.
        rng = np.random.default_rng([seed, zlib.crc32(corpus.encode())] if corpus else seed)
        order = _actor_order(unique, rng, sex_of or {})
        out["train"] += order[n_val + n_test :]
        out["val"] += order[:n_val]
        out["test"] += order[n_val : n_val + n_test]
    return {split: sorted(names) for split, names in out.items()}


def split_random(
    keys: Sequence[str], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[str]]:
    """Recording-level random splits: the same actor lands in several splits."""
    unique = sorted(set(keys))
    n_val, n_test = _split_sizes(len(unique), val_fraction, test_fraction)
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    return {
        "train": sorted(order[n_val + n_test :]),
        "val": sorted(order[:n_val]),
        "test": sorted(order[n_val : n_val + n_test]),
    }


# --------------------------------------------------------------------------------------
# Preparing one recording (runs in the parent for cache lookups, in workers to decode).


@dataclass
class PrepareTask:
    recording: Recording
    cfg: DataConfig
    cache_root: str | None
    decode: bool  # False: answer from the cache only, and say when decoding is needed
    threads: int = 0  # decoder threads per process (0: FFmpeg picks)
    digests: dict[StatKey, str] = field(default_factory=dict)


@dataclass
class Prepared:
    key: str
    video: np.ndarray | None = None  # uint8 (T, C, S, S)
    face_found: bool | None = None
    # Share of the frames the detector searched that held a face (None: not known).
    face_frames: float | None = None
    audio: dict[str, np.ndarray] | None = None  # "logmel" and "mfcc", float32 (T, F)
    sources: tuple[str, ...] = ()  # the files whose content was used
    bad: dict[str, str] = field(default_factory=dict)  # path -> reason, in order of discovery
    missing: tuple[str, ...] = ()  # needed modalities without a working source
    # path -> why the source decoded but looks wrong (trainers.data.guards); the data
    # module leaves such a recording out unless data.keep_suspect.
    suspect: dict[str, str] = field(default_factory=dict)
    pending: bool = False  # only in cache-only mode: something must be decoded
    decoded: tuple[str, ...] = ()  # modalities decoded now rather than loaded from the cache
    seconds: float = 0.0
    digests: dict[StatKey, str] = field(default_factory=dict)  # for the parent's digest index


# Reasons after which the file is not tried for the other modality either.
_UNOPENABLE = ("zero-byte file", "cannot open", "cannot read")


def _decode_video(path: str, cfg: DataConfig, threads: int) -> dict[str, np.ndarray]:
    clip = video_mod.extract_faces(path, cfg, threads=threads)
    return {
        "frames": clip.frames,
        "face_found": np.array(clip.face_found),
        "detections": np.array(clip.detections),
        **guards.video_measures(clip.times, cfg.fps),
    }


def _decode_audio(path: str, cfg: DataConfig) -> dict[str, np.ndarray]:
    signal = audio_mod.load_audio(path, cfg.sample_rate)
    features = audio_mod.compute_features(signal, cfg)
    return {
        "logmel": features.logmel,
        "mfcc": features.mfcc,
        **guards.audio_measures(signal, cfg.sample_rate),
    }


# path -> (modality, reason) for every failed attempt, in order.
_Notes = dict[str, list[tuple[str, str]]]


def _summarize(notes: _Notes) -> dict[str, str]:
    """One reason per file; the modality is named only when both failed, differently."""
    out = {}
    for path, attempts in notes.items():
        reasons = dict.fromkeys(reason for _, reason in attempts)
        if len(reasons) == 1:
            out[path] = next(iter(reasons))
        else:
            out[path] = "; ".join(f"{modality}: {reason}" for modality, reason in attempts)
    return out


def _resolve(
    modality: str, task: PrepareTask, cache: FeatureCache, notes: _Notes, dead: set[str]
) -> tuple[dict[str, np.ndarray] | None, str | None, str]:
    """Walk the candidates of one modality, best first.

    Returns (arrays, source, how) where how is "cache", "decoded", "pending"
    (cache-only mode met a miss) or "missing" (no candidate worked).
    """

    def fail(path: str, reason: str) -> None:
        notes.setdefault(path, []).append((modality, reason))
        if reason.startswith(_UNOPENABLE):
            dead.add(path)

    cfg = task.cfg
    if modality == "video":
        settings = video_mod.video_settings(cfg)
    else:
        settings = audio_mod.audio_settings(cfg)
    for path in task.recording.sources(modality):
        if path in dead:
            continue
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            fail(path, f"cannot open: {exc.strerror or exc}")
            continue
        if size == 0:
            fail(path, "zero-byte file")
            continue
        key = None
        if cache.root is not None:
            try:
                key = cache.key(modality, path, settings)
            except OSError as exc:
                fail(path, f"cannot read: {exc.strerror or exc}")
                continue
            entry = cache.load(modality, key)
            if entry is not None and not guards.has_measures(modality, entry):
                entry = None  # written before the guards: decode again, so it is guarded
            if entry is not None:
                if ERROR_FIELD in entry:
                    fail(path, str(entry[ERROR_FIELD]))
                    continue
                return entry, path, "cache"
        if not task.decode:
            return None, None, "pending"
        try:
            if modality == "video":
                arrays = _decode_video(path, cfg, task.threads)
            else:
                arrays = _decode_audio(path, cfg)
        except DecodeError as exc:
            if key is not None:
                cache.store_error(modality, key, str(exc))
            fail(path, str(exc))
            continue
        if key is not None:
            cache.store(modality, key, arrays)
        return arrays, path, "decoded"
    return None, None, "missing"


def prepare_recording(task: PrepareTask) -> Prepared:
    """Features of one recording from the cache, decoding what is missing when allowed.

    Runs in worker processes: failures of single files come back in
    ``Prepared.bad`` for the parent to report, never through a callback.
    """
    start = time.perf_counter()
    remember_digests(task.digests)
    cache = FeatureCache(Path(task.cache_root) if task.cache_root else None)
    result = Prepared(key=task.recording.key)
    notes: _Notes = {}
    dead: set[str] = set()
    sources: list[str] = []
    missing: list[str] = []
    decoded: list[str] = []
    limits = guards.Limits.of(task.cfg)
    suspect: dict[str, list[str]] = {}
    durations: dict[str, float] = {}
    used: dict[str, str] = {}  # modality -> the source it came from
    for modality in ("video", "audio"):
        if modality not in task.cfg.modalities:
            continue
        arrays, source, how = _resolve(modality, task, cache, notes, dead)
        if how == "pending":
            result.pending = True
            continue
        if arrays is None or source is None:
            missing.append(modality)
            continue
        sources.append(source)
        if how == "decoded":
            decoded.append(modality)
        for reason in guards.suspect_reasons(modality, arrays, limits):
            suspect.setdefault(source, []).append(reason)
        durations[modality] = float(arrays["duration_s"])
        used[modality] = source
        if modality == "video":
            result.video = arrays["frames"]
            result.face_found = bool(arrays["face_found"])
            if "detections" in arrays:
                result.face_frames = frames_with_face(
                    int(arrays["detections"]), len(arrays["frames"]), task.cfg.detect_every
                )
        else:
            result.audio = {"logmel": arrays["logmel"], "mfcc": arrays["mfcc"]}
    if len(durations) == 2:
        why = guards.mismatch_reason(durations["video"], durations["audio"])
        if why is not None:  # on the shorter one: a cut file, the likelier culprit
            shorter = min(durations, key=durations.__getitem__)
            suspect.setdefault(used[shorter], []).append(why)
    result.suspect = {path: "; ".join(reasons) for path, reasons in suspect.items()}
    result.bad = _summarize(notes)
    result.sources = tuple(dict.fromkeys(sources))
    result.missing = tuple(missing)
    result.decoded = tuple(decoded)
    result.digests = known_digests(list(task.recording.files))
    result.seconds = time.perf_counter() - start
    return result


def single_threaded_blas() -> contextlib.AbstractContextManager[object]:
    """Limit BLAS to one thread while decoding.

    The mel filterbank products are small: OpenBLAS threads spin more than
    they help (measured: 0.074 s instead of 0.107 s per recording).
    threadpoolctl comes with scikit-learn; without it nothing is limited.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# Held for a worker process's whole life (never exited): see init_worker.
_worker_limits: contextlib.AbstractContextManager[object] | None = None


def init_worker() -> None:
    """Preparation workers already fill every core: keep each library to one thread."""
    import cv2

    global _worker_limits
    cv2.setNumThreads(1)
    face_detectors.limit_threads(1)  # torch, for MTCNN
    _worker_limits = single_threaded_blas()
    _worker_limits.__enter__()
