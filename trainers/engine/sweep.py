"""Experiments: a grid of configs x seeds x folds, trained one after another in this process.

Why it looks like this:

* An experiment is a directory (``<out>/<experiment-id>/``) holding
  ``experiment.json`` (what varies and the list of runs, format
  ``emoconsole-experiment/1``, docs/experiments.md) and one ordinary run
  directory per cell x seed x fold, each trained by the one
  :class:`~trainers.engine.trainer.Trainer` as ``train`` trains it. Each run's
  run.json carries ``experiment`` (id, cell, seed, fold), so a run read alone
  still says where it belongs.
* Every run's config is built and validated before the first run starts: a
  misspelt grid key or a value a cell cannot take stops the sweep with nothing
  trained, rather than after hours of the cells before it.
* The runs share one process and one feature cache (``data.cache_dir``, keyed
  by file content and preprocessing settings): the corpus is decoded by the
  first run and read back by the others, and torch is imported once.
* Restartable as k-fold is (trainers.engine.kfold): a run whose summary.json
  exists is kept, one with a checkpoint is resumed from it, a created one
  without a checkpoint is started over, a missing one is started. A stop
  signal (SIGTERM, Ctrl-C, SIGHUP) is forwarded to the run in progress, which
  checkpoints and stops; the sweep then starts nothing more.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainers.config import ConfigError, flatten, full_key, set_value, validate
from trainers.engine.signals import stop_signals
from trainers.engine.trackers import check_trackers
from trainers.registry import ModelEntry
from trainers.rundir import EXPERIMENT_FORMAT, EXPERIMENT_JSON, RunDir, write_json_atomic

GROUPS = ("actor",)
# Keys of a sweep file (``python -m trainers sweep --file``).
FILE_KEYS = ("model", "data", "grid", "fixed", "seeds", "folds", "group")


class SweepError(ValueError):
    """The sweep cannot start as asked (bad grid, config, file or experiment directory);
    nothing was trained. The message names the key, value or file and what to do."""


@dataclass
class PlannedRun:
    dir: str
    cell: dict[str, Any]
    seed: int
    fold: int | None
    cfg: Any = field(repr=False)


@dataclass
class Plan:
    model: str
    grid: dict[str, list[Any]]
    fixed: list[str]
    seeds: list[int]
    folds: int | None
    group: str | None
    runs: list[PlannedRun]

    def header(self, exp_id: str, created_at: float) -> dict[str, Any]:
        return {
            "format": EXPERIMENT_FORMAT,
            "id": exp_id,
            "model": self.model,
            "created_at": created_at,
            "grid": self.grid,
            "fixed": self.fixed,
            "seeds": self.seeds,
            "folds": self.folds,
            "group": self.group,
        }


@dataclass
class SweepResult:
    exp_dir: Path
    total: int
    kept: int = 0  # finished before this invocation
    trained: int = 0  # finished by this invocation (started or resumed here)
    resumed: int = 0
    failed: list[str] = field(default_factory=list)
    stopped_by: int | None = None  # the signal that stopped the sweep


def parse_grid_arg(text: str) -> tuple[str, list[str]]:
    """``key=v1,v2`` -> (key, [v1, v2]) (values as strings; the config coerces them)."""
    key, sep, values = text.partition("=")
    items = [v.strip() for v in values.split(",")]
    if not sep or not key.strip() or not values.strip() or any(not v for v in items):
        raise SweepError(
            f"--grid {text!r}: expected key=v1,v2,... e.g. --grid train.lr=1e-3,3e-4 "
            "(a list-valued key, such as data.modalities, goes in a sweep file's [grid])"
        )
    return key.strip(), items


def load_sweep_file(path: Path) -> dict[str, Any]:
    """A sweep TOML file's settings, checked: ``model``, ``data``, ``[grid]`` (key = [values]),
    ``[fixed]`` (key = value), ``seeds`` (a count or a list), ``folds``, ``group``."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            tree = tomllib.load(fh)
    except FileNotFoundError:
        raise SweepError(f"--file {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"--file {path}: not valid TOML: {exc}") from None
    unknown = sorted(set(tree) - set(FILE_KEYS))
    if unknown:
        raise SweepError(
            f"{path}: unknown key(s) {', '.join(unknown)}; a sweep file holds "
            f"{', '.join(FILE_KEYS)} (config keys go in [grid] or [fixed])"
        )
    grid = flatten(tree.get("grid", {}))
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{path}: [grid] {key} = {values!r}: expected a non-empty list")
    fixed = flatten(tree.get("fixed", {}))
    seeds = tree.get("seeds")
    if seeds is not None and not (
        (isinstance(seeds, int) and not isinstance(seeds, bool))
        or (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds))
    ):
        raise SweepError(f"{path}: seeds = {seeds!r}: expected a count or a list of integers")
    for key in ("model", "data", "group"):
        if key in tree and not isinstance(tree[key], str):
            raise SweepError(f"{path}: {key} = {tree[key]!r}: expected a string")
    if "folds" in tree and not isinstance(tree["folds"], int):
        raise SweepError(f"{path}: folds = {tree['folds']!r}: expected an integer")
    return {**tree, "grid": grid, "fixed": fixed}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _slug(cell: Mapping[str, Any]) -> str:
    parts = []
    for key, value in cell.items():
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key.rsplit('.', 1)[-1]}={text}")
    return re.sub(r"[^A-Za-z0-9._=,+-]", "-", "_".join(parts))[:80]


