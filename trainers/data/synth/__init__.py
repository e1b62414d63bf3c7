"""A deterministic generator of small, learnable audio-visual emotion corpora.

Why it exists and looks like this:

* No real data set can be downloaded on the machines this project is built
  and tested on, yet every loader, model and the console must run end to end
  on real files. So the project writes its own corpora, in each real data
  set's exact layout, with real media containers and codecs.
* "Learnable" is the point: drawn faces and synthetic voices whose
  expression and prosody follow the emotion the same way for every actor,
  while actors differ in looks and voice, so a model trained on some actors
  must generalise to unseen ones, as on the real corpora.
* Same arguments, same bytes: every recording is rendered from its own seed
  in any process, encoders run single-threaded with fixed timestamps, and
  files are written under temporary names and renamed, so the output does
  not depend on ``workers`` and a killed run never leaves a truncated file
  under a real name.
* Layouts are small modules (``ravdess.py``) offering ``plan`` and ``write``;
  this module owns the rest (validation, processes, progress, manifest, the
  ground-truth face boxes of :mod:`~trainers.data.synth.truth`), so adding
  CREMA-D or MELD is one new file and one line in :data:`LAYOUTS`.
* ``realistic=True`` imitates the real downloads instead of the tidy default
  (:data:`clip.REALISTIC`: 720p, 29.97 fps, 48 kHz, B-frames, and each
  layout's own quirks). A layout opts in by setting ``SUPPORTS_REALISTIC =
  True`` and accepting ``plan(..., realistic=True)``; asking a layout that has
  not for it is an error rather than a quietly tidy corpus.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import IO, Any, Protocol

from trainers.data.synth import clip
from trainers.data.synth.manifest import MANIFEST_NAME, CorpusManifest, Recording
from trainers.data.synth.truth import FACES_NAME, write_face_boxes

__all__ = [
    "COMBINED_PARTS",
    "FACES_NAME",
    "LAYOUTS",
    "MANIFEST_NAME",
    "CorpusManifest",
    "Recording",
    "write_combined",
    "write_corpus",
]

# layout name -> module implementing it
LAYOUTS: dict[str, str] = {"ravdess": "trainers.data.synth.ravdess"}
LAYOUTS["fi"] = "trainers.data.synth.fi"  # image emotion (issue 3)
LAYOUTS["crema-d"] = "trainers.data.synth.cremad"  # issue 4
LAYOUTS["meld"] = "trainers.data.synth.meld"  # issue 4


# The combined data set (trainers.data.combined): layout -> its subfolder of the root.
COMBINED_PARTS: dict[str, str] = {"ravdess": "ravdess", "crema-d": "crema-d"}


class _Layout(Protocol):
    NAME: str
    EMOTIONS: tuple[str, ...]
    SUPPORTS_REALISTIC: bool  # read with getattr: a layout without it has no realistic mode

    # ``realistic=True`` is passed only to layouts that declare SUPPORTS_REALISTIC.
    def plan(
        self, *, actors: int, seed: int, statements: int, repetitions: int, **realistic: bool
    ) -> list[Any]: ...

    def write(self, task: Any, out: Path) -> Recording: ...


def _layout(name: str) -> _Layout:
    if name not in LAYOUTS:
        known = ", ".join(sorted(LAYOUTS))
        raise ValueError(f"unknown synth layout {name!r}; known layouts: {known}")
    return importlib.import_module(LAYOUTS[name])  # type: ignore[return-value]


def _check_realistic(name: str, mod: _Layout) -> None:
    if not getattr(mod, "SUPPORTS_REALISTIC", False):
        able = sorted(n for n in LAYOUTS if getattr(_layout(n), "SUPPORTS_REALISTIC", False))
        raise ValueError(
            f"synth layout {name!r} has no realistic mode yet; "
            f"layouts with one: {', '.join(able) or 'none'}"
        )


def _plan(mod: _Layout, realistic: bool, **shape: int) -> list[Any]:
    # The keyword only when asked for, so layouts without a realistic mode keep working.
    extra = {"realistic": True} if realistic else {}
    return mod.plan(**shape, **extra)


def write_corpus(
    layout: str,
    out: Path,
    *,
    actors: int = 12,
    seed: int = 0,
    statements: int = 2,
    repetitions: int = 2,
    progress: Callable[[int, int, str], None] | None = None,
    workers: int | None = None,
    realistic: bool = False,
) -> CorpusManifest:
    """Write a synthetic corpus in ``layout`` under ``out`` and return its manifest.

    ``realistic`` imitates the real download (:data:`clip.REALISTIC` and the
    layout's own quirks, e.g. RAVDESS's song takes); ValueError for a layout
    without that mode. ``statements`` and ``repetitions`` (1 or 2) shrink the
    corpus for tests.
    ``progress(done, total, what)`` is called after each recording.
    ``workers`` is the process count (default: all CPUs); the output is the
    same for any value. ``out`` must be empty, missing, or a corpus this
    function wrote before (whose files are then replaced; files the old
    manifest lists that the new corpus lacks are removed).
    """
    mod = _layout(layout)
    for name, value in (("statements", statements), ("repetitions", repetitions)):
        if value not in (1, 2):
            raise ValueError(f"{name} must be 1 or 2, not {value}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, not {seed}")
    if realistic:
        _check_realistic(layout, mod)
    tasks = _plan(
        mod, realistic, actors=actors, seed=seed, statements=statements, repetitions=repetitions
    )

    out = Path(out)
    previous = _previous_files(out)
    out.mkdir(parents=True, exist_ok=True)

    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    results: list[Recording] = []
    total = len(tasks)

    def done(rec: Recording) -> None:
        results.append(rec)
        if progress is not None:
            progress(len(results), total, rec.key)

    if n_workers == 1:
        for task in tasks:
            done(mod.write(task, out))
    else:
        _run_in_workers(LAYOUTS[layout], tasks, out, n_workers, done)

    order = {t.key: i for i, t in enumerate(tasks)}
    results.sort(key=lambda r: order[r.key])
    # A layout may write other sizes and rates than RAVDESS's in its realistic mode.
    profile = getattr(mod, "REALISTIC_PROFILE", clip.REALISTIC) if realistic else clip.STANDARD
    manifest = CorpusManifest(
        layout=mod.NAME,
        seed=seed,
        actors=actors,
        fps=profile.fps,
        frame_size=profile.frame_size,
        sample_rate=profile.sample_rate,
        classes=tuple(mod.EMOTIONS),
        recordings=tuple(results),
        root=out,
        profile=profile.name,
    )
    _remove_stale(out, previous, manifest.recordings)
    write_face_boxes(out, manifest.recordings)
    manifest.save(out)  # last: its presence means the corpus is complete
    return manifest


def write_combined(
    out: Path,
    *,
    actors: int = 12,
    seed: int = 0,
    statements: int = 2,
    repetitions: int = 2,
    progress: Callable[[int, int, str], None] | None = None,
    workers: int | None = None,
    realistic: bool = False,
) -> dict[str, CorpusManifest]:
    """Write the combined layout: ``out/ravdess`` and ``out/crema-d``, ``actors`` each.

    Each part is an ordinary corpus with its own manifest (so every
    single-corpus check applies to it unchanged); the combined loader reads
    ``out`` as one data set. Progress counts run over both parts. With
    ``realistic``, every part must have a realistic mode; that is checked
    before anything is written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    if realistic:
        for layout in COMBINED_PARTS:
            _check_realistic(layout, _layout(layout))
    plans = {
        layout: len(
            _plan(
                _layout(layout),
                realistic,
                actors=actors,
                seed=seed,
                statements=statements,
                repetitions=repetitions,
            )
        )
        for layout in COMBINED_PARTS
    }
    total = sum(plans.values())
    manifests: dict[str, CorpusManifest] = {}
    offset = 0
    for layout, folder in COMBINED_PARTS.items():

        def report(done: int, _total: int, what: str, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + done, total, what)

        manifests[layout] = write_corpus(
            layout,
            out / folder,
            actors=actors,
            seed=seed,
            statements=statements,
            repetitions=repetitions,
            progress=report,
            workers=workers,
            realistic=realistic,
        )
        offset += plans[layout]
    return manifests


