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
    seed_note: str = ""  # which design note in shared/seeds/ it comes from
    # cfg -> engine callbacks the recipe needs (unfreezing, mixing); see engine.callbacks.
    callbacks: Callable[[Any], list[Any]] | None = None

    def make_callbacks(self, cfg: Any) -> list[Any]:
        return list(self.callbacks(cfg)) if self.callbacks is not None else []

    def default_config(self) -> Any:
        return self.config()


def register_model(
    name: str,
    *,
    config: type,
    data: Callable[[Any], Any],
    description: str,
    seed_note: str = "",
    callbacks: Callable[[Any], list[Any]] | None = None,
) -> Callable[[Callable[[Any, int], Any]], Callable[[Any, int], Any]]:
    def decorator(build: Callable[[Any, int], Any]) -> Callable[[Any, int], Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, description, config, build, data, seed_note, callbacks)
        return build

    return decorator


def _load_zoo() -> None:
    import trainers.models  # noqa: F401  (registers every model on import)


def list_models() -> list[str]:
    _load_zoo()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _load_zoo()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownModelError(f"unknown model {name!r}.{hint} Known models: {known}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int, cfg: Any = None) -> Any:
    entry = get_entry(name)
    return entry.build(cfg if cfg is not None else entry.default_config(), num_classes)