def resolve_seeds(seeds: int | Sequence[int] | None, base: int) -> list[int]:
    """None: the config's train.seed; K: K seeds from it; a list: those."""
    if seeds is None:
        return [base]
    if isinstance(seeds, int):
        if seeds < 1:
            raise SweepError(f"--seeds {seeds}: expected a number of seeds >= 1")
        return [base + i for i in range(seeds)]
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds {list(seeds)}: a seed is listed twice")
    return list(seeds)


def plan_sweep(
    entry: ModelEntry,
    base_cfg: Any,
    grid: Mapping[str, Sequence[Any]],
    fixed: Sequence[str] = (),
    seeds: int | Sequence[int] | None = None,
    folds: int | None = None,
    group: str | None = None,
) -> Plan:
    """Every run's config, built and validated now (SweepError names the first bad one).

    ``base_cfg`` is the resolved config (defaults, data, files, fixed keys);
    ``fixed`` is recorded as given. Cells are the grid's product in key order.
    """
    try:
        keys = [full_key(base_cfg, key) for key in grid]
    except ConfigError as exc:
        raise SweepError(f"--grid: {exc}") from None
    if len(set(keys)) != len(keys):
        raise SweepError(f"--grid: a key is given twice ({', '.join(grid)})")
    if seeds is not None and "train.seed" in keys:
        raise SweepError("train.seed is both a grid key and --seeds: use one of them")
    if folds:
        if folds < 2:
            raise SweepError(f"--folds {folds}: expected >= 2 (or leave it out)")
        group = group or "actor"
        if group not in GROUPS:
            raise SweepError(f"--group {group!r}: expected one of {', '.join(GROUPS)}")
        data = getattr(base_cfg, "data", None)
        if not (hasattr(data, "folds") and hasattr(data, "fold")):
            raise SweepError(
                f"--folds: {entry.name}'s data has no data.folds/data.fold settings: k-fold "
                "needs a data module that splits into folds (audio-visual corpora, FI images)"
            )
        for key in ("data.folds", "data.fold"):
            if key in keys:
                raise SweepError(f"{key} is both a grid key and --folds: use one of them")
    elif group is not None:
        raise SweepError(f"--group {group} needs --folds K")
    seed_list = resolve_seeds(seeds, base_cfg.train.seed)
    fold_list: list[int | None] = list(range(folds)) if folds else [None]

    values = [list(grid[key]) for key in grid]
    runs: list[PlannedRun] = []
    typed_grid: dict[str, list[Any]] = {key: [] for key in keys}
    for ci, combo in enumerate(itertools.product(*values)):
        cell_cfg = copy.deepcopy(base_cfg)
        cell: dict[str, Any] = {}
        try:
            for key, value in zip(keys, combo, strict=True):
                set_value(cell_cfg, key, value)
                section, leaf = key.split(".", 1)
                cell[key] = _jsonable(getattr(getattr(cell_cfg, section), leaf))
        except ConfigError as exc:
            raise SweepError(f"--grid: {exc}") from None
        for key, value in cell.items():
            if value not in typed_grid[key]:
                typed_grid[key].append(value)
        for seed in seed_list:
            for fold in fold_list:
                cfg = copy.deepcopy(cell_cfg)
                cfg.train.seed = seed
                if fold is not None:
                    cfg.data.folds, cfg.data.fold = folds, fold
                where = ", ".join(f"{k}={v}" for k, v in cell.items()) or "(no grid)"
                try:
                    validate(cfg)
                    check_trackers(cfg)  # a grid may turn a tracker on
                except ConfigError as exc:
                    raise SweepError(
                        f"cell {where}, seed {seed}"
                        + (f", fold {fold}" if fold is not None else "")
                        + f": config error: {exc}"
                    ) from None
                name = f"c{ci:02d}" + (f"_{_slug(cell)}" if cell else "") + f"_s{seed}"
                if fold is not None:
                    name += f"_f{fold}"
                runs.append(PlannedRun(name, cell, seed, fold, cfg))
    return Plan(
        model=entry.name,
        grid=typed_grid,
        fixed=list(fixed),
        seeds=seed_list,
        folds=folds or None,
        group=group if folds else None,
        runs=runs,
    )


def _run_status(run: RunDir) -> str:
    if not run.run_json.exists():
        return "pending"
    if run.summary.exists():
        return "completed"
    try:
        return str(run.read_manifest().get("status") or "created")
    except (OSError, ValueError):
        return "created"


