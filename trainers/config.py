"""Typed experiment configs with ``key=value`` and TOML overrides.

Each model ships one dataclass whose defaults are its design note's numbers
(torchtune's habit: no global config tree). A config is sections of plain
dataclasses (``model``, ``train``, ``data``); every leaf is addressed as
``section.field``. Overrides are checked against the field's annotation so a
typo or a bad value stops the CLI (exit 2) *before* anything is created,
naming the key and what would have been accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

# SAVED_DEFAULT, field metadata (what a config saved before the field existed meant), is
# defined beside DataConfig, which uses it, and re-exported here for the model configs.
from trainers.data.config import SAVED_DEFAULT as SAVED_DEFAULT
from trainers.data.config import DataConfig
from trainers.engine.weights import NAMES as PRETRAINED_NAMES  # stdlib only


class ConfigError(ValueError):
    """A config key or value that cannot be used; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message if message.startswith(key) else f"{key}: {message}")
        self.key = key


@dataclass
class TrainConfig:
    """Engine settings shared by every model; a model's config overrides defaults."""

    epochs: int = 50
    batch_size: int = 24
    lr: float = 5e-4
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0
    # Stepped per optimizer step (onecycle, cosine) or per epoch on the monitor (plateau).
    scheduler: Literal["none", "onecycle", "cosine", "plateau"] = "plateau"
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    onecycle_pct_start: float = 0.1  # warm-up share of the one-cycle schedule
    # One-cycle starts at lr / div_factor and ends at that / final_div_factor (torch's names).
    onecycle_div_factor: float = 25.0
    onecycle_final_div_factor: float = 1e4
    min_lr: float = 1e-6
    loss: Literal["ce", "focal"] = "focal"
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    focal_alpha: float | None = None  # scalar focal alpha (RetinaNet style), None = off
    class_weights: Literal["none", "inverse", "inverse_sqrt", "balanced"] = "inverse"
    grad_accum: int = 1  # micro-batches per optimizer step
    clip_grad_norm: float = 0.0  # 0 disables clipping
    # auto: bf16 where the GPU supports it, else fp16 with a grad scaler; never on CPU.
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    monitor: Literal["loss", "accuracy", "macro_f1", "weighted_f1", "uar"] = "accuracy"
    patience: int = 10  # early stopping: epochs without improvement of `monitor`
    min_epochs: int = 0  # early stopping never fires before this many epochs
    min_delta: float = 0.0  # an improvement smaller than this does not count
    seed: int = 42
    num_workers: int = 0  # the data sits in memory after setup; workers rarely pay off
    log_every: int = 1  # write a step event every N optimizer steps
    # Per-layer-group gradient norms (the model's top-level modules) in the step events of
    # every N-th optimizer step; 0 = off. A multiple of log_every, so those steps are logged.
    log_grad_norms_every: int = 0
    # Validation samples (fixed by train.seed) whose predictions each epoch's `samples`
    # event shows, with a picture of each in samples/; 0 = off.
    sample_predictions: int = 8
    threads: int = 0  # torch.set_num_threads; 0 keeps torch's default
    deterministic: bool = False  # torch.use_deterministic_algorithms
    # "weighted": draw each epoch's samples with replacement, weight 1/count of their class.
    sampler: Literal["shuffle", "weighted"] = "shuffle"
    # Weights loaded into the model before training: a local state dict, hub:<file> (a
    # file in torch hub's cache), or a name the model knows (imagenet, kinetics400:
    # downloaded into torch hub's cache on first use; trainers.engine.weights).
    pretrained: str = ""
    # Under torchrun: BatchNorm statistics over the global batch instead of each rank's.
    sync_bn: bool = False

    def validate(self) -> None:
        positive = ("epochs", "batch_size", "grad_accum", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}", f"must be >= 1, got {getattr(self, name)}")
        for name in ("log_grad_norms_every", "sample_predictions"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}", f"must be >= 0, got {getattr(self, name)}")
        if self.log_grad_norms_every % self.log_every:
            raise ConfigError(
                "train.log_grad_norms_every",
                f"must be a multiple of train.log_every ({self.log_every}), got "
                f"{self.log_grad_norms_every}: only steps that write a step event can carry them",
            )
        if self.lr <= 0:
            raise ConfigError("train.lr", f"must be > 0, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(
                "train.label_smoothing", f"must be in [0, 1), got {self.label_smoothing}"
            )
        if self.focal_gamma < 0:
            raise ConfigError("train.focal_gamma", f"must be >= 0, got {self.focal_gamma}")
        if not 0.0 < self.onecycle_pct_start < 1.0:
            raise ConfigError("train.onecycle_pct_start", "must be in (0, 1)")
        for name in ("onecycle_div_factor", "onecycle_final_div_factor"):
            if getattr(self, name) < 1.0:
                raise ConfigError(f"train.{name}", f"must be >= 1, got {getattr(self, name)}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(
                "train.device", f"expected auto, cpu, cuda or cuda:N, got {self.device!r}"
            )
        if self.pretrained and self.pretrained not in PRETRAINED_NAMES:
            # Checked here, not when the model is built: a missing file must stop the CLI
            # (exit 2) before a run directory exists. Imports torch only when set. Named
            # sources (imagenet...) depend on the model: validate() checks them.
            from trainers.engine.pretrained import PretrainedError, missing_file_message

            try:
                problem = missing_file_message(self.pretrained)
            except PretrainedError as exc:
                raise ConfigError("train.pretrained", str(exc)) from None
            if problem:
                raise ConfigError("train.pretrained", problem)


