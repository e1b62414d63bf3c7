"""Faces not found, counted per split and per actor: the arithmetic, then a tiny corpus
where some recordings hold no face, through a real run (summary.json, train.log, the
warning event), a warm setup that reads the facts from the cache, and ``describe``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SMALL_MODEL
from trainers.data.face_counts import (
    FALLBACK,
    FaceRow,
    face_warnings,
    frames_with_face,
    log_lines,
    summarize_faces,
)
from trainers.data.ravdess import split_actors

# ----------------------------------------------------------------- the arithmetic


def test_counts_per_split_and_actor_and_who_is_over_the_threshold() -> None:
    rows = [
        *[FaceRow("train", "01", True, 1.0)] * 9,
        FaceRow("train", "01", False, 0.0),  # actor 01: 1 of 10
        *[FaceRow("train", "02", True, 0.5)] * 10,  # split train: 1 of 20 = 5%, not over
        FaceRow("val", "03", False, 0.0),
        FaceRow("val", "03", None),  # not checked: left out of the shares
    ]
    faces = summarize_faces(rows, "haar", 0.05)
    train = faces["splits"]["train"]
    assert (train["recordings"], train["checked"], train["without_face"]) == (20, 20, 1)
    assert train["fraction"] == 0.05
    assert train["frames_with_face"] == pytest.approx((9 * 1.0 + 0.0 + 10 * 0.5) / 20, abs=1e-4)
    assert train["actors_over"] == {"01": 0.1}  # 10% > 5%, though the split's 5% is not
    assert faces["actors"]["02"] == {
        "recordings": 10, "checked": 10, "without_face": 0, "fraction": 0.0,
        "frames_with_face": 0.5,
    }  # fmt: skip
    val = faces["splits"]["val"]
    assert (val["recordings"], val["checked"], val["fraction"]) == (2, 1, 1.0)
    assert faces["splits"]["test"]["fraction"] is None
    assert (faces["recordings"], faces["without_face"], faces["fallback"]) == (22, 2, FALLBACK)

    warnings = face_warnings(faces)
    assert [w["split"] for w in warnings] == ["train", "val"]  # train warns for actor 01 alone
    assert warnings[0]["message"] == (
        "faces not found in 5% of train recordings (1 of 20; actors 01 10%): "
        "crops fell back to the centre square of the frame (haar detector)"
    )
    assert warnings[0]["actors"] == {"01": 0.1} and warnings[0]["threshold"] == 0.05
    lines = log_lines(faces)
    assert lines[0].startswith("faces not found in train: 1 of 20 recordings (5%)")
    assert "1 more not checked" in lines[1]
    assert lines[2] == "faces not found in test: no recordings"
    # A higher threshold silences train but not val (100%).
    assert [w["split"] for w in face_warnings(summarize_faces(rows, "haar", 0.2))] == ["val"]


def test_share_of_frames_follows_the_detector_stride() -> None:
    # 10 crops, detector every 3rd: it ran on frames 0, 3, 6, 9.
    assert frames_with_face(2, 10, 3) == 0.5
    assert frames_with_face(4, 10, 3) == 1.0
    assert frames_with_face(0, 0, 3) is None


def test_the_threshold_key_is_validated() -> None:
    from trainers.config import ConfigError, resolve
    from trainers.registry import get_entry

    cfg = get_entry("hybrid-attention").default_config()
    assert cfg.data.face_warn_fraction == 0.05
    with pytest.raises((ConfigError, ValueError), match=r"data\.face_warn_fraction"):
        resolve(cfg, assignments=["data.face_warn_fraction=1.5"])


# ----------------------------------------------------------------- a corpus with faceless takes

PER_ACTOR = (0, 7, 14)  # three takes of each of the small corpus's four actors


def _faceless(path: Path) -> None:
    """Replace a take with a moving grey gradient (no face anywhere, but not a still
    picture, which trainers.data.guards would set aside) and a tone."""
    from trainers.data.synth.encode import write_mp4

    t = np.arange(16000) / 16000
    tone = (6000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)
    x = np.arange(192)[None, None, :, None]
    shift = 8 * np.arange(15)[:, None, None, None]
    frames = (90 + 60 * np.sin((x + shift) / 20.0)).astype(np.uint8)
    write_mp4(
        path, np.ascontiguousarray(np.broadcast_to(frames, (15, 144, 192, 3))), 15, tone, 16000
    )


@pytest.fixture(scope="module")
def faceless_corpus(small_corpus: Path, tmp_path_factory) -> tuple[Path, str, list[str]]:
    """12 takes of 4 actors; one train actor's first take has no face.
    (root, that actor, the train actors)."""
    root = tmp_path_factory.mktemp("faceless") / "ravdess"
    for folder in sorted(small_corpus.glob("Actor_*")):
        files = sorted(folder.glob("*.mp4"))
        (root / folder.name).mkdir(parents=True)
        for i in PER_ACTOR:
            shutil.copy2(files[i], root / folder.name / files[i].name)
    actors = sorted(p.name.removeprefix("Actor_") for p in root.iterdir())
    train = split_actors(actors, 0.15, 0.15, 0)["train"]
    victim = train[0]
    _faceless(sorted((root / f"Actor_{victim}").glob("*.mp4"))[0])
    return root, victim, train


@pytest.fixture(scope="module")
def faceless_run(faceless_corpus, tmp_path_factory):
    """One tiny in-process run on the corpus: (run directory, summary, config)."""
    from trainers.config import resolve
    from trainers.engine.trainer import Trainer, new_manifest
    from trainers.registry import get_entry
    from trainers.rundir import RunDir

    root, _, _ = faceless_corpus
    base = tmp_path_factory.mktemp("faceless-run")
    entry = get_entry("hybrid-attention")
    cfg = resolve(
        entry.default_config(),
        assignments=[*SMALL_MODEL, "train.epochs=1", "data.prepare_workers=1",
                     f"data.cache_dir={base / 'cache'}"],
    )  # fmt: skip
    cfg.data.root = str(root)
    run = RunDir(base / "run").create()
    run.write_manifest(new_manifest(run, entry, cfg, []))
    summary = Trainer(entry, cfg, run).fit()
    return run, summary, cfg


def test_a_run_counts_missed_faces_per_split_and_actor(faceless_corpus, faceless_run) -> None:
    from trainers.events import read_events, validate_event
    from trainers.runlog import RunLog

    _, victim, train_actors = faceless_corpus
    run, summary, _ = faceless_run
    faces = json.loads(run.summary.read_text())["data"]["faces"]
    assert faces == summary["data"]["faces"]
    assert (faces["detector"], faces["fallback"]) == ("haar", FALLBACK)
    assert faces["warn_fraction"] == 0.05
    train = faces["splits"]["train"]
    assert (train["recordings"], train["without_face"]) == (3 * len(train_actors), 1)
    assert train["fraction"] == round(1 / (3 * len(train_actors)), 4)
    assert train["actors_over"] == {victim: round(1 / 3, 4)}
    for split in ("val", "test"):  # the drawn faces are all found
        assert faces["splits"][split]["without_face"] == 0
        assert faces["splits"][split]["recordings"] == 3
    assert faces["actors"][victim]["without_face"] == 1
    assert faces["actors"][victim]["frames_with_face"] < 1.0
    assert sum(a["without_face"] for a in faces["actors"].values()) == 1

    log = run.train_log.read_text()
    assert f"faces not found in train: 1 of {3 * len(train_actors)} recordings" in log
    assert "faces not found in val: 0 of 3 recordings (0%)" in log
    warning_line = next(line for line in log.splitlines() if " WARNING " in line)
    assert f"actors {victim} 33%" in warning_line and FALLBACK in warning_line

    events = read_events(run.events)
    for i, event in enumerate(events, 1):
        validate_event(event, i)
    warnings = [e for e in events if e["type"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["kind"] == "faces_not_found" and warnings[0]["split"] == "train"
    assert warnings[0]["actors"] == {victim: round(1 / 3, 4)}
    assert warnings[0]["message"] in warning_line
    assert RunLog.read(run.events).warnings == warnings


def test_a_warm_setup_reads_the_facts_from_the_cache(faceless_corpus, faceless_run) -> None:
    from trainers.data.av_dataset import RavdessDataModule

    _, summary, cfg = faceless_run
    module = RavdessDataModule(cfg.data)
    module.setup(lambda path, reason: None)
    info = module.describe()
    assert info["decoded_recordings"] == 0 and info["cached_recordings"] == 12
    assert info["faces"] == summary["data"]["faces"]


def test_describe_reads_the_cache_and_decodes_a_sample_on_request(
    faceless_corpus, faceless_run, tmp_path: Path
) -> None:
    import dataclasses

    from trainers.data.describe import describe, format_text

    root, victim, _ = faceless_corpus
    _, summary, cfg = faceless_run
    info = describe("ravdess", str(root), cfg.data)
    faces = info["faces"]
    assert (faces["from_cache"], faces["decoded"]) == (12, 0)
    assert faces["splits"] == summary["data"]["faces"]["splits"]
    assert info["faces_not_found"] == 1
    text = format_text(info)
    assert f"actor {victim}: 1 of 3 recordings without a face" in text
    assert "warning: faces not found in" in text

    # An empty cache: nothing known, unless a sample is decoded (one take per actor here).
    empty = dataclasses.replace(cfg.data, cache_dir=str(tmp_path / "empty"))
    info = describe("ravdess", str(root), empty)
    assert info["faces"]["checked"] == 0 and info["faces_not_found"] is None
    assert "--faces N" in info["faces_note"]
    info = describe("ravdess", str(root), empty, faces_sample=4)
    assert (info["faces"]["checked"], info["faces"]["decoded"]) == (4, 4)
    assert sorted(info["faces"]["actors"]) == sorted(a for a in summary["data"]["faces"]["actors"])
    assert all(a["checked"] == 1 for a in info["faces"]["actors"].values())
