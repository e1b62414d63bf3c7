"""Predict on CPU for hybrid-attention: end to end against the decode-only floor, and
onnxruntime against eager PyTorch on the forward pass.

(a) Seconds per 3 s of clip for ``predict`` end to end (decode, face detection and
    crop, audio features, normalisation, forward) against the floor: PyAV decoding
    every video frame and audio sample of the same file, nothing else. Two clips:
    the generator's own size (192x144, 15 fps, 16 kHz) and the same performance as
    the real RAVDESS downloads are (1280x720, 30 fps, 48 kHz AAC). Target: predict
    at most 2x the floor.
(b) The forward pass alone at batch 1 on the same clip's tensors: eager PyTorch
    (``torch.no_grad``) against onnxruntime on the exported ``model.onnx``.
    Target: onnxruntime at least 1.5x faster.

The model is the recipe's default size with the weights of a 1-epoch run on a small
generated corpus (timing does not depend on what it learned). Best of ``--rounds``
for every figure, all measured in the same process, one thread each
(``torch.set_num_threads(1)``, onnxruntime's intra-op threads 1) so the ratios
compare the work, not the scheduling.

    uv run python bench/predict.py [--rounds 5] [--out bench/out/predict]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def best_of(rounds: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def train_run(out: Path) -> Path:
    """A 1-epoch hybrid-attention run at the recipe's size on a 4-actor corpus."""
    run = out / "runs" / "bench"
    if (run / "checkpoints" / "best.pt").is_file():
        return run
    from trainers.data.synth import write_corpus

    data = out / "ravdess"
    write_corpus("ravdess", data, actors=4, seed=3, statements=1, repetitions=1)
    argv = [
        sys.executable, "-m", "trainers", "train", "hybrid-attention", "--data", str(data),
        "--out", str(out / "runs"), "--run-id", "bench", "--set", "train.epochs=1",
        "--set", f"data.cache_dir={out / 'cache'}",
    ]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
    return run


def write_clips(out: Path) -> dict[str, Path]:
    """One performance twice: as the generator writes it, and as RAVDESS ships it."""
    import cv2
    import soxr

    from trainers.data.synth import clip as clipmod
    from trainers.data.synth.encode import write_mp4

    actor = clipmod.make_actor(0, 1, 1, female=False)
    clip = clipmod.render_clip(actor, "happy", 2, 1, seed=7)
    clips = {"192x144 15 fps 16 kHz": out / "native.mp4", "1280x720 30 fps 48 kHz": out / "hd.mp4"}
    write_mp4(clips["192x144 15 fps 16 kHz"], clip.frames, clip.fps, clip.audio, clip.sample_rate)
    hd = np.stack([cv2.resize(f, (1280, 720), interpolation=cv2.INTER_CUBIC) for f in clip.frames])
    hd = np.repeat(hd, 2, axis=0)  # 30 fps
    audio = soxr.resample(clip.audio.astype(np.float32) / 32768, clip.sample_rate, 48000)
    audio48 = np.clip(audio * 32768, -32768, 32767).astype(np.int16)
    write_mp4(clips["1280x720 30 fps 48 kHz"], hd, 2 * clip.fps, audio48, 48000)
    return clips


def decode_floor(path: Path) -> None:
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            frame.to_ndarray()


def duration_s(path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.frames / stream.average_rate)


def onnx_forward(bundle, batch: dict, out: Path, rounds: int) -> tuple[float, float] | str:
    """(eager s, onnxruntime s) at batch 1, or why there is no figure."""
    import torch

    from trainers.inference.export import export_model

    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime not installed (the export extra; the dev group has it)"
    folder = out / "export"
    shutil.rmtree(folder, ignore_errors=True)
    export_model(bundle.path, folder, "onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(folder / "model.onnx"), options)
    names = [i.name for i in session.get_inputs()]
    feeds = {n: batch[n].numpy() for n in names}
    with torch.no_grad():
        eager = best_of(rounds, lambda: bundle.model(batch))
    onnx = best_of(rounds, lambda: session.run(None, feeds))
    return eager, onnx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "predict")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(1)
    from trainers.inference.bundle import load_bundle
    from trainers.inference.predict import collect_inputs, pipeline_of, predict_one

    print("training a 1-epoch hybrid-attention run for its checkpoint ...", flush=True)
    bundle = load_bundle(train_run(args.out))
    kind, pipeline = pipeline_of(bundle)
    clips = write_clips(args.out)

    print(f"\n(a) predict end to end vs PyAV decode-only, best of {args.rounds}, one thread")
    print(f"  {'clip':<24} {'length s':>8} {'decode s/3s':>11} {'predict s/3s':>12} {'ratio':>6}")
    for label, path in clips.items():
        (item,), errors = collect_inputs([path], kind)
        assert not errors
        length = duration_s(path)
        floor = best_of(args.rounds, lambda path=path: decode_floor(path)) * 3 / length
        full = best_of(args.rounds, lambda item=item: predict_one(bundle, pipeline, item))
        full *= 3 / length
        verdict = "met" if full <= 2 * floor else "NOT met"
        print(
            f"  {label:<24} {length:>8.2f} {floor:>11.3f} {full:>12.3f} {full / floor:>6.2f}"
            f"  target <= 2.0: {verdict}"
        )

    print(f"\n(b) forward pass at batch 1, eager PyTorch vs onnxruntime, best of {args.rounds}")
    (item,), _ = collect_inputs([clips["192x144 15 fps 16 kHz"]], kind)
    rows, _sources = pipeline.rows(bundle, item)
    batch = pipeline.collate(rows[:1])
    result = onnx_forward(bundle, batch, args.out, args.rounds)
    if isinstance(result, str):
        print(f"  no figure: {result}")
    else:
        eager, onnx = result
        verdict = "met" if eager / onnx >= 1.5 else "NOT met"
        print(f"  eager {eager * 1e3:.2f} ms, onnxruntime {onnx * 1e3:.2f} ms: "
              f"onnxruntime {eager / onnx:.2f}x faster  target >= 1.5x: {verdict}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