@dataclass
class TrackConfig:
    """Optional experiment trackers beside TensorBoard (trainers.engine.trackers).

    Off by default: a run needs nothing online. Each tracker is an extra
    (``emoconsole[wandb]``, ``emoconsole[mlflow]``) imported only when enabled.
    validate() checks values only: whether the package imports is asked where a
    run starts (``trainers.engine.trackers.check_trackers``), not where a saved
    config is read back to predict or export on a machine without the tracker.
    """

    wandb: bool = False
    wandb_project: str = "emoconsole"
    wandb_entity: str = ""  # empty: the API key's default entity
    # offline: the W&B run is written under the run directory (wandb/), `wandb sync` later.
    wandb_mode: Literal["online", "offline"] = "online"
    # An MLflow tracking URI (http(s)://host:port, file:DIR, sqlite:///DB...); empty = off.
    mlflow_uri: str = ""
    mlflow_experiment: str = "emoconsole"

    def validate(self) -> None:
        if self.wandb and not self.wandb_project.strip():
            raise ConfigError("track.wandb_project", "must not be empty when track.wandb=true")
        if self.mlflow_uri and not self.mlflow_experiment.strip():
            raise ConfigError("track.mlflow_experiment", "must not be empty with track.mlflow_uri")
        from trainers.engine.trackers.packages import uri_problem

        problem = uri_problem(self.mlflow_uri)
        if problem:
            raise ConfigError("track.mlflow_uri", problem)


@dataclass
class ExperimentConfig:
    """Base of every model's config: sections ``model``, ``train``, ``data``, ``track``."""

    model: Any = None
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    # The names train.pretrained may take for this model -> their published file
    # (trainers.engine.weights.WeightSource). Not a field: no config key sets it.
    pretrained_sources: ClassVar[Mapping[str, Any]] = {}


def sections(cfg: Any) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if is_dataclass(getattr(cfg, f.name))}


def all_keys(cfg: Any) -> list[str]:
    return [f"{name}.{f.name}" for name, sec in sections(cfg).items() for f in fields(sec)]


def _resolve_key(cfg: Any, key: str) -> tuple[Any, dataclasses.Field[Any], str]:
    keys = all_keys(cfg)
    if "." not in key:
        # A bare field name is accepted when exactly one section has it.
        matches = [k for k in keys if k.split(".", 1)[1] == key]
        if len(matches) == 1:
            key = matches[0]
        elif len(matches) > 1:
            raise ConfigError(key, f"ambiguous; did you mean {' or '.join(matches)}?")
    if key not in keys:
        close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        sec_names = ", ".join(sections(cfg))
        raise ConfigError(key, f"unknown config key (sections: {sec_names}){hint}")
    sec_name, leaf = key.split(".", 1)
    section = getattr(cfg, sec_name)
    fld = next(f for f in fields(section) if f.name == leaf)
    return section, fld, key


