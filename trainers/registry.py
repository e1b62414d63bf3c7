"""The model zoo: one name -> entry map (timm's ``register_model`` habit).

An entry supplies what differs between models (a config dataclass with the
design note's defaults, a builder, a data module); the engine supplies the
rest. Adding a model never touches the training loop.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_REGISTRY: dict[str, ModelEntry] = {}


class UnknownModelError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    config: type  # an ExperimentConfig subclass; its defaults are the recipe
    build: Callable[[Any, int], Any]  # (cfg, num_classes) -> nn.Module
    data: Callable[[Any], Any]  # cfg -> DataModule
    seed_note: str = ""  # which design note (000-004, the research team's) its defaults come from
    # cfg -> engine callbacks the recipe needs (unfreezing, mixing); see engine.callbacks.
    callbacks: Callable[[Any], list[Any]] | None = None
    # What the model reads, for `list` (e.g. "image 3x224x224"); empty = derived from
    # the config's data section by describe_inputs().
    inputs: str = ""

    def make_callbacks(self, cfg: Any) -> list[Any]:
        return list(self.callbacks(cfg)) if self.callbacks is not None else []

    def default_config(self) -> Any:
        return self.config()

    def input_spec(self, cfg: Any = None) -> str:
        if self.inputs:
            return self.inputs
        return describe_inputs((cfg if cfg is not None else self.default_config()).data)

    def default_num_classes(self, cfg: Any = None) -> int:
        """Classes of the data module at the default config, without setting it up.

        Data modules of fixed-label data sets know their classes when built; one
        that learns them only in setup (class folders) counts as DEFAULT_NUM_CLASSES.
        """
        cfg = cfg if cfg is not None else self.default_config()
        try:
            classes = getattr(self.data(cfg), "classes", None)
        except Exception:  # a data module may insist on a root or runs: not needed here
            classes = None
        return len(classes) if classes else DEFAULT_NUM_CLASSES

    def count_params(self, num_classes: int | None = None) -> int:
        """Parameters at the default size, built on the meta device (no memory, no init
        cost: vit_b_16 and slowfast would take seconds each on the CPU)."""
        import torch

        cfg = self.default_config()
        n = num_classes if num_classes is not None else self.default_num_classes(cfg)
        try:
            with torch.device("meta"):
                model = self.build(cfg, n)
        except Exception:  # a builder doing real tensor work (a dummy forward) needs the CPU
            model = self.build(cfg, n)
        return int(sum(p.numel() for p in model.parameters()))


DEFAULT_NUM_CLASSES = 8  # RAVDESS and FI; MELD's module says 7 itself


def describe_inputs(data: Any) -> str:
    """A one-line input spec from a data config, e.g. "audio mfcc 40 x <=400 + video
    48x1x48x48 @10fps". Duck-typed so new data configs need no change here: one can
    also define ``describe_inputs()`` itself, or its entry can pass ``inputs=``."""
    own = getattr(data, "describe_inputs", None)
    if callable(own):
        return str(own())
    parts = []
    for modality in getattr(data, "modalities", ()) or ():
        if modality == "audio" and hasattr(data, "audio_dim"):
            kind = getattr(data, "audio_features", "features")
            limit = getattr(data, "max_audio_frames", None)
            parts.append(f"audio {kind} {data.audio_dim} x " + (f"<={limit}" if limit else "T"))
        elif modality == "video" and hasattr(data, "face_size"):
            frames = getattr(data, "max_frames", "T")
            channels = getattr(data, "video_channels", 3)
            size = data.face_size
            fps = getattr(data, "fps", None)
            rate = f" @{fps:g}fps" if isinstance(fps, int | float) else ""
            parts.append(f"video {frames}x{channels}x{size}x{size}{rate}")
        else:
            parts.append(str(modality))
    if parts:
        return " + ".join(parts)
    for name in ("image_size", "crop_size", "size", "resolution"):
        size = getattr(data, name, None)
        if isinstance(size, int):
            channels = getattr(data, "channels", 3)
            return f"image {channels}x{size}x{size}"
    return type(data).__name__


def register_model(
    name: str,
    *,
    config: type,
    data: Callable[[Any], Any],
    description: str,
    seed_note: str = "",
    callbacks: Callable[[Any], list[Any]] | None = None,
    inputs: str = "",
) -> Callable[[Callable[[Any, int], Any]], Callable[[Any, int], Any]]:
    def decorator(build: Callable[[Any, int], Any]) -> Callable[[Any, int], Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(
            name, description, config, build, data, seed_note, callbacks, inputs
        )
        return build

    return decorator


def _load_zoo(name: str | None = None) -> None:
    """Import the module that registers ``name`` (importing registers), or every
    module of the zoo when ``name`` is None."""
    import importlib

    from trainers.models import ZOO

    if name is not None and name not in ZOO:
        return
    for module in [ZOO[name]] if name is not None else sorted(set(ZOO.values())):
        importlib.import_module(module)


def list_models() -> list[str]:
    _load_zoo()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    from trainers.models import ZOO

    _load_zoo(name)
    if name not in _REGISTRY:
        names = sorted(set(_REGISTRY) | set(ZOO))  # without importing the zoo for a typo
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        known = ", ".join(names)
        raise UnknownModelError(f"unknown model {name!r}.{hint} Known models: {known}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int, cfg: Any = None) -> Any:
    entry = get_entry(name)
    return entry.build(cfg if cfg is not None else entry.default_config(), num_classes)
