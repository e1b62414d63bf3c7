"""FI-style image emotion data (design note 003): class folders of JPEGs.

Layout: ``<root>/<class>/<any name>.<jpg|jpeg|png|...>`` with FI's eight
classes as folder names (case-insensitive). The label order is
:data:`FI_CLASSES` (alphabetical), whatever folders exist.

Why it looks like this:

* The reusable core is plain functions with no torch in their signatures:
  :func:`index_fi` (walk the folders, report what is not an image),
  :func:`stratified_split` and :func:`stratified_folds` (per-class shuffles
  from ``split_seed``), :func:`assign_splits` (the config's choice between
  them) and :func:`decode_image`. ``prepare`` / ``describe`` commands can
  use them without building a data module or touching a GPU.
* Splits are stratified: every class keeps its share (the note's 80/10/10 by
  default) in train, val and test, which matters with a 4x imbalance. Each
  class is shuffled from its own seed, so ensemble members with the same
  ``split_seed`` see the same val/test images and prediction keys, and adding
  images to one class never reshuffles another.
* K-fold (``data.folds = k``): the k stratified folds partition the whole
  corpus; fold ``data.fold`` is the *test* split, and ``val_fraction`` of each
  class is carved out of the other folds for early stopping and the best
  checkpoint. Every image is tested exactly once over the k runs, and the
  held-out fold never chooses the checkpoint it is scored with (the note's
  sklearn loop scores the fold that also selects, which flatters the score).
* Every image is decoded once, at setup, and held in memory as uint8 at
  ``image_size`` (the largest size any epoch needs); augmentation and TTA run
  on those tensors. 21,436 FI images at 224 px take 3.2 GB. Decoding runs in
  threads (PIL releases the GIL while decoding and resizing).
* A file that cannot be used (zero bytes, truncated, not an image, or the
  grey "photo unavailable" card an image host serves for a deleted photo) is
  skipped and reported once, with the reason, through ``report_bad``; setup
  fails only when more than ``max_bad_fraction`` of the files are bad.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from trainers.data.base import (
    INFERENCE_FORMAT,
    SPLITS,
    BadInputReporter,
    ProgressReporter,
    SampleInfo,
)
from trainers.data.config import DataError, DecodeError
from trainers.data.guards import CHECK_SIZE, placeholder_reason
from trainers.data.image_augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TTA_CROP,
    TTA_VIEWS,
    EvalViews,
    TrainAugment,
    item_seed,
    key_seed,
)

FI_CLASSES: tuple[str, ...] = (
    "amusement",
    "anger",
    "awe",
    "contentment",
    "disgust",
    "excitement",
    "fear",
    "sadness",
)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
TRAIN, VAL, TEST = 0, 1, 2  # split codes of assign_splits


@dataclass
class ImageDataConfig:
    # Data directory holding one folder per class; set by the CLI's --data.
    root: str = ""
    # Folder layout under root (FI: <class>/<image>).
    layout: Literal["fi"] = "fi"
    # Side of the square images the model sees at evaluation and after progressive resizing.
    image_size: int = 224
    # How an image becomes square: "stretch" as the note's Resize((224, 224)); "crop"
    # scales the short side and centre-crops; "pad" scales the long side and pads black.
    resize: Literal["stretch", "crop", "pad"] = "stretch"
    # Share of each class held out for validation (the note: 2,144 of 21,436).
    val_fraction: float = 0.1
    # Share of each class held out for the final test (ignored when folds > 0).
    test_fraction: float = 0.1
    # Seeds the split only, so runs with other training seeds see the same images.
    split_seed: int = 42
    # Stratified k-fold: k > 1 makes fold `fold` the test split (0 = off).
    folds: int = 0
    fold: int = 0
    # Progressive resizing: train at start_size before epoch resize_epoch, then at
    # image_size (the note: 176 px for epochs 0-30, 224 after). start_size = image_size
    # turns it off.
    start_size: int = 176
    resize_epoch: int = 30
    # The note's augmentation pipeline on the train split (off: resize + normalize).
    augment: bool = True
    # Test-time augmentation on val and test: 8 views per image, probabilities averaged.
    tta: bool = True
    # Decoding threads during setup; 0 means one per CPU core.
    prepare_workers: int = 0
    # Setup fails when more than this share of the image files cannot be used.
    max_bad_fraction: float = 0.5

    def validate(self) -> None:
        """Fail before any decoding starts, naming the field that is wrong."""

        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"data.{name}={getattr(self, name)!r}: {why}")

        if self.layout != "fi":
            raise bad("layout", "only 'fi' (one folder per class) is supported")
        if self.image_size < 16:
            raise bad("image_size", "must be >= 16 pixels")
        if not 16 <= self.start_size <= self.image_size:
            raise bad("start_size", f"must be in 16..image_size ({self.image_size})")
        if self.resize_epoch < 1:
            raise bad("resize_epoch", "must be >= 1 (epochs count from 1)")
        if self.resize not in ("stretch", "crop", "pad"):
            raise bad("resize", "must be 'stretch', 'crop' or 'pad'")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise bad(name, "must be in [0, 1)")
        if self.folds == 0 and self.val_fraction + self.test_fraction >= 1.0:
            raise bad("test_fraction", "val_fraction + test_fraction must leave a training split")
        if self.folds == 1 or self.folds < 0:
            raise bad("folds", "must be 0 (off) or >= 2")
        if self.folds and not 0 <= self.fold < self.folds:
            raise bad("fold", f"must be in 0..{self.folds - 1} (data.folds={self.folds})")
        if self.folds and self.val_fraction + 1.0 / self.folds >= 1.0:
            raise bad("val_fraction", f"with {self.folds} folds it leaves no training split")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise bad("max_bad_fraction", "must be in [0, 1]")
        if self.prepare_workers < 0:
            raise bad("prepare_workers", "must be >= 0 (0 means one per CPU core)")

    def describe_inputs(self) -> str:
        """One line for ``list``-style displays, e.g. "image 3x224x224 (176 before epoch 30)"."""
        s = self.image_size
        text = f"image 3x{s}x{s}"
        if self.start_size != s:
            text += f" ({self.start_size} before epoch {self.resize_epoch})"
        return text + (", 8-view TTA" if self.tta else "")

    def train_size(self, epoch: int) -> int:
        """Side of the training images in ``epoch`` (1-based): progressive resizing."""
        return self.start_size if epoch < self.resize_epoch else self.image_size

    def resolved_workers(self) -> int:
        return self.prepare_workers if self.prepare_workers > 0 else (os.cpu_count() or 1)


# ------------------------------------------------------------------------- the reusable core


@dataclass(frozen=True)
class ImageRecord:
    key: str  # "<class>/<file stem>": stable across runs, hosts and ensemble members
    path: str
    label: int


def index_fi(
    root: str | Path, report_bad: BadInputReporter, classes: Sequence[str] = FI_CLASSES
) -> list[ImageRecord]:
    """Every image file under ``root/<class>/``, sorted by class then file name; or,
    where ``root`` has no class folders, every image directly in it named
    ``<class>_<anything>`` (FI is also shared flat, e.g. ``amusement_0001.jpg``).

    Hidden files are ignored; a file with another extension inside a class folder
    is reported (it is probably a mistake); folders that are no class are ignored.
    In a flat folder, an image whose name starts with no class is reported.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.root={str(root)!r} is not a directory")
    folders = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    records: list[ImageRecord] = []
    if any(c in folders for c in classes):
        for label, name in enumerate(classes):
            folder = folders.get(name)
            if folder is None:
                continue
            for path in sorted(folder.iterdir()):
                if path.name.startswith(".") or not path.is_file():
                    continue
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    report_bad(
                        str(path), f"not an image file (extension {path.suffix or 'none'!r})"
                    )
                    continue
                records.append(ImageRecord(f"{name}/{path.stem}", str(path), label))
    else:
        records = _index_flat(root, report_bad, classes)
        if not records:
            raise DataError(
                f"no class folders under {str(root)!r} and no images named by class: "
                f"expected folders named {', '.join(classes)} (FI layout: "
                "<root>/<class>/<image>.jpg) or files named <class>_<n>.jpg"
            )
    keys = [r.key for r in records]
    if len(set(keys)) != len(keys):  # a.jpg and a.png in one folder
        seen: set[str] = set()
        kept = []
        for r in records:
            if r.key in seen:
                report_bad(r.path, f"skipped: another file in the folder has the key {r.key!r}")
                continue
            seen.add(r.key)
            kept.append(r)
        records = kept
    return records