def full_key(cfg: Any, key: str) -> str:
    """``key`` as ``section.field`` (a bare field name is accepted when unambiguous);
    ConfigError names an unknown or ambiguous key."""
    return _resolve_key(cfg, key)[2]


def _hints(section: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(section))


def _describe_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a comma-separated list"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def coerce(key: str, tp: Any, value: Any) -> Any:
    """Turn a string (from --set) or a TOML value into ``tp``, or raise naming ``key``."""
    origin = typing.get_origin(tp)
    expected = f"bad value {value!r}: expected {_describe_type(tp)}"
    bad = ConfigError(key, expected)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or str(value).lower() in ("none", "null")):
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(key, arg, value)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            if value == choice or str(value) == str(choice):
                return choice
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
        if close:
            raise ConfigError(key, f"{expected}; did you mean {close[0]!r}?")
        raise bad
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise bad
        inner = typing.get_args(tp)[0]
        return tuple(
            coerce(key, inner, item.strip() if isinstance(item, str) else item) for item in items
        )
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        try:
            return int(str(value))
        except ValueError:
            raise bad from None
    if tp is float:
        if isinstance(value, bool):
            raise bad
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise ConfigError(key, f"unsupported field type {tp!r}")


def set_value(cfg: Any, key: str, value: Any) -> None:
    section, fld, full_key = _resolve_key(cfg, key)
    setattr(section, fld.name, coerce(full_key, _hints(section)[fld.name], value))


def parse_assignment(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(text, "expected key=value, e.g. train.lr=1e-3")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(path), "config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def apply_saved(cfg: Any, tree: Mapping[str, Any], source: str = "") -> None:
    """``apply_mapping`` for a config a run saved: keys it lacks take their SAVED_DEFAULT."""
    apply_mapping(cfg, tree, source)
    present = flatten(tree)
    for name, section in sections(cfg).items():
        if name not in tree:
            continue
        for f in fields(section):
            if SAVED_DEFAULT in f.metadata and f"{name}.{f.name}" not in present:
                setattr(section, f.name, f.metadata[SAVED_DEFAULT])


def apply_mapping(cfg: Any, tree: Mapping[str, Any], source: str = "") -> None:
    for key, value in flatten(tree).items():
        try:
            set_value(cfg, key, value)
        except ConfigError as exc:
            if source:
                raise ConfigError(
                    exc.key, f"{exc.args[0].split(': ', 1)[1]} (in {source})"
                ) from None
            raise


def validate(cfg: Any) -> None:
    for name, section in sections(cfg).items():
        check = getattr(section, "validate", None)
        if check is None:
            continue
        try:
            check()
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(_key_in(name, section, str(exc)), str(exc)) from None
    train = getattr(cfg, "train", None)
    spec = getattr(train, "pretrained", "")
    if spec in PRETRAINED_NAMES:
        known = getattr(type(cfg), "pretrained_sources", {})
        if spec not in known:
            names = ", ".join(sorted(known)) or "none"
            raise ConfigError(
                "train.pretrained",
                f"{spec!r} is not a named source of this model ({type(cfg).__name__}); its "
                f"named sources: {names}. Or give a weights file path, or hub:<file>",
            )


def _key_in(name: str, section: Any, message: str) -> str:
    """Name the field a section's ValueError is about (its message starts with it)."""
    word = message.removeprefix(f"{name}.").split("=", 1)[0].split(" ", 1)[0].rstrip(":")
    return f"{name}.{word}" if word in {f.name for f in fields(section)} else name


def resolve(
    cfg: Any,
    config_files: Iterable[Path] = (),
    assignments: Iterable[str] = (),
) -> Any:
    """Defaults, then each TOML file, then each ``key=value``; then validate."""
    for path in config_files:
        apply_mapping(cfg, load_toml(Path(path)), source=str(path))
    for text in assignments:
        set_value(cfg, *parse_assignment(text))
    validate(cfg)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