def _write_experiment(exp_dir: Path, plan: Plan, exp_id: str, created_at: float) -> None:
    rows = []
    for pr in plan.runs:
        rows.append(
            {
                "run_id": pr.dir,
                "dir": pr.dir,
                "cell": pr.cell,
                "seed": pr.seed,
                "fold": pr.fold,
                "status": _run_status(RunDir(exp_dir / pr.dir)),
            }
        )
    write_json_atomic(exp_dir / EXPERIMENT_JSON, {**plan.header(exp_id, created_at), "runs": rows})


def open_experiment(exp_dir: Path, plan: Plan) -> float:
    """Create the experiment directory, or check that an existing one holds this same
    sweep (then it continues); returns its created_at."""
    path = exp_dir / EXPERIMENT_JSON
    if not path.exists():
        if exp_dir.exists() and any(exp_dir.iterdir()):
            raise SweepError(
                f"{exp_dir} exists and is not an experiment (no {EXPERIMENT_JSON}): "
                "pick another --id or --out"
            )
        exp_dir.mkdir(parents=True, exist_ok=True)
        return time.time()
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SweepError(f"{path}: unreadable ({exc}); pick another --id") from None
    new = plan.header(old.get("id", exp_dir.name), old.get("created_at", 0.0))
    keys = ("model", "grid", "fixed", "seeds", "folds", "group")
    differs = [k for k in keys if old.get(k) != new[k]]
    if differs:
        raise SweepError(
            f"{exp_dir} holds a different sweep ({', '.join(differs)} differ from this "
            "command's): rerun it with the same settings to continue it, or pick another --id"
        )
    return float(old.get("created_at") or time.time())


def run_sweep(
    entry: ModelEntry,
    plan: Plan,
    exp_dir: Path,
    argv: list[str] | None = None,
    say: Callable[[str], None] = print,
) -> SweepResult:
    """Train every planned run not finished yet into ``exp_dir``, one after another.

    Keeps finished runs, resumes checkpointed ones; a failed run is recorded and
    the next one starts; a stop signal stops the run in progress (checkpointed)
    and the sweep. experiment.json is rewritten after every run.
    """
    from trainers.engine.trainer import StopRequested, Trainer, new_manifest

    class SweepTrainer(Trainer):
        # The sweep owns the stop handlers for its whole life and forwards a stop to the
        # run in progress: a Trainer's own handlers would stay installed after its fit
        # and swallow a stop that comes between two runs.
        def _install_signal_handlers(self) -> None:
            pass

    exp_dir = Path(exp_dir)
    exp_id = exp_dir.name
    created_at = open_experiment(exp_dir, plan)
    result = SweepResult(exp_dir, len(plan.runs))
    state: dict[str, Any] = {"signal": None, "trainer": None}

    def on_stop(signum: int, _frame: Any) -> None:
        state["signal"] = signum
        if state["trainer"] is not None:
            state["trainer"].stop_signal = signum

    previous = {}
    for sig in stop_signals():
        try:
            previous[sig] = signal.signal(sig, on_stop)
        except ValueError:  # not the main thread: no handlers, stops come from the caller
            break
    n = len(plan.runs)
    try:
        _write_experiment(exp_dir, plan, exp_id, created_at)
        for i, pr in enumerate(plan.runs, 1):
            label = f"sweep: run {i}/{n} {pr.dir}"
            run = RunDir(exp_dir / pr.dir)
            if run.summary.exists():
                result.kept += 1
                say(f"{label}: finished before, kept")
                continue
            if state["signal"] is not None:
                break
            resume = run.run_json.exists() and run.last_ckpt.exists()
            if resume:
                manifest = run.read_manifest()
                run.update_manifest(
                    resumes=[*manifest.get("resumes", []), {"at": time.time(), "argv": argv}]
                )
            else:
                if run.path.exists():  # created but never checkpointed: start it over
                    shutil.rmtree(run.path)
                run.create()
                manifest = new_manifest(run, entry, pr.cfg, argv or sys.argv)
                manifest["experiment"] = {
                    "id": exp_id,
                    "cell": pr.cell,
                    "seed": pr.seed,
                    "fold": pr.fold,
                }
                run.write_manifest(manifest)
            say(f"{label}: {'resuming' if resume else 'starting'}")
            trainer = SweepTrainer(entry, pr.cfg, run)
            trainer.stop_signal = state["signal"]
            state["trainer"] = trainer
            started = time.perf_counter()
            try:
                summary = trainer.fit(resume=resume)
            except StopRequested:
                result.stopped_by = trainer.stop_signal or state["signal"] or signal.SIGTERM
                say(f"{label}: stopped (checkpointed; rerun the sweep to resume it)")
                break
            except Exception as exc:
                result.failed.append(pr.dir)
                say(f"{label}: failed: {type(exc).__name__}: {exc} (see {run.train_log})")
                continue
            finally:
                state["trainer"] = None
                _write_experiment(exp_dir, plan, exp_id, created_at)
            result.trained += 1
            result.resumed += int(resume)
            test = summary["test"]
            say(
                f"{label}: done in {time.perf_counter() - started:.1f} s, test accuracy "
                f"{test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}"
            )
        if state["signal"] is not None and result.stopped_by is None:
            result.stopped_by = state["signal"]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _write_experiment(exp_dir, plan, exp_id, created_at)
    return result
