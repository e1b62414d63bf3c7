"""``python -m trainers``: the headless entry point that runs on any host.

argparse, not Typer: this is what gets shipped to a GPU host, which needs the
training stack and nothing of the console's. Exit codes: 0 done, 1 the run
failed, 2 bad usage or config (nothing was created), 128+N stopped by signal N.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

EXAMPLES = """\
examples:
  python -m trainers list
  python -m trainers synth --layout ravdess --out data/ravdess --actors 12 --seed 0
  python -m trainers train hybrid-attention --data data/ravdess --out runs
  python -m trainers train hybrid-attention --data data/ravdess --out runs \\
      --set train.lr=1e-3 --set train.epochs=20 --config my.toml
  python -m trainers config hybrid-attention          (every key and its default)
  python -m trainers resume runs/<run-id>
"""


class UsageError(Exception):
    """Bad arguments or config: exit 2 before anything is created."""


def _progress_printer(label: str):
    """A one-line progress display on stderr that works without rich or a tty."""
    tty = sys.stderr.isatty()
    state = {"last": 0.0}

    def report(done: int, total: int, what: str) -> None:
        now = time.monotonic()
        if done != total and now - state["last"] < (0.1 if tty else 5.0):
            return
        state["last"] = now
        width = 30
        filled = int(width * done / max(total, 1))
        line = f"{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what}"
        if tty:
            sys.stderr.write("\r" + line[:120].ljust(120))
            if done == total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainers",
        description="Train emotion-recognition models headless; every run writes a run "
        "directory (run.json, events.jsonl, train.log, tb/, checkpoints/, summary.json).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list the models in the zoo")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    def add_config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--set",
            dest="assignments",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override one config key, e.g. train.lr=1e-3 (repeatable; see `config MODEL`)",
        )
        p.add_argument(
            "--config",
            dest="config_files",
            action="append",
            default=[],
            type=Path,
            metavar="FILE.toml",
            help="TOML file with [model], [train], [data] tables (repeatable; --set wins)",
        )

    p = sub.add_parser("train", help="train a model; writes runs/<run-id>/")
    p.add_argument("model", help="model name (see `list`)")
    p.add_argument("--data", required=True, type=Path, help="data set directory")
    p.add_argument("--out", type=Path, default=Path("runs"), help="parent of run directories")
    p.add_argument("--run-id", default=None, help="run directory name (default: time-model-xxxx)")
    add_config_args(p)

    p = sub.add_parser("resume", help="continue a run from checkpoints/last.pt")
    p.add_argument("run_dir", type=Path, help="the run directory to continue")

    p = sub.add_parser("config", help="print a model's resolved config as TOML")
    p.add_argument("model", help="model name (see `list`)")
    add_config_args(p)

    p = sub.add_parser("synth", help="write a generated audio-visual emotion corpus")
    p.add_argument("--layout", default="ravdess", help="data set layout to imitate")
    p.add_argument("--out", required=True, type=Path, help="directory to write")
    p.add_argument("--actors", type=int, default=12, help="number of actors")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    p.add_argument("--statements", type=int, default=2, choices=(1, 2), help="statements per actor")
    p.add_argument("--repetitions", type=int, default=2, choices=(1, 2), help="takes per statement")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: cores)")
    return parser


def _resolve_config(
    model: str, files: list[Path], assignments: list[str], data: Path | None
) -> Any:
    from trainers.config import ConfigError, resolve
    from trainers.registry import UnknownModelError, get_entry

    try:
        entry = get_entry(model)
    except UnknownModelError as exc:
        raise UsageError(str(exc)) from None
    cfg = entry.default_config()
    if data is not None:
        if not data.is_dir():
            raise UsageError(f"--data {data}: no such directory")
        cfg.data.root = str(data.resolve())
    try:
        resolve(cfg, files, assignments)
    except ConfigError as exc:
        raise UsageError(f"config error: {exc}") from None
    return entry, cfg


def cmd_list(args: argparse.Namespace) -> int:
    from trainers.registry import get_entry, list_models

    entries = [get_entry(name) for name in list_models()]
    if args.json:
        print(json.dumps([{"name": e.name, "description": e.description} for e in entries]))
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        print(f"{e.name:<{width}}  {e.description}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from trainers.config import to_dict

    _, cfg = _resolve_config(args.model, args.config_files, args.assignments, None)
    print(to_toml(to_dict(cfg)), end="")
    return 0


def to_toml(tree: dict[str, Any]) -> str:
    lines = []
    for section, values in tree.items():
        if not isinstance(values, dict):
            continue
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is None:
                lines.append(f"# {key} = (none)")
            else:
                lines.append(
                    f"{key} = {json.dumps(list(value) if isinstance(value, tuple) else value)}"
                )
        lines.append("")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> int:
    from trainers.engine.trainer import Trainer, new_manifest
    from trainers.rundir import RunDir, new_run_id

    entry, cfg = _resolve_config(args.model, args.config_files, args.assignments, args.data)
    run = RunDir(args.out / (args.run_id or new_run_id(entry.name)))
    if run.path.exists():
        raise UsageError(f"{run.path} already exists: pick another --run-id or use `resume`")
    run.create()
    run.write_manifest(new_manifest(run, entry, cfg, sys.argv))
    print(f"run: {run.path}", flush=True)
    return _fit(Trainer(entry, cfg, run), resume=False)


def cmd_resume(args: argparse.Namespace) -> int:
    from trainers.config import ConfigError, apply_mapping, validate
    from trainers.engine.trainer import Trainer
    from trainers.registry import UnknownModelError, get_entry
    from trainers.rundir import RunDir

    run = RunDir(args.run_dir)
    if not run.run_json.exists():
        raise UsageError(f"{run.path}: not a run directory (no run.json)")
    manifest = run.read_manifest()
    try:
        entry = get_entry(manifest["model"])
        cfg = entry.default_config()
        apply_mapping(cfg, manifest["config"], source=str(run.run_json))
        validate(cfg)
    except (UnknownModelError, ConfigError) as exc:
        raise UsageError(str(exc)) from None
    resumes = [
        *manifest.get("resumes", []),
        {"at": time.time(), "pid": os.getpid(), "argv": sys.argv},
    ]
    run.update_manifest(resumes=resumes)
    print(f"run: {run.path}", flush=True)
    return _fit(Trainer(entry, cfg, run), resume=True)


def _fit(trainer: Any, resume: bool) -> int:
    from trainers.engine.trainer import StopRequested

    try:
        summary = trainer.fit(resume=resume)
    except StopRequested:
        print(
            f"stopped; continue with: python -m trainers resume {trainer.run.path}", file=sys.stderr
        )
        return 128 + (trainer._stop_signal or 15)
    except Exception as exc:
        print(
            f"run failed: {type(exc).__name__}: {exc} (see {trainer.run.train_log})",
            file=sys.stderr,
        )
        return 1
    test = summary["test"]
    print(
        f"done: best epoch {summary['best_epoch']}, test accuracy {test['accuracy']:.4f}, "
        f"macro-F1 {test['macro_f1']:.4f}, UAR {test['uar']:.4f} -> {trainer.run.summary}"
    )
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from trainers.data.synth import write_corpus

    if args.actors < 1:
        raise UsageError(f"--actors {args.actors}: need at least 1")
    t0 = time.perf_counter()
    try:
        manifest = write_corpus(
            args.layout,
            args.out,
            actors=args.actors,
            seed=args.seed,
            statements=args.statements,
            repetitions=args.repetitions,
            progress=_progress_printer("synth"),
            workers=args.workers,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    n = len(manifest.recordings)
    print(f"wrote {n} recordings to {args.out} in {time.perf_counter() - t0:.1f}s")
    return 0


COMMANDS = {
    "list": cmd_list,
    "train": cmd_train,
    "resume": cmd_resume,
    "config": cmd_config,
    "synth": cmd_synth,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
