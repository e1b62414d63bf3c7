"""Seconds from a spot interruption notice to the run's checkpoint and ``preempted``
status, through the real path: ``hostctl launch`` starts the trainer and its guard,
the guard polls a loopback IMDSv2 stand-in (tests/imds.py, the one the tests use),
the stand-in announces the interruption mid-epoch, the guard writes notice.json and
stops the trainer as ``stop`` does, the trainer checkpoints at its next step.

For each model it prints, in seconds after the announcement:

* ``noticed``: the guard saw it (at most one ``--poll`` interval; 5 s on EC2);
* ``checkpoint``: ``checkpoints/last.pt`` was renamed into place (its mtime);
* ``preempted``: the trainer's final status event;
* ``gone``: the guard found the trainer process gone (it polls every 0.2 s);
* ``noticed->ckpt``: from the guard's notice to the checkpoint, the part the poll
  interval does not decide (the trainer's next step, then the save);

and the checkpoint's size (model, optimizer state, RNG: what a storage push would
carry). AWS's notice is 120 s; whatever ``gone`` leaves is the time to push. The
push itself is not measured here (no ``--storage`` leg yet; bench/preempt.py does
the upload).

Models at the bench's size (CPU, a generated 4-actor RAVDESS corpus):
``hybrid-attention`` at the tests' small size, and ``slowfast-r50`` at its full
depth and width (R50, 64 channels: the largest checkpoint of the zoo) on small
clips (64 px, 8 frames), so the checkpoint is real-sized while a step stays short.
About 2-3 minutes on 2 cores, most of it decoding the corpus and importing torch.

    uv run python bench/preempt_notice.py [--models hybrid-attention,slowfast-r50]
        [--poll 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.imds: the IMDSv2 stand-in the tests use

from remote.onhost.proc import pid_alive  # noqa: E402
from tests.imds import ImdsStandIn  # noqa: E402
from trainers.events import read_events  # noqa: E402

COMMON = ["train.threads=2", "data.prepare_workers=2", "data.face_detector=haar"]
RECIPES: dict[str, list[str]] = {
    "hybrid-attention": [
        "model.audio_channels=16", "model.frame_width=8", "model.frame_dim=32",
        "model.tcn_channels=32", "model.d_model=32", "model.heads=2", "train.batch_size=8",
    ],
    "slowfast-r50": [
        "model.depth=50", "model.width=64", "data.face_size=64", "data.fps=8",
        "data.max_frames=16", "data.clip_frames=8", "data.clips_per_video_train=1",
        "data.eval_clips=1", "train.batch_size=4",
    ],
}  # fmt: skip


def _events(run_dir: Path) -> list[dict]:
    return read_events(run_dir / "events.jsonl") if run_dir.exists() else []


def measure(model: str, corpus: Path, work: Path, imds: ImdsStandIn, poll: float) -> dict:
    runs = work / "runs"
    run_dir = runs / model
    sets = []
    for item in [*COMMON, *RECIPES[model], "train.epochs=20", f"data.cache_dir={work / 'cache'}"]:
        sets += ["--set", item]
    argv = [sys.executable, "-m", "trainers", "train", model, "--data", str(corpus),
            "--out", str(runs), "--run-id", model, *sets]  # fmt: skip
    launch = [sys.executable, "-m", "remote.hostctl", "launch", "--runs", str(runs),
              "--run-id", model, "--imds", imds.url, "--poll", str(poll), "--", *argv]  # fmt: skip
    imds.clear()  # each run on a fresh "instance": the last model's notice is gone
    out = subprocess.run(launch, capture_output=True, text=True, check=True, cwd=REPO)
    answer = json.loads(out.stdout.splitlines()[-1])
    t0 = time.time()
    # Mid-epoch: after the first step of epoch 1, so the stop saves a mid-epoch checkpoint.
    while not any(e["type"] == "step" for e in _events(run_dir)):
        if not pid_alive(answer["pid"]) or time.time() - t0 > 900:
            log = (runs / ".launches" / model / "output.log").read_text()[-3000:]
            raise SystemExit(f"{model}: the run never reached its first step:\n{log}")
        time.sleep(0.2)
    announced = time.time()
    imds.announce("terminate", in_s=120)
    while pid_alive(answer["guard_pid"]):
        time.sleep(0.1)
    notice = json.loads((run_dir / "notice.json").read_text())
    final = read_events(run_dir / "events.jsonl")[-1]
    ckpt = run_dir / "checkpoints" / "last.pt"
    return {
        "model": model,
        "status": final.get("status"),
        "noticed": notice["noticed_at"] - announced,
        "checkpoint": notice["checkpoint_at"] - announced,
        "preempted": final["time"] - announced,
        "gone": notice["stopped_at"] - announced,
        # What the poll interval does not decide: the trainer's next step and its save.
        "noticed_to_checkpoint": notice["checkpoint_at"] - notice["noticed_at"],
        "checkpoint_mb": ckpt.stat().st_size / 1e6,
        "signal": notice["signal"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="hybrid-attention,slowfast-r50")
    parser.add_argument("--poll", type=float, default=5.0, help="the guard's IMDS poll (s)")
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--keep", type=Path, default=None, help="leave the runs here")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in RECIPES]
    if unknown:
        raise SystemExit(f"--models: no recipe for {', '.join(unknown)} (known: {list(RECIPES)})")
    from trainers.data.synth import write_corpus

    work = args.keep or Path(tempfile.mkdtemp(prefix="preempt-notice-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "ravdess"
    if not corpus.exists():
        write_corpus("ravdess", corpus, actors=args.actors, seed=3, statements=1, repetitions=1)
    imds = ImdsStandIn().start()
    rows = []
    try:
        for model in models:
            if (work / "runs" / model).exists():
                shutil.rmtree(work / "runs" / model)
                shutil.rmtree(work / "runs" / ".launches" / model, ignore_errors=True)
            rows.append(measure(model, corpus, work, imds, args.poll))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        imds.close()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nseconds after the announcement (guard poll {args.poll:g} s; AWS gives 120 s)")
    print(f"{'model':18} {'noticed':>8} {'ckpt':>7} {'preempted':>9} {'gone':>7} "
          f"{'noticed->ckpt':>13} {'ckpt MB':>8}")  # fmt: skip
    for r in rows:
        print(f"{r['model']:18} {r['noticed']:8.2f} {r['checkpoint']:7.2f} {r['preempted']:9.2f} "
              f"{r['gone']:7.2f} {r['noticed_to_checkpoint']:13.2f} "
              f"{r['checkpoint_mb']:8.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
