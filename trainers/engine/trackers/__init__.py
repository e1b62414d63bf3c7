"""Experiment trackers (Weights & Biases, MLflow) as engine sinks.

TensorBoard and the run directory are always written; a tracker is an opt-in
extra behind the engine's :class:`~trainers.engine.sinks.Sink` interface. Two
promises shape this package:

* A missing package is a config error before anything starts:
  :func:`check_trackers` imports it, so ``train``, ``resume``, every ``sweep``
  cell and the ``config`` check ``deploy`` runs on the host all stop with exit
  2, naming the extra to install.
* A tracker never harms the run: its calls run on the sink's own thread, and
  its first failure becomes one ``warning`` event (kind ``tracker``) after
  which that tracker goes quiet (:mod:`trainers.engine.trackers.base`).

Nothing here imports torch, wandb or mlflow at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainers.engine.sinks import Sink
    from trainers.rundir import RunDir


def check_trackers(cfg: Any) -> None:
    """ConfigError naming the extra to install when a tracker ``cfg.track`` turns on
    cannot be imported. Called where a run is about to start, after the config is
    validated: the trainers CLI's config resolution (``train``, ``sweep``, and the
    ``config`` check ``deploy`` runs on the host), every sweep cell, and ``resume``.
    A no-op without a ``track`` section."""
    from trainers.config import ConfigError
    from trainers.engine.trackers.packages import missing_package

    track = getattr(cfg, "track", None)
    missing = missing_package(track) if track is not None else None
    if missing:
        raise ConfigError(*missing)


def tracker_sinks(cfg: Any, run: RunDir, resume: bool, warn: Callable[..., Any]) -> list[Sink]:
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
