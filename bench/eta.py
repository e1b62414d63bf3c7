"""ETA error of the run view's estimator against the naive elapsed / progress estimate,
on real recorded runs.

Each run's events.jsonl is replayed into the dashboard's own state
(:class:`~emoconsole.dashboard.state.RunState`, which feeds
:class:`~emoconsole.eta.EtaEstimator`) up to the moment 10 %, 25 % and 50 % of the
run's wall time had passed (first event to the terminal status). At that moment
both estimates are read and compared with the time the run really had left:

* estimator: ``to_max_epochs`` (the header's ETA) and, when the run reports
  one, ``to_earliest_stop`` (the early-stopping bound shown beside it);
* naive: elapsed since the first event / the progress bar's fraction of
  optimizer steps (the stronger of the two naive baselines; the runs table's
  per-epoch estimate is coarser).

Error is signed, (estimate - true) / true: negative means the run took longer
than promised. "n/a" means the method had no number yet (still preparing data).

Without ``--runs``, a corpus is generated and two tiny hybrid-attention runs are
trained, one after the other (about 4-5 minutes on 2 cores):

* ``max-epochs``: 3 epochs, validation after each, decodes the corpus into a
  feature cache first (a long preparation phase, as on any first run);
* ``early-stop``: up to 8 epochs with patience 1 and a min_delta of 0.05, on the
  warm cache: it stops when accuracy fails to gain 5 points in an epoch.

    uv run python bench/eta.py [--runs RUN_DIR ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoconsole.dashboard.state import RunState
from emoconsole.eta import naive_eta
from remote.watch import EventItem

POINTS = (0.10, 0.25, 0.50)
TERMINAL = ("completed", "failed", "stopped")
RUNS = {
    "max-epochs": ["train.epochs=3"],
    "early-stop": ["train.epochs=8", "train.patience=1", "train.min_delta=0.05"],
}


@dataclass(frozen=True)
class Row:
    run: str
    point: float
    true_s: float
    est_s: float | None
    stop_s: float | None
    naive_s: float | None
    phase: str
    basis: str  # "run": points of the whole run; "train": of the time after data set-up


def load_events(run_dir: Path) -> list[dict[str, Any]]:
    with open(run_dir / "events.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def replay(name: str, events: list[dict[str, Any]], basis: str = "run") -> list[Row]:
    """Feed events up to each cut point into a fresh RunState and read both estimates.
    ``basis="train"`` places the points in the time after the first epoch starts: a
    first run's data set-up can outlast its training (both estimates are n/a there)."""
    start = events[0]["time"]
    origin = start
    if basis == "train":
        origin = next(e["time"] for e in events if e["type"] == "epoch_start")
    end = next(
        (e["time"] for e in events if e["type"] == "status" and e.get("status") in TERMINAL),
        None,
    )
    if end is None:
        raise SystemExit(f"{name}: no terminal status in events.jsonl (still running?)")
    rows = []
    for point in POINTS:
        now = origin + point * (end - origin)
        state = RunState(run=name, host="bench")
        for event in events:
            if event["time"] > now:
                break
            state.add(EventItem(event))
        est = state.eta.estimate(now)
        done, total = state.progress()
        naive = naive_eta(now - start, done / total) if total else None
        stop = est.to_earliest_stop if est.earliest_stop_epoch is not None else None
        phase = state.status if state.status != "running" else f"epoch {state.epoch}"
        rows.append(Row(name, point, end - now, est.to_max_epochs, stop, naive, phase, basis))
    return rows


def error(estimate: float | None, true: float) -> str:
    return "n/a" if estimate is None else f"{100 * (estimate - true) / true:+.0f}"


def mean_abs(values: list[float | None], trues: list[float]) -> str:
    errs = [abs(v - t) / t for v, t in zip(values, trues, strict=True) if v is not None]
    return f"{100 * sum(errs) / len(errs):.0f} % over {len(errs)}" if errs else "n/a"


def create_runs(root: Path) -> list[Path]:
    """A generated corpus and the two runs above, trained here with the real CLI."""
    data, runs, cache = root / "data", root / "runs", root / "cache"
    py = [sys.executable, "-m", "trainers"]
    t0 = time.perf_counter()
    subprocess.run([*py, "synth", "--layout", "ravdess", "--out", str(data),
                    "--actors", "6", "--seed", "0"], check=True, capture_output=True)  # fmt: skip
    print(f"corpus: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    out = []
    for name, sets in RUNS.items():
        t0 = time.perf_counter()
        before = set(runs.glob("*")) if runs.exists() else set()
        cmd = [*py, "train", "hybrid-attention", "--data", str(data), "--out", str(runs),
               "--set", f"data.cache_dir={cache}"]  # fmt: skip
        for item in sets:
            cmd += ["--set", item]
        subprocess.run(cmd, check=True, capture_output=True)
        (run_dir,) = set(runs.glob("*")) - before
        named = runs / f"{run_dir.name}-{name}"
        run_dir.rename(named)
        out.append(named)
        print(f"{name}: {time.perf_counter() - t0:.0f} s -> {named}", file=sys.stderr)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", type=Path, help="finished run directories to replay")
    parser.add_argument("--keep", type=Path, help="create runs here and keep them (else a tmp dir)")
    args = parser.parse_args()
    scratch = None
    if args.runs:
        run_dirs = args.runs
    else:
        root = args.keep or Path(tempfile.mkdtemp(prefix="emo-bench-eta-"))
        scratch = None if args.keep else root
        run_dirs = create_runs(root)
    try:
        rows = [
            row
            for basis in ("run", "train")
            for run_dir in run_dirs
            for row in replay(run_dir.name, load_events(run_dir), basis)
        ]
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    print(f"{'run':<44} {'of':>5} {'point':>5} {'phase':>10} {'true left s':>11} "
          f"{'est err %':>9} {'naive err %':>11} {'stop-bound err %':>16}")  # fmt: skip
    for r in rows:
        print(f"{r.run[-44:]:<44} {r.basis:>5} {r.point:>5.0%} {r.phase:>10} {r.true_s:>11.1f} "
              f"{error(r.est_s, r.true_s):>9} {error(r.naive_s, r.true_s):>11} "
              f"{error(r.stop_s, r.true_s):>16}")  # fmt: skip
    for basis in ("run", "train"):
        part = [r for r in rows if r.basis == basis]
        trues = [r.true_s for r in part]
        print(f"mean |error|, points of the {basis}: estimator "
              f"{mean_abs([r.est_s for r in part], trues)}, naive "
              f"{mean_abs([r.naive_s for r in part], trues)}, stop bound "
              f"{mean_abs([r.stop_s for r in part], trues)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