def _index_flat(
    root: Path, report_bad: BadInputReporter, classes: Sequence[str]
) -> list[ImageRecord]:
    """Images directly in ``root`` whose name starts with a class and ``_``, by class."""
    by_class: dict[int, list[ImageRecord]] = {label: [] for label in range(len(classes))}
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue  # a flat download also holds its licence, CSVs, readme...
        prefix = path.stem.split("_", 1)[0].lower()
        if prefix not in classes:
            report_bad(str(path), f"name starts with no class ({', '.join(classes)})")
            continue
        label = list(classes).index(prefix)
        by_class[label].append(ImageRecord(f"{prefix}/{path.stem}", str(path), label))
    return [r for label in sorted(by_class) for r in by_class[label]]


def _rounded(x: float) -> int:
    return int(np.floor(x + 0.5))  # half up, not Python's half-to-even


def _class_order(labels: np.ndarray, c: int, *salt: int, seed: int) -> np.ndarray:
    idx = np.flatnonzero(labels == c)
    return idx[np.random.default_rng([seed, c, *salt]).permutation(len(idx))]


def stratified_split(
    labels: Sequence[int] | np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """A split code per item (TRAIN, VAL, TEST): each class keeps its shares.

    Per class, ``round(n * test_fraction)`` items go to test and
    ``round(n * val_fraction)`` to val, from a shuffle seeded by ``(seed, class)``;
    a class always keeps at least one training item.
    """
    labels = np.asarray(labels, dtype=np.int64)
    codes = np.full(len(labels), TRAIN, dtype=np.int8)
    for c in np.unique(labels):
        order = _class_order(labels, int(c), 0, seed=seed)
        n = len(order)
        n_test = min(_rounded(n * test_fraction), n - 1)
        n_val = min(_rounded(n * val_fraction), n - 1 - n_test)
        codes[order[:n_test]] = TEST
        codes[order[n_test : n_test + n_val]] = VAL
    return codes


def stratified_folds(labels: Sequence[int] | np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold id per item: k disjoint folds covering everything, each class spread evenly.

    Classes are shuffled (seeded) and dealt round-robin, continuing where the last
    class stopped, so fold sizes differ by at most one overall and per class.
    """
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    labels = np.asarray(labels, dtype=np.int64)
    folds = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        order = _class_order(labels, int(c), 1, seed=seed)
        folds[order] = (offset + np.arange(len(order))) % k
        offset += len(order)
    return folds


def assign_splits(labels: Sequence[int] | np.ndarray, cfg: ImageDataConfig) -> np.ndarray:
    """The split code of every item under ``cfg`` (plain split or fold ``cfg.fold``)."""
    labels = np.asarray(labels, dtype=np.int64)
    if not cfg.folds:
        return stratified_split(labels, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    folds = stratified_folds(labels, cfg.folds, cfg.split_seed)
    codes = np.where(folds == cfg.fold, TEST, TRAIN).astype(np.int8)
    for c in np.unique(labels):
        total = int((labels == c).sum())
        rest = [i for i in _class_order(labels, int(c), 2, cfg.fold, seed=cfg.split_seed)
                if codes[i] == TRAIN]  # fmt: skip
        n_val = min(_rounded(total * cfg.val_fraction), len(rest) - 1)
        codes[rest[: max(n_val, 0)]] = VAL
    return codes


def class_counts(labels: Sequence[int] | np.ndarray, classes: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    return {name: int(n) for name, n in zip(classes, counts, strict=True)}


def imbalance_ratio(counts: dict[str, int]) -> float | None:
    """Largest over smallest non-empty class (the note's 4.08x); None without data."""
    present = [n for n in counts.values() if n > 0]
    return round(max(present) / min(present), 3) if present else None


def decode_image(path: str, size: int, mode: str = "stretch") -> np.ndarray:
    """``path`` as a ``(size, size, 3)`` uint8 RGB array, or :class:`DecodeError` saying why."""
    return _square(open_image(path, size), size, mode)


def decode_photo(path: str, size: int, mode: str = "stretch") -> np.ndarray:
    """:func:`decode_image` for training data: a "photo unavailable" placeholder an image
    host served instead of the photo (:func:`trainers.data.guards.placeholder_reason`) is
    a :class:`DecodeError` too, so it is listed in bad_inputs.jsonl, never trained on."""
    im = open_image(path, size)
    # The whole picture (before any crop or padding), as a thumbnail: costs nothing.
    reason = placeholder_reason(np.asarray(im.resize((CHECK_SIZE, CHECK_SIZE))))
    if reason is not None:
        raise DecodeError(reason)
    return _square(im, size, mode)


def open_image(path: str, size: int) -> Image.Image:
    """``path`` decoded as an upright RGB picture, at least ``size`` on its short side
    where the file allows; :class:`DecodeError` says why not."""
    try:
        nbytes = os.path.getsize(path)
    except OSError as exc:
        raise DecodeError(f"cannot read: {exc.strerror or exc}") from None
    if nbytes == 0:
        raise DecodeError("empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            # JPEGs decode at a reduced DCT scale when that still covers size x size:
            # several times faster for photographs much larger than the model's input.
            im.draft("RGB", (size, size))
            im.load()  # decodes now: a truncated file fails here, not in training
            im = ImageOps.exif_transpose(im).convert("RGB")
    except UnidentifiedImageError:
        raise DecodeError(f"not a readable image ({nbytes} bytes; unknown format)") from None
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"refused: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(f"truncated or corrupt image: {exc}") from None
    return im


def _square(im: Image.Image, size: int, mode: str) -> np.ndarray:
    w, h = im.size
    if mode == "stretch":
        out = im.resize((size, size), Image.Resampling.BILINEAR)
    elif mode == "crop":
        scale = size / min(w, h)
        im = im.resize(
            (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR
        )
        left, top = (im.width - size) // 2, (im.height - size) // 2
        out = im.crop((left, top, left + size, top + size))
    elif mode == "pad":
        scale = size / max(w, h)
        im = im.resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
        )
        out = Image.new("RGB", (size, size))
        out.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    return np.asarray(out, dtype=np.uint8)


# ------------------------------------------------------------------------------ data sets


class ImageTrainSet(Dataset):
    """Augmented training images; the draws are a function of (seed, epoch, index)."""

    def __init__(
        self,
        images: torch.Tensor,
        rows: np.ndarray,
        labels: np.ndarray,
        cfg: ImageDataConfig,
        seed: int,
    ) -> None:
        self.images = images  # every image of the corpus; rows picks this split's
        self.rows = rows
        self.item_labels = labels  # for train.sampler=weighted
        self.cfg = cfg
        self.seed = seed
        self.epoch = 1
        self.augment = TrainAugment(cfg.augment)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def size(self) -> int:
        return self.cfg.train_size(self.epoch)

    def __len__(self) -> int:
        return len(self.item_labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seed = item_seed(self.seed, self.epoch, index)
        image = self.augment(self.images[int(self.rows[index])], self.size, seed)
        return {"image": image, "label": int(self.item_labels[index]), "index": index}


class ImageEvalSet(Dataset):
    """Validation/test images; with TTA, 8 rows per image sharing ``"sample"``."""

    def __init__(
        self,
        images: torch.Tensor,
        rows: np.ndarray,
        labels: np.ndarray,
        keys: Sequence[str],
        size: int,
        tta: bool,
    ) -> None:
        self.images = images  # every image of the corpus; rows picks this split's
        self.rows = rows
        self.labels = labels
        self.keys = list(keys)
        self.views = EvalViews(size)
        self.tta = tta
        self.per_sample = len(TTA_VIEWS) if tta else 1

    def __len__(self) -> int:
        return len(self.labels) * self.per_sample

    def __getitem__(self, row: int) -> dict[str, Any]:
        index, view = divmod(row, self.per_sample)
        image = self.images[int(self.rows[index])]
        item: dict[str, Any] = {"label": int(self.labels[index]), "index": index}
        if self.tta:
            item["image"] = self.views.view(image, view, key_seed(self.keys[index]))
            item["sample"] = index
        else:
            item["image"] = self.views.plain(image)
        return item


def collate_images(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    batch = {
        "image": torch.stack([item["image"] for item in items]),
        "label": torch.tensor([int(item["label"]) for item in items], dtype=torch.long),
        "index": torch.tensor([int(item["index"]) for item in items], dtype=torch.long),
    }
    if "sample" in items[0]:  # several rows per image (TTA): averaged by the engine
        batch["sample"] = torch.tensor([int(item["sample"]) for item in items], dtype=torch.long)
    return batch


# ---------------------------------------------------------------------------- data module


@dataclass
class _Split:
    rows: np.ndarray  # into the module's image tensor
    samples: list[SampleInfo]
    labels: np.ndarray


class FIDataModule:
    """FI class folders as in-memory uint8 images (see the module docstring).

    ``seed`` is the run's seed (augmentation draws); the split uses
    ``cfg.split_seed`` only.
    """

    def __init__(self, cfg: ImageDataConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.seed = seed
        self.classes = list(FI_CLASSES)
        self.images: torch.Tensor | None = None
        self._splits: dict[str, _Split] | None = None
        self._stats: dict[str, Any] = {}

    def setup(self, report_bad: BadInputReporter, progress: ProgressReporter | None = None) -> None:
        cfg = self.cfg
        cfg.validate()
        if not cfg.root:
            raise DataError("data.root is empty: pass --data <directory with one folder per class>")
        started = time.perf_counter()
        bad: list[str] = []

        def report(path: str, reason: str) -> None:
            bad.append(path)
            report_bad(path, reason)

        records = index_fi(cfg.root, report)
        if not records:
            raise DataError(f"no image files in the class folders under {cfg.root!r}")
        results = self._decode(records, progress)
        kept: list[int] = []
        arrays: list[np.ndarray] = []
        for i, (rec, result) in enumerate(zip(records, results, strict=True)):
            if isinstance(result, str):  # reported in file order, not completion order
                report(rec.path, result)
            else:
                kept.append(i)
                arrays.append(result)
        if len(records) - len(kept) > cfg.max_bad_fraction * len(records) or not kept:
            raise DataError(
                f"{len(records) - len(kept)} of {len(records)} images under {cfg.root!r} cannot "
                f"be used (allowed: data.max_bad_fraction={cfg.max_bad_fraction}); the files "
                "and reasons were reported to bad_inputs"
            )
        good = [records[i] for i in kept]
        # (N, S, S, 3) -> (N, 3, S, S): the layout torchvision transforms take.
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        labels = np.array([r.label for r in good], dtype=np.int64)
        codes = assign_splits(labels, cfg)
        self.images = images
        self._splits = {}
        for code, split in enumerate(SPLITS):
            rows = np.flatnonzero(codes == code)
            self._splits[split] = _Split(
                rows=rows,
                samples=[
                    SampleInfo(good[r].key, int(labels[r]), "", (good[r].path,)) for r in rows
                ],
                labels=labels[rows],
            )
        self._stats = {
            "image_files": len(records),
            "images": len(good),
            "bad_inputs": len(bad),
            "setup_seconds": round(time.perf_counter() - started, 3),
        }

    def _decode(
        self, records: list[ImageRecord], progress: ProgressReporter | None
    ) -> list[np.ndarray | str]:
        cfg = self.cfg
        total = len(records)

        def one(rec: ImageRecord) -> np.ndarray | str:
            try:
                return decode_photo(rec.path, cfg.image_size, cfg.resize)
            except DecodeError as exc:
                return str(exc)

        out: list[np.ndarray | str] = []
        with ThreadPoolExecutor(max_workers=min(cfg.resolved_workers(), total)) as pool:
            for result in pool.map(one, records):
                out.append(result)
                if progress is not None:
                    progress(len(out), total, "decoding images")
        return out

    def _split(self, split: str) -> _Split:
        if self._splits is None:
            raise RuntimeError("FIDataModule.setup() must run before the splits are used")
        if split not in self._splits:
            raise KeyError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self._splits[split]

    def dataset(self, split: str) -> Dataset:
        data = self._split(split)
        assert self.images is not None
        # Views of the one image tensor, never copies: eval sets are rebuilt every epoch.
        if split == "train":
            return ImageTrainSet(self.images, data.rows, data.labels, self.cfg, self.seed)
        keys = [s.key for s in data.samples]
        return ImageEvalSet(
            self.images, data.rows, data.labels, keys, self.cfg.image_size, self.cfg.tta
        )

    def samples(self, split: str) -> list[SampleInfo]:
        return self._split(split).samples

    def labels(self, split: str) -> np.ndarray:
        return self._split(split).labels

    @staticmethod
    def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_images(items)

    def memory_bytes(self) -> int:
        return 0 if self.images is None else self.images.numel()

    def describe(self) -> dict[str, Any]:
        # Here, not at the top: the generator package is a heavy import for workers.
        from trainers.data.synth.manifest import is_generated

        cfg = self.cfg
        splits = {}
        all_labels = []
        for split in SPLITS:
            data = self._split(split)
            all_labels.append(data.labels)
            splits[split] = {
                "samples": len(data.labels),
                "per_class": class_counts(data.labels, self.classes),
            }
        per_class = class_counts(np.concatenate(all_labels), self.classes)
        return {
            "dataset": "fi",
            "root": cfg.root,
            "generated": is_generated(cfg.root),
            "classes": list(self.classes),
            "per_class": per_class,
            "imbalance_ratio": imbalance_ratio(per_class),
            "split_seed": cfg.split_seed,
            "folds": cfg.folds,
            "fold": cfg.fold if cfg.folds else None,
            "splits": splits,
            "image_size": cfg.image_size,
            "progressive": {"start_size": cfg.start_size, "from_epoch": cfg.resize_epoch}
            if cfg.start_size != cfg.image_size
            else None,
            "augment": cfg.augment,
            "tta_views": len(TTA_VIEWS) if cfg.tta else 1,
            **self._stats,
            "memory_mb": round(self.memory_bytes() / 2**20, 1),
        }

    def inference_state(self) -> dict[str, Any]:
        """Decoding, normalisation and the TTA views (nothing is fitted on the data)."""
        cfg = self.cfg
        pre = {
            "kind": "image",
            "layout": cfg.layout,
            "image_size": cfg.image_size,
            "resize": cfg.resize,
            "channels": 3,
            "normalize": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "tta": {
                "views": list(TTA_VIEWS) if cfg.tta else ["original"],
                "crop": TTA_CROP,
                # The jitter and crop views are seeded from the image's key.
                "seed": "crc32 of '<class folder>/<file stem>'",
                "average": "probabilities",
            },
        }
        return {"format": INFERENCE_FORMAT, "preprocessing": pre, "fitted": {}}


def fi_data_module(cfg: Any) -> FIDataModule:
    """The registry's ``data`` hook for every image model (cfg.data is an ImageDataConfig)."""
    return FIDataModule(cfg.data, seed=cfg.train.seed)
