"""Experiment trackers (Weights & Biases, MLflow) as engine sinks.

TensorBoard and the run directory are always written; a tracker is an opt-in
extra behind the engine's :class:`~trainers.engine.sinks.Sink` interface. Two
promises shape this package:

* A missing package is a config error before anything starts:
  :func:`require_packages` runs from ``TrackConfig.validate`` (so ``train``,
  every ``sweep`` cell and the ``config`` check ``deploy`` runs on the host all
  stop with exit 2, naming the extra to install).
* A tracker never harms the run: its calls run on the sink's own thread, and
  its first failure becomes one ``warning`` event (kind ``tracker``) after
  which that tracker goes quiet (:mod:`trainers.engine.trackers.base`).

Nothing here imports torch, wandb or mlflow at module level.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from trainers.config import TrackConfig
    from trainers.engine.sinks import Sink
    from trainers.rundir import RunDir

# The extra of pyproject.toml that installs each tracker's package.
EXTRAS = {"wandb": "wandb", "mlflow": "mlflow"}


def enabled(track: TrackConfig) -> list[str]:
    """The trackers ``track`` turns on, by package name."""
    names = []
    if track.wandb:
        names.append("wandb")
    if track.mlflow_uri:
        names.append("mlflow")
    return names


def require_packages(track: TrackConfig) -> None:
    """Import each enabled tracker's package now; ConfigError names the extra when one
    cannot be imported. An import, not a find_spec: a broken install must fail here too."""
    from trainers.config import ConfigError

    for name in enabled(track):
        key = "track.wandb" if name == "wandb" else "track.mlflow_uri"
        try:
            importlib.import_module(name)
        except ImportError as exc:
            setting = "track.wandb=true" if name == "wandb" else "track.mlflow_uri"
            raise ConfigError(
                key,
                f"{setting} needs the {name} package: pip install 'emoconsole[{EXTRAS[name]}]' "
                f"(importing it failed: {exc}); or turn the tracker off",
            ) from None


def check_trackers(cfg: Any) -> None:
    """``require_packages`` for a whole experiment config (a no-op without ``track``)."""
    track = getattr(cfg, "track", None)
    if track is not None:
        require_packages(track)


def uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a tracking URI setting, or None. Credentials in it would be
    saved with the config in run.json (and logged as a parameter), so they are refused."""
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.username or parts.password:
        return (
            "holds credentials (user:password@), which would be written to run.json: give the "
            "URI without them and set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or "
            "MLFLOW_TRACKING_TOKEN in the environment instead"
        )
    return None


def public_uri(uri: str) -> str:
    """``uri`` without user info, query or fragment: what run.json may hold."""
    parts = urlsplit(uri)
    if not parts.netloc:
        return uri.split("?", 1)[0]
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


Warn = Callable[..., Any]


def tracker_sinks(cfg: Any, run: RunDir, resume: bool, warn: Warn) -> list[Sink]:
    """The sinks of the enabled trackers (rank 0 only: the engine calls this where it
    builds rank 0's sinks). ``warn(kind=..., message=...)`` emits a warning event; the
    sinks call it from the engine's thread only. A run directory is one tracker run:
    ids saved in run.json's ``trackers`` are continued whether or not ``resume`` is
    set (a run stopped before its first checkpoint restarts, but keeps its W&B run)."""
    track = getattr(cfg, "track", None)
    if track is None:
        return []
    sinks: list[Sink] = []
    if track.wandb:
        from trainers.engine.trackers.wandb_sink import WandbSink

        sinks.append(WandbSink(cfg, run, warn, resume))
    if track.mlflow_uri:
        from trainers.engine.trackers.mlflow_sink import MlflowSink

        sinks.append(MlflowSink(cfg, run, warn, resume))
    return sinks
