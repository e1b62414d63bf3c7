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
  python -m trainers describe meld data/MELD.Raw     (classes, speakers, durations, floor)
  python -m trainers synth --layout combined --out data/combined   (ravdess/ + crema-d/)
  python -m trainers train branched-tcn --data data/combined --set data.layout=combined
  python -m trainers prepare ravdess data/ravdess --out cache   (decode once, resumable)
  python -m trainers train hybrid-attention --data data/ravdess --out runs
  python -m trainers train hybrid-attention --data data/ravdess --out runs \\
      --set train.lr=1e-3 --set train.epochs=20 --config my.toml
  python -m trainers train hybrid-attention --data data/ravdess \\
      --set pretrained=hub:<file>.pth                 (weights in torch hub's cache)
  python -m trainers config hybrid-attention          (every key and its default)
  python -m trainers resume runs/<run-id>
  python -m trainers sweep hybrid-attention --data data/ravdess --grid train.lr=1e-3,3e-4 \\
      --seeds 3 --folds 6 --group actor --id lr-study    (rerun it to continue)
  python -m trainers sweep --file sweep.toml          (docs/experiments.md)
  python -m trainers predict runs/<run-id> clip.mp4 folder/ [--json]
  python -m trainers evaluate runs/<run-id> --data data/CREMA-D --layout crema-d [--split all]
  python -m trainers export runs/<run-id> --out models/<name> [--format onnx]
  python -m trainers predict models/<name> clip.mp4        (an exported folder)
  python -m trainers push runs/<run-id> --repo alice/emo-model [--private] [--revision exp]
  python -m trainers fuse late-fusion runs/<visual-run> runs/<audio-run> --out runs
  python -m trainers fuse image-ensemble runs/<r1> runs/<r2> runs/<r3> --out runs
  python -m trainers fuse attention-fusion runs/<visual-run> runs/<audio-run> --out runs
"""

FUSE_EXAMPLES = """\
methods:
  late-fusion       two runs; w * p_a + (1 - w) * p_b, w tuned on val over 0, 0.05, ..., 1
  image-ensemble    two or more runs; equal-weight mean of their probabilities
  attention-fusion  two runs; trains cross-modal attention on their embeddings (the same as
                    `train attention-fusion --set data.runs=A,B`; takes --set and --config)

Rows are matched by (split, sample key); runs with different classes or samples are
refused. Each writes a new run directory (run.json, events.jsonl, summary.json,
predictions.jsonl) under --out.

examples:
  python -m trainers fuse late-fusion runs/<visual-run> runs/<audio-run> --out runs
  python -m trainers fuse late-fusion runs/A runs/B --metric macro_f1 --step 0.1
  python -m trainers fuse image-ensemble runs/<resnet50> runs/<effnet> runs/<vit> --out runs
  python -m trainers fuse attention-fusion runs/A runs/B --set train.epochs=20
"""


FUSE_METHODS = ("late-fusion", "image-ensemble", "attention-fusion")


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


def add_distributed_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "distributed (torchrun)",
        "Run the ranks with torchrun and DistributedDataParallel: train.batch_size is per "
        "process, so the global batch is batch_size x processes x train.grad_accum. Rank 0 "
        "writes the run directory; the others log to RUN/ranks/rankN.log.",
    )
    g.add_argument(
        "--nproc-per-node",
        type=int,
        default=0,
        metavar="N",
        help="processes on this machine, one per GPU (gloo on CPU); 0: no torchrun",
    )
    g.add_argument("--nnodes", type=int, default=1, metavar="K", help="machines in the job")
    g.add_argument(
        "--node-rank", type=int, default=None, help="this machine's place (default: assigned)"
    )
    g.add_argument(
        "--rdzv-endpoint",
        default="",
        metavar="HOST:PORT",
        help="the first node's address for torchrun's c10d rendezvous (--nnodes > 1)",
    )
    g.add_argument(
        "--max-restarts",
        type=int,
        default=0,
        metavar="R",
        help="when a rank dies, restart every rank from the last checkpoint up to R times",
    )


def add_checkpoint_options(p: argparse.ArgumentParser) -> None:
    """Which checkpoint of a run to load, and whether an old pickled one may be:
    the same two options on every command that loads a trained model."""
    p.add_argument(
        "--checkpoint", choices=("best", "last"), default="best", help="which checkpoint to use"
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load a checkpoint that needs full pickle (written by an older version); "
        "only for files you trust: unpickling can run code",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainers",
        description="Train emotion-recognition models headless; every run writes a run "
        "directory (run.json, events.jsonl, train.log, tb/, checkpoints/, summary.json).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "list",
        help="list the models and fusion methods: parameters, inputs, description",
        description="Every registered model with its parameter count at the default config "
        "(and the data's default class count), what it reads, and its description; then the "
        "fusion methods that train nothing (late-fusion, image-ensemble).",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="machine-readable: a list of {name, kind, params, classes, inputs, description, "
        "seed_note}",
    )

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
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data set directory (required unless the config gives data.root; "
        "attention-fusion defaults to its source runs' data)",
    )
    p.add_argument("--out", type=Path, default=Path("runs"), help="parent of run directories")
    p.add_argument("--run-id", default=None, help="run directory name (default: time-model-xxxx)")
    p.add_argument(
        "--folds",
        type=int,
        default=0,
        metavar="K",
        help="K-fold cross-validation: one run per fold under RUN/fold-<i>/, then mean and "
        "std in RUN/kfold.json (FI images: class-stratified; audio-visual corpora: "
        "speaker-independent, whole actors per fold, K = actors is leave-one-actor-out); "
        "rerunning the same --run-id resumes unfinished folds (`sweep --folds` does the same "
        "as an experiment, with grids and seeds)",
    )
    add_config_args(p)
    add_distributed_args(p)

    p = sub.add_parser(
        "sweep",
        help="train a grid of configs x seeds x folds as one experiment; writes OUT/ID/",
        description="Train one run per grid cell, seed and fold, one after another in this "
        "process (one feature cache: the corpus is decoded once), into the experiment "
        "directory OUT/ID/: experiment.json (what varies, the runs and their status) and "
        "one ordinary run directory per run. Every run's config is checked before the "
        "first starts. Stopped (SIGTERM, Ctrl-C) and rerun with the same --id and --out, "
        "it keeps finished runs, resumes the stopped one from its checkpoint and starts the "
        "rest. Exit 0 all done, 1 a run failed, 2 bad usage (nothing trained), 128+N "
        "stopped by signal N. See docs/experiments.md.",
        epilog="""examples:
  python -m trainers sweep hybrid-attention --data data/ravdess \\
      --grid train.lr=1e-3,3e-4 --grid train.batch_size=8,16 --seeds 2 --id lr-bs
  python -m trainers sweep hybrid-attention --data data/ravdess --folds 24 --group actor
                                                      (leave-one-actor-out on RAVDESS)
  python -m trainers sweep --file sweep.toml --id lr-bs    (model, data, [grid], [fixed],
                                                           seeds, folds, group)
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", default=None, help="model name (see `list`)")
    p.add_argument("--file", type=Path, default=None, help="a sweep TOML file (see above)")
    p.add_argument("--data", type=Path, default=None, help="data set directory")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a config key and its values; several --grid make their product (repeatable)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="K",
        help="K runs per cell with train.seed = the config's seed, +1, ... (default: 1)",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        metavar="K",
        help="speaker-independent k-fold: K runs per cell and seed, data.folds=K, "
        "data.fold=0..K-1 (K = the number of actors: leave-one-actor-out)",
    )
    p.add_argument(
        "--group",
        choices=("actor",),
        default=None,
        help="what a fold holds out (actor, the default with --folds)",
    )
    p.add_argument("--out", type=Path, default=Path("runs"), help="parent of experiment dirs")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check every run's config and list the runs; create and train nothing",
    )
    p.add_argument(
        "--id",
        dest="exp_id",
        default=None,
        help="experiment directory name (default: time-sweep-model-xxxx); the same --id "
        "continues a stopped sweep",
    )
    add_config_args(p)

    p = sub.add_parser("resume", help="continue a run from checkpoints/last.pt")
    p.add_argument("run_dir", type=Path, help="the run directory to continue")
    add_distributed_args(p)

    p = sub.add_parser(
        "worker",
        help="one torchrun rank of a run directory (started by --nproc-per-node, not by hand)",
    )
    p.add_argument("run_dir", type=Path, help="the run directory the launcher created")

    p = sub.add_parser("config", help="print a model's resolved config as TOML")
    p.add_argument("model", help="model name (see `list`)")
    add_config_args(p)

    p = sub.add_parser(
        "fuse",
        help="fuse finished runs (late-fusion, image-ensemble, attention-fusion)",
        epilog=FUSE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", choices=FUSE_METHODS, help="fusion method (see below)")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="finished run directories")
    p.add_argument("--out", type=Path, default=Path("runs"), help="parent of run directories")
    p.add_argument("--run-id", default=None, help="run directory name (default: time-method-xxxx)")
    p.add_argument(
        "--metric",
        default=None,
        choices=("accuracy", "macro_f1", "weighted_f1", "uar", "loss"),
        help="late-fusion: validation metric the weight is tuned on (default: the first "
        "run's monitor)",
    )
    p.add_argument(
        "--step", type=float, default=0.05, help="late-fusion: weight grid step (default 0.05)"
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="attention-fusion: the data set directory, when it moved since the runs were "
        "trained (default: each run's own data.root)",
    )
    add_config_args(p)

    p = sub.add_parser("synth", help="write a generated audio-visual emotion corpus")
    p.add_argument(
        "--layout",
        default="ravdess",
        help="data set layout to imitate: ravdess, crema-d, meld, fi, or combined "
        "(ravdess/ and crema-d/ under --out, --actors each)",
    )
    p.add_argument("--out", required=True, type=Path, help="directory to write")
    p.add_argument("--actors", type=int, default=12, help="number of actors")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    p.add_argument("--statements", type=int, default=2, choices=(1, 2), help="statements per actor")
    p.add_argument("--repetitions", type=int, default=2, choices=(1, 2), help="takes per statement")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: cores)")
    p.add_argument(
        "--realistic",
        action="store_true",
        help="imitate the real download instead of the small tidy corpus: 1280x720 H.264 "
        "with B-frames at 29.97 fps, 48 kHz audio, and (ravdess) song takes; "
        "see docs/datasets.md",
    )

    p = sub.add_parser(
        "prepare",
        help="decode a data set once into a feature cache (resumable, parallel)",
        description="Decode every recording of an audio-visual data set into the feature "
        "cache a model's runs read (face crops, sampled frames, log-mel/MFCC), with parallel "
        "workers and a progress bar. Entries are keyed by file content and preprocessing "
        "settings and land by atomic rename: a killed prepare resumes where it stopped, and "
        "changing --set data.face_size rebuilds the video entries only. Unusable inputs are "
        "skipped and listed in CACHE/bad_inputs.jsonl; more than data.max_bad_fraction of "
        "them stops it. Train with --set data.cache_dir=CACHE to use it.",
    )
    p.add_argument(
        "dataset",
        choices=("ravdess", "crema-d", "meld", "combined"),
        help="data set layout (combined: SRC holds ravdess/ and crema-d/)",
    )
    p.add_argument("src", type=Path, help="the data set's directory")
    p.add_argument("--out", required=True, type=Path, help="the cache directory")
    p.add_argument(
        "--model",
        default=None,
        help="whose preprocessing settings (default: hybrid-attention; meld-slowfast for meld)",
    )
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores)")
    add_config_args(p)

    p = sub.add_parser(
        "describe",
        help="what a data set holds: classes per split, imbalance, actors, durations, floor",
        description="Index a data set as training would (default split settings) and print "
        "class counts per split, the imbalance ratio, actors or speakers per split, clip "
        "durations from the files' headers, the majority-class floor on test, and every "
        "unusable input with its reason. Faces not found per split and actor come from the "
        "feature cache a `prepare` or a run left (MODEL's crop settings, data.cache_dir); "
        "nothing is decoded unless --faces N asks for a sample.",
    )
    p.add_argument(
        "dataset",
        choices=("ravdess", "crema-d", "meld", "combined", "fi"),
        help="data set layout (combined: SRC holds ravdess/ and crema-d/, see docs/datasets.md)",
    )
    p.add_argument("src", type=Path, help="the data set's directory")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--model",
        default=None,
        help="whose face-crop settings find the cached faces (default: as `prepare`)",
    )
    p.add_argument(
        "--faces",
        type=int,
        default=0,
        metavar="N",
        help="decode the video of up to N recordings the cache has no faces for, spread over "
        "the actors, and count them too (default 0: cache only, fast)",
    )
    add_config_args(p)

    p = sub.add_parser(
        "predict",
        help="predict the emotion of media files with a trained run's model",
        description="Apply a run's model to media files with the run's own preprocessing "
        "and the statistics its checkpoint carries (the training data is not read). INPUT "
        "is a file or a folder: RAVDESS-named files are grouped into takes as the loader "
        "groups them, other files by folder and name stem (clip.mp4 + clip.wav is one "
        "input). Audio-visual models need a video with audio (its track or a wav of the "
        "same stem), video models a video, image models an image. An input that fails "
        "gets one line on stderr and the others go on; exit 1 if any failed.",
    )
    p.add_argument("run", type=Path, help="the run directory (holds checkpoints/)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="media files or folders")
    add_checkpoint_options(p)
    p.add_argument(
        "--json", action="store_true", help="one JSON object per input on stdout, no table"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="the run's training data: only for a checkpoint without inference state "
        "(older versions), whose train-split statistics are then recomputed from it",
    )

    p = sub.add_parser(
        "evaluate",
        help="score a trained run on another corpus or split",
        description="Score a run's model on a corpus (its own or another) with the run's "
        "own data pipeline and the statistics its checkpoint carries, and write "
        "RUN/evaluations/NAME/ (evaluation.json: the metrics of summary.json's test block "
        "plus the majority-class floor; predictions.jsonl). Classes are matched by "
        "emotion through the combined label map (docs/datasets.md): recordings of classes "
        "the run never learned are excluded and counted, run classes the corpus lacks are "
        "never the decision, and the metrics cover the shared classes only. Exit 1 if "
        "nothing could be scored.",
    )
    p.add_argument("run", type=Path, help="the run directory (holds checkpoints/)")
    p.add_argument("--data", type=Path, required=True, help="the corpus's directory")
    p.add_argument(
        "--layout",
        choices=("ravdess", "crema-d", "meld", "combined"),
        default=None,
        help="the corpus's layout (default: the run's own data.layout)",
    )
    p.add_argument(
        "--split",
        choices=("test", "all"),
        default="test",
        help="test: the layout's speaker-independent test split with the run's split "
        "settings (MELD: the official one); all: every recording",
    )
    add_checkpoint_options(p)
    p.add_argument(
        "--out",
        default=None,
        metavar="NAME",
        help="the evaluation's folder name under RUN/evaluations/ "
        "(default: <corpus folder>-<layout>-<split>); an existing one is replaced",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")

    p = sub.add_parser(
        "export",
        help="write a run's model as a Hugging Face-layout folder (safetensors, ONNX)",
        description="Write the model of a run (or of an earlier export) to OUT in the layout "
        "of a Hugging Face model repository: model.safetensors (weights, no pickle), "
        "config.json (model, config, classes, preprocessing and the statistics fitted on "
        "the train split), README.md (a model card from summary.json) and the run's "
        "summary.json. --format onnx adds model.onnx (batch and time axes dynamic), checked "
        "against PyTorch with onnxruntime on two input lengths; --format torchscript adds "
        "model.pt. `predict OUT ...` then works without the run. If ONNX or TorchScript "
        "fails, the safetensors export is still complete and the exit code is 1.",
    )
    p.add_argument("run", type=Path, help="the run directory (or an exported folder)")
    p.add_argument("--out", type=Path, required=True, help="the folder to write (new or empty)")
    p.add_argument(
        "--format",
        choices=("safetensors", "onnx", "torchscript"),
        default="safetensors",
        help="safetensors only (default), or also model.onnx / model.pt",
    )
    add_checkpoint_options(p)

    p = sub.add_parser(
        "push",
        help="upload a run's model (its export bundle) to the Hugging Face Hub",
        description="Upload the export bundle of a run (exported to a temporary folder "
        "first, as `export` writes it) or of an exported folder (as it is) to the model "
        "repository USER/NAME, with huggingface_hub: the repository is created if needed "
        "(--private for a new private one), --revision names a branch (created from main "
        "if new), and the push is one commit whose message names the run and its test "
        "accuracy and macro-F1. Pushing again adds a commit; files the Hub already holds "
        "are not sent again, and a push that changes nothing says so and adds none. The "
        "token comes from HF_TOKEN or `hf auth login` and is never printed. Needs the hub "
        "extra (pip install 'emoconsole[hub]'). Exit 0 pushed, 1 the Hub failed, 2 bad "
        "usage, no token or a rejected one (nothing uploaded).",
        epilog="""examples:
  hf auth login                                     (once; or export HF_TOKEN=hf_...)
  python -m trainers push runs/<run-id> --repo alice/hybrid-attention-ravdess --private
  python -m trainers push models/<name> --repo alice/hybrid-attention-ravdess --revision exp
  python -m trainers push runs/<run-id> --repo alice/emo --include-onnx
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", type=Path, help="the run directory (or an exported folder)")
    p.add_argument(
        "--repo", required=True, metavar="USER/NAME", help="the model repository on the Hub"
    )
    p.add_argument(
        "--private",
        action="store_true",
        help="create the repository private; refused if it exists and is public",
    )
    p.add_argument(
        "--revision",
        default=None,
        metavar="BRANCH",
        help="the branch to commit to (default: main); created from main if new",
    )
    p.add_argument(
        "--include-onnx",
        action="store_true",
        help="run directory: export model.onnx too (checked with onnxruntime, needs the "
        "export extra); exported folder: require its model.onnx (a folder is pushed as is)",
    )
    add_checkpoint_options(p)
    return parser


def _resolve_config(
    model: str,
    files: list[Path],
    assignments: list[str],
    data: Path | None,
    presets: dict[str, Any] | None = None,
) -> Any:
    """Defaults, --data, ``presets`` (what a command implies), files, --set; validated."""
    from trainers.config import ConfigError, resolve, set_value
    from trainers.engine.trackers import check_trackers
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
        for key, value in (presets or {}).items():
            set_value(cfg, key, value)
        resolve(cfg, files, assignments)
        check_trackers(cfg)  # a tracker's package must import before anything starts
    except ConfigError as exc:
        raise UsageError(f"config error: {exc}") from None
    return entry, cfg


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}K"
    return str(n)


def cmd_list(args: argparse.Namespace) -> int:
    from trainers.zoo import zoo_rows

    rows = zoo_rows()
    if args.json:
        print(json.dumps(rows))
        return 0
    name_w = max(len(r["name"]) for r in rows)
    inputs_w = max(len(r["inputs"]) for r in rows)
    print(f"{'name':<{name_w}}  {'params':>7}  {'inputs':<{inputs_w}}  description")
    for r in rows:
        print(
            f"{r['name']:<{name_w}}  {_human(r['params']):>7}  {r['inputs']:<{inputs_w}}  "
            f"{r['description']}"
        )
    print(
        "\nparams: at the default config and the data's class count; fusion methods count "
        "the values they fit on val (`fuse --help`)."
    )
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
    entry, cfg = _resolve_config(args.model, args.config_files, args.assignments, args.data)
    if args.folds:
        if args.nproc_per_node:
            raise UsageError("--folds runs one fold after another: use it without torchrun")
        return _train_kfold(entry, cfg, args.out, args.run_id, args.folds)
    return _train(entry, cfg, args.out, args.run_id, args)


def _train_kfold(entry: Any, cfg: Any, out: Path, run_id: str | None, folds: int) -> int:
    from trainers.config import ConfigError
    from trainers.engine.kfold import run_kfold
    from trainers.rundir import new_run_id

    _check_inputs(entry, cfg)
    path = out / (run_id or new_run_id(entry.name))
    print(f"k-fold: {path} ({folds} folds)", flush=True)
    try:
        summary = run_kfold(entry, cfg, path, folds, argv=sys.argv)
    except ConfigError as exc:
        raise UsageError(f"config error: {exc}") from None
    except Exception as exc:
        print(f"k-fold failed: {type(exc).__name__}: {exc} (see {path})", file=sys.stderr)
        return 1
    mean, std = summary["mean"]["test"], summary["std"]["test"]
    print(
        "done: test "
        + ", ".join(f"{m} {mean[m]:.4f} +- {std[m]:.4f}" for m in ("accuracy", "macro_f1"))
        + f" over {folds} folds -> {path / 'kfold.json'}"
    )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from trainers.engine.sweep import (
        SweepError,
        load_sweep_file,
        parse_grid_arg,
        plan_sweep,
        run_sweep,
    )
    from trainers.rundir import new_run_id

    try:
        spec = load_sweep_file(args.file) if args.file else {"grid": {}, "fixed": {}}
        model = args.model or spec.get("model")
        if not model:
            raise UsageError('sweep needs a MODEL (or model = "..." in the --file)')
        if args.model and spec.get("model") and args.model != spec["model"]:
            raise UsageError(
                f"MODEL {args.model} disagrees with {args.file}'s model {spec['model']}"
            )
        data = args.data or (Path(spec["data"]) if spec.get("data") else None)
        grid: dict[str, list[Any]] = dict(spec["grid"])
        for text in args.grid:
            key, values = parse_grid_arg(text)
            grid[key] = values
        # The file's [fixed] keys apply as --set does (after --config files), before --set.
        fixed = [f"{k}={_toml_value(v)}" for k, v in spec["fixed"].items()] + args.assignments
        entry, cfg = _resolve_config(model, args.config_files, fixed, data)
        _check_inputs(entry, cfg)
        plan = plan_sweep(
            entry,
            cfg,
            grid,
            fixed,
            seeds=args.seeds if args.seeds is not None else spec.get("seeds"),
            folds=args.folds if args.folds is not None else spec.get("folds"),
            group=args.group or spec.get("group"),
        )
        exp_dir = args.out / (args.exp_id or new_run_id(f"sweep-{entry.name}"))
        print(f"experiment: {exp_dir} ({len(plan.runs)} runs)", flush=True)
        if args.dry_run:
            for i, pr in enumerate(plan.runs, 1):
                fold = "" if pr.fold is None else f" fold {pr.fold}"
                print(f"  {i}/{len(plan.runs)} {pr.dir}: {pr.cell} seed {pr.seed}{fold}")
            return 0
        result = run_sweep(entry, plan, exp_dir, argv=sys.argv)
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    done = result.kept + result.trained
    print(
        f"sweep: {done}/{result.total} runs finished ({result.kept} kept from before, "
        f"{result.trained} trained now, {result.resumed} of them resumed), "
        f"{len(result.failed)} failed -> {exp_dir / 'experiment.json'}"
    )
    if result.stopped_by is not None:
        print(
            f"stopped; continue with the same command and --out {args.out} --id {exp_dir.name}",
            file=sys.stderr,
        )
        return 128 + int(result.stopped_by)
    return 1 if result.failed else 0


def _toml_value(value: Any) -> str:
    """A sweep file's [fixed] value as --set would write it."""
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def _check_inputs(entry: Any, cfg: Any) -> None:
    """What the run reads must be named before its directory is created (exit 2).

    A data config may say what it still needs (``missing_inputs()``, e.g. the
    runs attention fusion reads); otherwise it needs a data set directory.
    """
    missing = getattr(cfg.data, "missing_inputs", None)
    if callable(missing):
        problem = missing()
    elif not getattr(cfg.data, "root", ""):
        problem = f"--data DIR is required: the data set directory {entry.name} trains on"
    else:
        problem = None
    if problem:
        raise UsageError(problem)
    _fetch_named_weights(cfg)


def _fetch_named_weights(cfg: Any) -> None:
    """Download ``train.pretrained=imagenet|kinetics400`` into torch hub's cache now.

    Before the run directory exists, so an offline host or a bad hash is a
    usage error naming the URL and the cache path, not a run that fails after
    its directory, log and events were created. A file already cached costs
    nothing here; the engine then loads it from the cache.
    """
    from trainers.config import PRETRAINED_NAMES

    spec = getattr(getattr(cfg, "train", None), "pretrained", "")
    source = getattr(type(cfg), "pretrained_sources", {}).get(spec)
    if spec not in PRETRAINED_NAMES or source is None:
        return
    from trainers.engine.weights import WeightsDownloadError, fetch

    try:
        fetch(source)
    except WeightsDownloadError as exc:
        raise UsageError(f"train.pretrained={spec}: {exc}") from None


def _train(
    entry: Any, cfg: Any, out: Path, run_id: str | None, args: argparse.Namespace | None = None
) -> int:
    from trainers.engine.trainer import Trainer, new_manifest
    from trainers.rundir import RunDir, new_run_id
    from trainers.session import fit_exit_code

    _check_inputs(entry, cfg)
    dist = _distributed(args)
    run = RunDir(out / (run_id or new_run_id(entry.name)))
    if run.path.exists():
        raise UsageError(f"{run.path} already exists: pick another --run-id or use `resume`")
    run.create()
    manifest = new_manifest(run, entry, cfg, sys.argv)
    if dist:
        manifest["distributed"] = dist
    run.write_manifest(manifest)
    print(f"run: {run.path}", flush=True)
    if dist:
        return _launch(run, dist)
    return fit_exit_code(Trainer(entry, cfg, run), resume=False)


def _distributed(args: argparse.Namespace | None) -> dict[str, Any] | None:
    """The torchrun settings of the command line, checked; None without torchrun."""
    if args is None or not getattr(args, "nproc_per_node", 0):
        if args is not None and getattr(args, "nnodes", 1) > 1:
            raise UsageError("--nnodes needs --nproc-per-node N (processes on each node)")
        return None
    if args.nproc_per_node < 1:
        raise UsageError(f"--nproc-per-node must be >= 1, got {args.nproc_per_node}")
    if args.nnodes < 1 or args.max_restarts < 0:
        raise UsageError("--nnodes must be >= 1 and --max-restarts >= 0")
    if args.nnodes > 1 and ":" not in args.rdzv_endpoint:
        raise UsageError(
            f"--nnodes {args.nnodes} needs --rdzv-endpoint HOST:PORT, the first node's address "
            f"(got {args.rdzv_endpoint!r})"
        )
    return {
        "nproc_per_node": args.nproc_per_node,
        "nnodes": args.nnodes,
        "node_rank": args.node_rank,
        "rdzv_endpoint": args.rdzv_endpoint,
        "max_restarts": args.max_restarts,
    }


def _launch(run: Any, dist: dict[str, Any]) -> int:
    from trainers.launch import launch

    return launch(
        run,
        dist["nproc_per_node"],
        nnodes=dist["nnodes"],
        rdzv_endpoint=dist["rdzv_endpoint"],
        max_restarts=dist["max_restarts"],
        node_rank=dist["node_rank"],
    )


def cmd_resume(args: argparse.Namespace) -> int:
    from trainers.rundir import RunDir
    from trainers.session import fit_exit_code, trainer_from_manifest

    run = RunDir(args.run_dir)
    trainer = trainer_from_manifest(run)
    manifest = run.read_manifest()
    dist = _distributed(args)
    resumes = [
        *manifest.get("resumes", []),
        {
            "at": time.time(),
            "pid": os.getpid(),
            "argv": sys.argv,
            **({"distributed": dist} if dist else {}),
        },
    ]
    run.update_manifest(resumes=resumes)
    print(f"run: {run.path}", flush=True)
    if dist:
        # The launcher is the run's process now: `stop` signals it.
        run.update_manifest(pid=os.getpid(), status="starting", distributed=dist)
        return _launch(run, dist)
    return fit_exit_code(trainer, resume=True)


def cmd_worker(args: argparse.Namespace) -> int:
    from trainers.launch import worker_main

    return worker_main(args.run_dir)


def cmd_fuse(args: argparse.Namespace) -> int:
    runs = [str(p.expanduser().resolve()) for p in args.runs]
    if args.method == "attention-fusion":
        if len(runs) != 2:
            raise UsageError(f"attention-fusion takes two runs, got {len(runs)}")
        if args.metric is not None:
            raise UsageError("--metric is for late-fusion; attention-fusion uses train.monitor")
        entry, cfg = _resolve_config(
            args.method, args.config_files, args.assignments, args.data, {"data.runs": runs}
        )
        return _train(entry, cfg, args.out, args.run_id)

    from trainers.fusion.late import image_ensemble, late_fusion
    from trainers.fusion.runs import FusionError

    if args.assignments or args.config_files or args.data is not None:
        raise UsageError(f"--set, --config and --data apply to attention-fusion, not {args.method}")
    try:
        if args.method == "late-fusion":
            if len(runs) != 2:
                raise UsageError(f"late-fusion takes two runs (visual, audio), got {len(runs)}")
            result = late_fusion(
                runs[0], runs[1], args.out, args.run_id, args.metric, args.step, sys.argv
            )
            fusion = result.summary["fusion"]
            what = (
                f"weight {fusion['weight']:.2f} on {Path(runs[0]).name}, "
                f"{1 - fusion['weight']:.2f} on {Path(runs[1]).name} "
                f"(best val {fusion['metric']} {result.summary['best_value']:.4f})"
            )
        else:
            if args.metric is not None or args.step != 0.05:
                raise UsageError("--metric and --step are for late-fusion (nothing is tuned here)")
            if len(runs) < 2:
                raise UsageError(f"image-ensemble takes two or more runs, got {len(runs)}")
            result = image_ensemble(runs, args.out, args.run_id, sys.argv)
            what = f"equal weights over {len(runs)} runs"
    except FusionError as exc:
        raise UsageError(str(exc)) from None
    test = result.summary["test"]
    print(f"run: {result.run.path}")
    print(
        f"done: {args.method}, {what}; test accuracy {test['accuracy']:.4f}, "
        f"macro-F1 {test['macro_f1']:.4f}, UAR {test['uar']:.4f} -> {result.run.summary}"
    )
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from trainers.data.synth import write_combined, write_corpus

    if args.actors < 1:
        raise UsageError(f"--actors {args.actors}: need at least 1")
    t0 = time.perf_counter()
    shape = {
        "actors": args.actors,
        "seed": args.seed,
        "statements": args.statements,
        "repetitions": args.repetitions,
        "progress": _progress_printer("synth"),
        "workers": args.workers,
        "realistic": args.realistic,
    }
    try:
        if args.layout == "combined":
            parts = write_combined(args.out, **shape)
            n = sum(len(m.recordings) for m in parts.values())
            what = " and ".join(f"{len(m.recordings)} {name}" for name, m in parts.items())
            print(f"wrote {n} recordings ({what}) to {args.out} in {time.perf_counter() - t0:.1f}s")
            return 0
        manifest = write_corpus(args.layout, args.out, **shape)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    n = len(manifest.recordings)
    print(f"wrote {n} recordings to {args.out} in {time.perf_counter() - t0:.1f}s")
    return 0


def _preparing_model(dataset: str, model: str | None) -> str:
    """Whose preprocessing ``prepare`` (and ``describe``'s face counts) use by default."""
    return model or ("meld-slowfast" if dataset == "meld" else "hybrid-attention")


def cmd_prepare(args: argparse.Namespace) -> int:
    from trainers.data.config import DataError
    from trainers.rundir import BAD_INPUTS, BadInputLog, RunDir

    model = _preparing_model(args.dataset, args.model)
    presets: dict[str, Any] = {"data.cache_dir": str(args.out.resolve())}
    presets["data.prepare_workers"] = args.workers or os.cpu_count() or 1
    entry, cfg = _resolve_config(model, args.config_files, args.assignments, args.src, presets)
    if not hasattr(cfg.data, "layout"):
        raise UsageError(f"{model} does not read audio-visual recordings: nothing to prepare")
    try:
        cfg.data.layout = args.dataset
        cfg.data.validate()
    except Exception as exc:
        raise UsageError(f"config error: {exc}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / BAD_INPUTS).unlink(missing_ok=True)  # this prepare's list, not an earlier one's
    module = entry.data(cfg)
    started = time.monotonic()
    try:
        module.setup(BadInputLog(args.out / BAD_INPUTS), progress=_progress_printer("prepare"))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    info = module.describe()
    bad = RunDir(args.out).read_bad_inputs()
    print(
        f"prepared {info['recordings']} recordings of {args.dataset} for {model} in "
        f"{time.monotonic() - started:.1f} s: {info['decoded_recordings']} decoded, "
        f"{info['cached_recordings']} already cached, {len(bad)} unusable input(s) "
        f"(listed in {args.out / BAD_INPUTS}), faces not found in "
        f"{info['faces_not_found']}; train with --set data.cache_dir={args.out}"
    )
    if info.get("excluded"):
        from trainers.data.combined import format_excluded

        print(f"  excluded by the label map: {format_excluded(info['excluded'])}")
    from trainers.data.face_counts import face_warnings, log_lines

    for line in log_lines(info.get("faces")):
        print(f"  {line}")
    for warning in face_warnings(info.get("faces")):
        print(f"  warning: {warning['message']}")
    for item in bad[:20]:
        print(f"  skipped {item['path']}: {item['reason']}")
    if len(bad) > 20:
        print(f"  ... and {len(bad) - 20} more")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from trainers.data.config import DataError
    from trainers.data.describe import describe, format_text

    if args.faces < 0:
        raise UsageError(f"--faces {args.faces}: expected a number of recordings >= 0")
    faces_cfg = None
    if args.dataset != "fi":
        model = _preparing_model(args.dataset, args.model)
        _, cfg = _resolve_config(model, args.config_files, args.assignments, None)
        if not hasattr(cfg.data, "layout"):
            raise UsageError(f"--model {model} does not crop faces from recordings")
        cfg.data.layout = args.dataset
        faces_cfg = cfg.data
    try:
        info = describe(args.dataset, str(args.src), faces_cfg, args.faces)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(info, indent=1) if args.json else format_text(info))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from trainers.inference.bundle import BundleError, load_bundle
    from trainers.inference.predict import predict_inputs, recompute_inference, table_row
    from trainers.inference.table import table_header

    if not (args.device == "cpu" or args.device.startswith("cuda")):
        raise UsageError(f"--device {args.device!r}: expected cpu, cuda or cuda:N")
    try:
        bundle = load_bundle(args.run, args.checkpoint, args.trust_pickle, args.device)
        if bundle.inference is None and args.data is not None:
            recompute_inference(bundle, str(args.data), progress=_progress_printer("data"))
            print(
                f"note: {bundle.checkpoint} has no inference state: preprocessing statistics "
                f"recomputed from the train split of {args.data}",
                file=sys.stderr,
            )
        elif args.data is not None:
            print("note: --data ignored: the checkpoint carries its statistics", file=sys.stderr)
        failed = 0
        header = False
        progress = _progress_printer("predict")
        for row in predict_inputs(bundle, args.inputs, progress=progress):
            if not row.ok:
                failed += 1
                print(f"error: {row.input}: {row.error}", file=sys.stderr)
                if args.json:
                    print(json.dumps(row.to_json()), flush=True)
                continue
            if args.json:
                print(json.dumps(row.to_json()), flush=True)
                continue
            if not header:
                print(table_header(bundle.classes))
                header = True
            print(table_row(row, bundle.classes), flush=True)
    except BundleError as exc:
        raise UsageError(str(exc)) from None
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from trainers.inference.bundle import BundleError
    from trainers.inference.export import ExportError, export_model

    try:
        result = export_model(args.run, args.out, args.format, args.checkpoint, args.trust_pickle)
    except BundleError as exc:
        raise UsageError(str(exc)) from None
    except ExportError as exc:
        if not exc.complete:
            raise UsageError(str(exc)) from None
        print(f"error: {exc}", file=sys.stderr)
        print(f"note: the safetensors export in {args.out} is complete", file=sys.stderr)
        return 1
    for file in result.files:
        print(f"wrote {file} ({file.stat().st_size / 1e6:.1f} MB)")
    for fmt, diff in result.checked.items():
        print(f"checked {fmt} against PyTorch on two example batches: max |diff| {diff:.1e}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from trainers.inference.bundle import BundleError, load_bundle
    from trainers.inference.evaluate import (
        EvaluationError,
        NothingScored,
        check_name,
        default_name,
        evaluate,
        format_table,
    )
    from trainers.rundir import RunDir

    if not args.data.is_dir():
        raise UsageError(f"--data {args.data}: no such directory")
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        raise UsageError(f"--device {args.device!r}: expected cpu, cuda or cuda:N")
    try:
        name = check_name(args.out) if args.out is not None else None
        bundle = load_bundle(args.run, args.checkpoint, args.trust_pickle, args.device)
        layout = args.layout or getattr(bundle.config.data, "layout", None) or "ravdess"
        name = name or default_name(args.data, layout, args.split)
        evaluation = evaluate(
            bundle, args.data, layout, args.split, name, progress=_progress_printer("evaluate")
        )
    except (BundleError, EvaluationError) as exc:
        raise UsageError(str(exc)) from None
    except NothingScored as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    run = RunDir(args.run)
    print(format_table(evaluation, (run.read_summary() or {}).get("test")))
    print(f"wrote {run.evaluations / name}/ (evaluation.json, predictions.jsonl)")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from trainers.inference.push import PushError, PushFailed, push

    try:
        result = push(
            args.run,
            args.repo,
            private=args.private,
            revision=args.revision,
            include_onnx=args.include_onnx,
            checkpoint=args.checkpoint,
            trust_pickle=args.trust_pickle,
            progress=lambda line: print(line, flush=True),
        )
    except PushError as exc:
        raise UsageError(str(exc)) from None
    except PushFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name in result.deleted:
        print(f"deleted {name} from {result.repo_id} (not in this export)")
    if result.new_commit:
        print(f"pushed {len(result.files)} files to {result.repo_id}@{result.revision}: "
              f"{result.message}")  # fmt: skip
    else:
        print(f"nothing changed: {result.repo_id}@{result.revision} already holds these files; "
              "no new commit")  # fmt: skip
    print(f"commit: {result.commit_url}")
    return 0


COMMANDS = {
    "list": cmd_list,
    "train": cmd_train,
    "resume": cmd_resume,
    "sweep": cmd_sweep,
    "worker": cmd_worker,
    "config": cmd_config,
    "synth": cmd_synth,
    "fuse": cmd_fuse,
    "describe": cmd_describe,
    "prepare": cmd_prepare,
    "predict": cmd_predict,
    "evaluate": cmd_evaluate,
    "export": cmd_export,
    "push": cmd_push,
}


def main(argv: list[str] | None = None) -> int:
    from trainers.session import RunManifestError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, RunManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
