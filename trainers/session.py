"""A run directory back at work: its config from run.json, its Trainer, the fit's exit code.

``resume``, a torchrun rank (:mod:`trainers.launch`) and attention fusion's
sources (:mod:`trainers.fusion.runs`) all rebuild a run the same way: the
registry entry run.json names, its default config, run.json's config over it,
validated. ``train``, ``resume`` and a rank then end the same way too: the
exit code of the fit (0 done, 1 failed, 128+N stopped by signal N).

The training engine (and torch) is imported only by the functions that train,
so reading a run's config costs no torch.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trainers.config import ConfigError, apply_saved, set_value, validate
from trainers.registry import ModelEntry, UnknownModelError, get_entry
from trainers.rundir import RunDir

if TYPE_CHECKING:
    from trainers.engine.trainer import Trainer


class RunManifestError(ValueError):
    """A run directory whose run.json is missing or names a model or config that
    cannot be rebuilt; the message says which."""


def config_from_manifest(
    run: RunDir, overrides: Mapping[str, Any] | None = None
) -> tuple[ModelEntry, Any]:
    """The registry entry and validated config of the run in ``run``, from its run.json.

    ``overrides`` (config key -> value, e.g. ``{"data.root": ...}``) replace run.json's
    values before validation.
    """
    if not run.run_json.exists():
        raise RunManifestError(f"{run.path}: not a run directory (no run.json)")
    manifest = run.read_manifest()
    try:
        entry = get_entry(manifest["model"])
        cfg = entry.default_config()
        apply_saved(cfg, manifest["config"], source=str(run.run_json))
        for key, value in (overrides or {}).items():
            set_value(cfg, key, value)
        validate(cfg)
    except (UnknownModelError, ConfigError) as exc:
        raise RunManifestError(str(exc)) from None
    return entry, cfg


def trainer_from_manifest(run: RunDir, supervised: bool = False) -> Trainer:
    """A Trainer for an existing run directory: its model and config from run.json."""
    from trainers.engine.trackers import check_trackers
    from trainers.engine.trainer import Trainer

    entry, cfg = config_from_manifest(run)
    try:
        check_trackers(cfg)  # resume and torchrun's ranks: the package must still import
    except ConfigError as exc:
        raise RunManifestError(str(exc)) from None
    return Trainer(entry, cfg, run, supervised=supervised)


def fit_exit_code(trainer: Trainer, resume: bool) -> int:
    """Run ``trainer.fit`` and report it: the process's exit code (0 done, 1 the run
    failed, 128+N stopped by signal N), one line on stdout or stderr."""
    from trainers.engine.trainer import StopRequested

    try:
        summary = trainer.fit(resume=resume)
    except StopRequested:
        print(
            f"stopped; continue with: python -m trainers resume {trainer.run.path}", file=sys.stderr
        )
        return 128 + (trainer.stop_signal or 15)
    except Exception as exc:
        print(
            f"run failed: {type(exc).__name__}: {exc} (see {trainer.run.train_log})",
            file=sys.stderr,
        )
        return 1
    if not trainer.dist.is_main:
        return 0  # rank 0 reports for the run
    test = summary["test"]
    print(
        f"done: best epoch {summary['best_epoch']}, test accuracy {test['accuracy']:.4f}, "
        f"macro-F1 {test['macro_f1']:.4f}, UAR {test['uar']:.4f} -> {trainer.run.summary}"
    )
    return 0
