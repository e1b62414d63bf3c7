"""Where a run's experiment trackers keep it, for the run view's header.

The engine records each tracker's ids in run.json under ``trackers`` once the tracker's
run exists (trainers.engine.trackers; docs/run-directory.md)::

    "trackers": {"wandb": {"id", "project", "entity", "mode", "url", "dir"},
                 "mlflow": {"run_id", "experiment_id", "tracking_uri"}}

``url`` is None in W&B's offline mode, where ``dir`` (relative to the run directory
when inside it) is what ``wandb sync`` takes. The record arrives after the run started
(W&B's init takes seconds, on the tracker's own thread), so a view that read run.json
early reads it again while a tracker the config turns on has no record yet
(:func:`missing_trackers`).
"""

from __future__ import annotations

import posixpath
from typing import Any


def _records(manifest: dict[str, Any] | None) -> dict[str, Any]:
    trackers = (manifest or {}).get("trackers")
    return trackers if isinstance(trackers, dict) else {}


def enabled_trackers(manifest: dict[str, Any] | None) -> set[str]:
    """The trackers the run's resolved config turns on (``track.wandb``,
    ``track.mlflow_uri``); empty for runs from before the ``track`` section."""
    config = (manifest or {}).get("config")
    track = config.get("track") if isinstance(config, dict) else None
    if not isinstance(track, dict):
        return set()
    names = set()
    if track.get("wandb"):
        names.add("wandb")
    if track.get("mlflow_uri"):
        names.add("mlflow")
    return names


def missing_trackers(manifest: dict[str, Any] | None) -> set[str]:
    """Trackers turned on whose ids run.json does not hold yet."""
    return enabled_trackers(manifest) - set(_records(manifest))


def trackers_text(manifest: dict[str, Any] | None, run_dir: str = "") -> str:
    """One line naming where the run is tracked ("" when nowhere but here): the W&B run's
    URL, or its offline directory; the MLflow run id and tracking server."""
    records = _records(manifest)
    parts = []
    wandb = records.get("wandb")
    if isinstance(wandb, dict):
        if wandb.get("url"):
            parts.append(f"W&B: {wandb['url']}")
        elif wandb.get("mode") == "offline" or wandb.get("dir"):
            where = str(wandb.get("dir") or "?")
            if run_dir and not posixpath.isabs(where) and where != "?":
                where = posixpath.join(run_dir, where)
            parts.append(f"W&B offline: {where}")
        else:
            parts.append(f"W&B: run {wandb.get('id', '?')} (no URL recorded)")
    mlflow = records.get("mlflow")
    if isinstance(mlflow, dict):
        where = mlflow.get("tracking_uri") or "?"
        parts.append(f"MLflow: run {mlflow.get('run_id', '?')} at {where}")
    return "  ".join(parts)
