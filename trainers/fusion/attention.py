"""``attention-fusion`` (note 000, "Next Steps" 3-5): cross-modal attention
trained on two finished runs' embeddings.

The note's plan: train the visual model, train the audio branch, "create the
joint embedding dataset", "implement cross-modal attention fusion", "train
the fusion model". Here that is an ordinary registry entry trained by the one
engine; only its data is unusual:

* :class:`FusionDataConfig` names two finished run directories
  (``data.runs``). Setup rebuilds each run's model from its run.json (as
  ``resume`` does), loads checkpoints/best.pt and runs ``forward_features``
  over train, val and test of the run's own data module, in eval mode. Rows
  are matched by sample key; the pair of embedding tables is cached under the
  feature cache, keyed by the checkpoints' bytes and the data settings, so a
  second run (or a resume) skips the extraction.
* :class:`AttentionFusionModel` projects each embedding to ``tokens`` tokens of
  width ``d_model``; each modality attends to the other
  (``nn.MultiheadAttention``, residual, LayerNorm); the two pooled streams are
  weighed by a learned gate (as hybrid-attention weighs its modalities) and
  classified.

Caveat, said here rather than hidden: the source models were trained on the
train split, so its embeddings are cleaner than val/test ones and the fusion
model can over-trust them; early stopping on validation is what guards
against it (cross-fitted sources would be the principled fix).

The note gives no numbers for the fusion stage. AdamW, label smoothing, the
one-cycle schedule and patience 12 are its recipe for the visual model; the
widths, lr 1e-3, batch 32 and the epoch cap are ours.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainers.config import ExperimentConfig, TrainConfig
from trainers.data.base import SPLITS, BadInputReporter, ProgressReporter, SampleInfo
from trainers.data.config import DataError
from trainers.fusion.runs import FusionError, SplitEmbeddings, extract_embeddings
from trainers.registry import register_model

SEED_NOTE = "000_2c0d303d2709a941.txt"
# Sizes the model for `list` and `config` when no runs are named: hybrid-attention's
# embedding (2 x d_model = 256) twice. A real run always reads the sources' widths.
NOMINAL_DIMS = (256, 256)
CACHE_VERSION = 1


@dataclass
class FusionDataConfig:
    # The two finished run directories whose embeddings are fused (e.g. visual, audio).
    runs: tuple[str, ...] = ()
    # Replaces each source run's data.root when set (the data set moved); empty = theirs.
    root: str = ""
    # Embedding cache; empty means $EMOCONSOLE_CACHE, else ~/.cache/emoconsole/features.
    cache_dir: str = ""

    def validate(self) -> None:
        """Two existing, finished runs; paths made absolute so run.json works from anywhere."""
        if not self.runs:
            return  # the default config (for `config`, `list`); `train` asks missing_inputs()
        if len(self.runs) != 2:
            raise ValueError(
                f"data.runs={self.runs!r}: attention fusion takes exactly two run directories"
            )
        resolved = []
        for run in self.runs:
            path = Path(run).expanduser().resolve()
            if not (path / "run.json").is_file():
                raise ValueError(f"data.runs: {run} is not a run directory (no run.json)")
            if not (path / "checkpoints" / "best.pt").is_file():
                raise ValueError(
                    f"data.runs: {run} has no checkpoints/best.pt (did it finish an epoch?)"
                )
            resolved.append(str(path))
        if resolved[0] == resolved[1]:
            raise ValueError(f"data.runs: the same run is given twice ({resolved[0]})")
        self.runs = tuple(resolved)

    def missing_inputs(self) -> str | None:
        """What `train` still needs before it may create a run directory."""
        if len(self.runs) != 2:
            return (
                "data.runs: name the two finished run directories to fuse, e.g. "
                "--set data.runs=runs/<visual-run>,runs/<audio-run> "
                "(or `python -m trainers fuse attention-fusion RUN_A RUN_B`)"
            )
        return None

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        env = os.environ.get("EMOCONSOLE_CACHE")
        if env:
            return Path(env).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "emoconsole" / "features"


@dataclass
class AttentionFusionParams:
    d_model: int = 128
    tokens: int = 4  # tokens each embedding is projected to (attention over 1 token is a no-op)
    heads: int = 4
    attn_dropout: float = 0.1
    input_dropout: float = 0.1  # on the frozen embeddings, against over-trusting train ones
    dropout: float = 0.3  # classifier head
    # Widths of the two embeddings; empty = read from the extracted embeddings.
    input_dims: tuple[int, ...] = ()

    def validate(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by heads={self.heads}")
        if self.tokens < 1:
            raise ValueError(f"tokens: must be >= 1, got {self.tokens}")
        if self.input_dims and (len(self.input_dims) != 2 or min(self.input_dims) < 1):
            raise ValueError(f"input_dims: two positive widths or empty, got {self.input_dims}")


def _train_defaults() -> TrainConfig:
    return TrainConfig(
        epochs=50,
        batch_size=32,
        lr=1e-3,
        optimizer="adamw",
        weight_decay=1e-2,
        scheduler="onecycle",
        loss="ce",
        label_smoothing=0.1,
        class_weights="inverse",
        patience=12,
        monitor="accuracy",
    )


@dataclass
class AttentionFusionConfig(ExperimentConfig):
    model: AttentionFusionParams = field(default_factory=AttentionFusionParams)
    train: TrainConfig = field(default_factory=_train_defaults)
    data: FusionDataConfig = field(default_factory=FusionDataConfig)


# --------------------------------------------------------------------------------- the data


class EmbeddingPairs:
    """One split's rows: ``{"a": (Da,), "b": (Db,), "label", "index"}``."""

    def __init__(self, a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> None:
        self.a, self.b, self.labels = a, b, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        label = int(self.labels[index])
        return {"a": self.a[index], "b": self.b[index], "label": label, "index": index}


def collate_pairs(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {
        "a": torch.from_numpy(np.stack([it["a"] for it in items])),
        "b": torch.from_numpy(np.stack([it["b"] for it in items])),
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
    }


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str:
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[memo] = h.hexdigest()
    return _DIGESTS[memo]


def embedding_cache_path(cfg: AttentionFusionConfig) -> Path:
    """Same sources (checkpoint bytes, data settings) and root -> same file."""
    parts: list[Any] = [CACHE_VERSION, cfg.data.root]
    for run in cfg.data.runs:
        path = Path(run)
        manifest = json.loads((path / "run.json").read_text(encoding="utf-8"))
        parts += [_file_digest(path / "checkpoints" / "best.pt"), manifest.get("config", {})]
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return cfg.data.resolved_cache_dir() / "fusion" / f"{key[:32]}.npz"


class FusionEmbeddingDataModule:
    """The joint embedding data set of two finished runs (see the module docstring)."""

    def __init__(self, cfg: AttentionFusionConfig) -> None:
        self.cfg = cfg
        self.classes: list[str] = []
        self.dims: tuple[int, int] = (0, 0)
        self._splits: dict[str, dict[str, Any]] = {}
        self._info: dict[str, Any] = {}

    def setup(self, report_bad: BadInputReporter, progress: ProgressReporter | None = None) -> None:
        problem = self.cfg.data.missing_inputs()
        if problem:
            raise DataError(problem)
        t0 = time.perf_counter()
        path = embedding_cache_path(self.cfg)
        cached = path.exists()
        if not cached:
            self._extract(path, report_bad, progress)
        self._load(path)
        self._info = {
            "cache": str(path),
            "from_cache": cached,
            "setup_seconds": round(time.perf_counter() - t0, 3),
        }

    def _extract(
        self, path: Path, report_bad: BadInputReporter, progress: ProgressReporter | None
    ) -> None:
        from trainers.engine.trainer import pick_device

        device = pick_device(self.cfg.train.device)
        tables: list[dict[str, SplitEmbeddings]] = []
        classes: list[list[str]] = []
        for run in self.cfg.data.runs:
            name = Path(run).name

            def source_progress(done: int, total: int, what: str, name: str = name) -> None:
                if progress:
                    progress(done, total, f"source {name}: {what}")

            source_progress(0, 1, "setting up its data")
            try:
                run_classes, table = extract_embeddings(
                    run, self.cfg.data.root, device, report_bad, source_progress
                )
            except FusionError as exc:
                raise DataError(str(exc)) from None
            classes.append(run_classes)
            tables.append(table)
        if classes[0] != classes[1]:
            raise DataError(
                f"the runs predict different classes: {self.cfg.data.runs[0]} has {classes[0]}, "
                f"{self.cfg.data.runs[1]} has {classes[1]}"
            )
        arrays: dict[str, np.ndarray] = {"classes": np.array(classes[0])}
        for split in SPLITS:
            a, b = tables[0][split], tables[1][split]
            try:
                _check_same_samples(split, a, b, self.cfg.data.runs)
            except FusionError as exc:
                raise DataError(str(exc)) from None
            order = {key: i for i, key in enumerate(b.keys)}
            rows_b = np.array([order[key] for key in a.keys], dtype=np.int64)
            arrays[f"{split}_keys"] = np.array(a.keys)
            arrays[f"{split}_actors"] = np.array(a.actors)
            arrays[f"{split}_labels"] = a.labels
            arrays[f"{split}_a"] = a.features
            arrays[f"{split}_b"] = b.features[rows_b] if len(rows_b) else b.features
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    def _load(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as npz:
            self.classes = [str(c) for c in npz["classes"]]
            self._splits = {
                split: {
                    "keys": [str(k) for k in npz[f"{split}_keys"]],
                    "actors": [str(k) for k in npz[f"{split}_actors"]],
                    "labels": npz[f"{split}_labels"].astype(np.int64),
                    "a": npz[f"{split}_a"].astype(np.float32),
                    "b": npz[f"{split}_b"].astype(np.float32),
                }
                for split in SPLITS
            }
        self.dims = (self._splits["train"]["a"].shape[1], self._splits["train"]["b"].shape[1])

    def dataset(self, split: str) -> EmbeddingPairs:
        s = self._split(split)
        return EmbeddingPairs(s["a"], s["b"], s["labels"])

    def samples(self, split: str) -> list[SampleInfo]:
        s = self._split(split)
        return [
            SampleInfo(key=k, label=int(y), actor=a, sources=tuple(self.cfg.data.runs))
            for k, y, a in zip(s["keys"], s["labels"], s["actors"], strict=True)
        ]

    def labels(self, split: str) -> np.ndarray:
        return self._split(split)["labels"].copy()

    collate = staticmethod(collate_pairs)

    def _split(self, split: str) -> dict[str, Any]:
        if not self._splits:
            raise RuntimeError("FusionEmbeddingDataModule.setup() has not been called")
        return self._splits[split]

    def describe(self) -> dict[str, Any]:
        splits = {}
        for split in SPLITS:
            labels = self._split(split)["labels"]
            counts = np.bincount(labels, minlength=len(self.classes))
            splits[split] = {
                "samples": len(labels),
                "per_class": {name: int(n) for name, n in zip(self.classes, counts, strict=True)},
            }
        return {
            "dataset": "embeddings of two runs",
            "runs": list(self.cfg.data.runs),
            "classes": self.classes,
            "dims": list(self.dims),
            "splits": splits,
            **self._info,
        }


def _check_same_samples(
    split: str, a: SplitEmbeddings, b: SplitEmbeddings, runs: tuple[str, ...]
) -> None:
    from trainers.fusion.runs import check_keys

    check_keys(split, list(runs), [a.keys, b.keys])
    if len(set(a.keys)) != len(a.keys):
        raise FusionError(f"{runs[0]}: the {split} split repeats sample keys")
    labels_b = dict(zip(b.keys, b.labels.tolist(), strict=True))
    bad = [k for k, y in zip(a.keys, a.labels.tolist(), strict=True) if labels_b[k] != y]
    if bad:
        raise FusionError(
            f"{len(bad)} {split} sample(s) carry different labels in the two runs "
            f"(e.g. {', '.join(bad[:5])}): not the same data set"
        )


# -------------------------------------------------------------------------------- the model


class AttentionFusionModel(nn.Module):
    """Each modality's tokens attend to the other's; gated pooling; classifier."""

    def __init__(self, p: AttentionFusionParams, dims: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.tokens, self.d_model = p.tokens, p.d_model
        self.project = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(dim), nn.Dropout(p.input_dropout), nn.Linear(dim, p.tokens * p.d_model)
            )
            for dim in dims
        )
        # Which modality and token a vector is: without it both streams look alike to attention.
        # Drawn before wrapping: normal_ on a Parameter under torch.device("meta") (how
        # `list` counts parameters) detours through torch._refs and costs seconds.
        self.position = nn.Parameter(torch.randn(2, p.tokens, p.d_model) * 0.02)
        self.attend = nn.ModuleList(
            nn.MultiheadAttention(p.d_model, p.heads, dropout=p.attn_dropout, batch_first=True)
            for _ in range(2)
        )
        self.norm = nn.ModuleList(nn.LayerNorm(p.d_model) for _ in range(2))
        self.gate = nn.Linear(2 * p.d_model, 2)
        self.head = nn.Sequential(
            nn.Linear(2 * p.d_model, p.d_model),
            nn.ReLU(inplace=True),
            nn.Dropout(p.dropout),
            nn.Linear(p.d_model, num_classes),
        )

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, 2 * d_model)``: both attended streams, weighted by the gate."""
        streams = [
            proj(batch[key]).view(-1, self.tokens, self.d_model) + self.position[i]
            for i, (key, proj) in enumerate(zip(("a", "b"), self.project, strict=True))
        ]
        attended = []
        for i in range(2):
            query, context = streams[i], streams[1 - i]
            out, _ = self.attend[i](query, context, context, need_weights=False)
            attended.append(self.norm[i](query + out).mean(dim=1))
        weights = torch.softmax(self.gate(torch.cat(attended, dim=-1)), dim=-1)
        return torch.cat([attended[0] * weights[:, :1], attended[1] * weights[:, 1:]], dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.forward_features(batch))


def input_dims(cfg: AttentionFusionConfig) -> tuple[int, ...]:
    """The embedding widths: configured, else from the extracted embeddings.

    The engine sets the data module up before it builds the model, so for a
    training run the cache file exists by now.
    """
    if cfg.model.input_dims:
        return tuple(cfg.model.input_dims)
    if not cfg.data.runs:
        return NOMINAL_DIMS
    path = embedding_cache_path(cfg)
    if not path.exists():
        raise FusionError(
            f"attention-fusion: no extracted embeddings at {path}; set up the data module "
            "first (the engine does), or give model.input_dims"
        )
    with np.load(path, allow_pickle=False) as npz:
        return (int(npz["train_a"].shape[1]), int(npz["train_b"].shape[1]))


def _data(cfg: AttentionFusionConfig) -> FusionEmbeddingDataModule:
    return FusionEmbeddingDataModule(cfg)


@register_model(
    "attention-fusion",
    config=AttentionFusionConfig,
    data=_data,
    description="cross-modal attention over two finished runs' embeddings (note 000 fusion)",
    seed_note=SEED_NOTE,
    inputs="embeddings of two run directories (data.runs: forward_features of best.pt)",
)
def build_attention_fusion(cfg: AttentionFusionConfig, num_classes: int) -> AttentionFusionModel:
    return AttentionFusionModel(cfg.model, input_dims(cfg), num_classes)