def _previous_files(out: Path) -> list[str]:
    """Files of an earlier synthetic corpus in ``out``; refuse anything else."""
    if not out.exists():
        return []
    if not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    if (out / MANIFEST_NAME).is_file():
        try:
            old = CorpusManifest.load(out)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{out / MANIFEST_NAME} is not a readable synth manifest") from exc
        return [f for r in old.recordings for f in r.files]
    if any(out.iterdir()):
        raise ValueError(
            f"{out} is not empty and holds no {MANIFEST_NAME}: "
            "refusing to write a synthetic corpus into it (choose a new directory)"
        )
    return []


def _remove_stale(out: Path, previous: Sequence[str], current: Sequence[Recording]) -> None:
    keep = {f for r in current for f in r.files}
    for rel in previous:
        if rel not in keep:
            path = out / rel
            path.unlink(missing_ok=True)
            parent = path.parent
            if parent != out and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()


def _run_in_workers(
    module: str,
    tasks: Sequence[Any],
    out: Path,
    n_workers: int,
    done: Callable[[Recording], None],
) -> None:
    """Render ``tasks`` in ``n_workers`` child interpreters (see ``worker.py``)."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[3])  # the folder holding trainers/
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    # One process per core already: library thread pools would only spin
    # against each other (OpenBLAS busy-waits), costing more than they give.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    events: queue.Queue[tuple[int, str | None]] = queue.Queue()
    pending: Iterator[Any] = iter(tasks)
    procs: list[subprocess.Popen[str]] = []
    logs: list[IO[bytes]] = []
    in_flight = [0] * n_workers
    closed = [False] * n_workers

    def read(i: int, stream: IO[str]) -> None:
        for line in stream:
            events.put((i, line))
        events.put((i, None))

    def feed(i: int) -> None:
        stdin = procs[i].stdin
        assert stdin is not None
        if closed[i]:
            return
        task = next(pending, None)
        if task is None:
            stdin.close()
            closed[i] = True
            return
        in_flight[i] += 1
        try:
            stdin.write(json.dumps(dataclasses.asdict(task)) + "\n")
            stdin.flush()
        except BrokenPipeError:  # it died; its reader reports the failure
            closed[i] = True

    def failure(i: int, detail: str) -> RuntimeError:
        logs[i].seek(0)
        tail = logs[i].read().decode("utf-8", "replace")[-4000:]
        return RuntimeError(f"synth worker {i} failed: {detail}\n{tail}".rstrip())

    with ExitStack() as stack:
        stack.callback(_stop, procs)
        for i in range(n_workers):
            logs.append(stack.enter_context(tempfile.TemporaryFile()))
            proc = subprocess.Popen(
                [sys.executable, "-m", "trainers.data.synth.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logs[i],
                env=env,
                text=True,
                encoding="utf-8",
            )
            procs.append(proc)
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps({"module": module, "out": str(out)}) + "\n")
            threading.Thread(target=read, args=(i, proc.stdout), daemon=True).start()
        for _ in range(2):  # two tasks queued per worker keeps each one busy
            for i in range(n_workers):
                feed(i)
        running = n_workers
        while running:
            i, line = events.get()
            if line is None:
                running -= 1
                if in_flight[i]:
                    raise failure(i, f"exited with {in_flight[i]} recording(s) unfinished")
                continue
            msg = json.loads(line)
            if "error" in msg:
                raise failure(i, msg["error"])
            rec = msg["ok"]
            in_flight[i] -= 1
            feed(i)
            done(Recording(**{**rec, "files": tuple(rec["files"])}))
        for i, proc in enumerate(procs):
            if proc.wait() != 0:
                raise failure(i, f"exit status {proc.returncode}")


def _stop(procs: Sequence[subprocess.Popen[str]]) -> None:
    """Kill the workers this call started that are still running."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with suppress(OSError):
                    stream.close()
