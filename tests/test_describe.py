"""`describe`: every number checked against what the generator wrote (class counts,
imbalance, actors or speakers per split, durations, the majority floor), for RAVDESS,
CREMA-D, MELD and FI, through the function and the CLI; bad inputs listed once."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from tests.conftest import run_trainers
from tests.corpora import CREMAD, MELD, shared_corpus
from trainers.cli import main
from trainers.data.describe import describe
from trainers.data.images import FI_CLASSES
from trainers.data.ravdess import split_actors
from trainers.data.synth import CorpusManifest, write_corpus
from trainers.data.synth.meld import FOLDERS, speaker_name

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def cremad(tmp_path_factory) -> Path:
    return shared_corpus(tmp_path_factory, "crema-d", **CREMAD)


@pytest.fixture(scope="module")
def meld(tmp_path_factory) -> Path:
    return shared_corpus(tmp_path_factory, "meld", **MELD)


def expected_floor(train: list[int], test: list[int]) -> dict[str, float]:
    """Always the most common train label, scored by scikit-learn."""
    majority = Counter(train).most_common()
    top = min(label for label, n in majority if n == majority[0][1])  # ties: the lowest label
    pred = [top] * len(test)
    return {
        "label": top,
        "accuracy": accuracy_score(test, pred),
        "weighted_f1": f1_score(test, pred, average="weighted", zero_division=0),
    }


def check(info: dict, classes: tuple[str, ...], split_of: dict[str, str], manifest) -> None:
    """The counts, imbalance and floor of ``info`` against the manifest."""
    # Labels as indices into classes (RAVDESS's manifest labels are its 1-based codes).
    labels = {
        s: [classes.index(r.emotion) for r in manifest.recordings if split_of[r.key] == s]
        for s in SPLITS
    }
    assert info["classes"] == list(classes)
    assert info["samples"] == len(manifest.recordings)
    total = Counter(r.emotion for r in manifest.recordings)
    assert info["per_class"] == {c: total[c] for c in classes}
    present = [n for n in total.values() if n]
    assert info["imbalance_ratio"] == pytest.approx(max(present) / min(present), abs=1e-3)
    for split in SPLITS:
        got = info["splits"][split]
        counts = Counter(classes[label] for label in labels[split])
        assert got["samples"] == len(labels[split])
        assert got["per_class"] == {c: counts[c] for c in classes}
    floor = expected_floor(labels["train"], labels["test"])
    assert info["majority_floor"]["class"] == classes[floor["label"]]
    assert info["majority_floor"]["accuracy"] == pytest.approx(floor["accuracy"], abs=1e-4)
    assert info["majority_floor"]["weighted_f1"] == pytest.approx(floor["weighted_f1"], abs=1e-4)


def check_durations(info: dict, split_of: dict[str, str], manifest) -> None:
    """Header durations agree with the rendered lengths (AAC adds a few ms of priming)."""
    for split in SPLITS:
        want = [r.duration for r in manifest.recordings if split_of[r.key] == split]
        got = info["splits"][split]["duration_s"]
        assert got["count"] == len(want)
        assert got["min"] == pytest.approx(min(want), abs=0.1)
        assert got["max"] == pytest.approx(max(want), abs=0.1)
        assert got["mean"] == pytest.approx(np.mean(want), abs=0.1)


def test_crema_d(cremad: Path) -> None:
    manifest = CorpusManifest.load(cremad)
    info = describe("crema-d", str(cremad))
    actors = split_actors([str(r.actor) for r in manifest.recordings], 0.15, 0.15, 0)
    by_actor = {a: s for s, names in actors.items() for a in names}
    split_of = {r.key: by_actor[str(r.actor)] for r in manifest.recordings}
    check(info, manifest.classes, split_of, manifest)
    check_durations(info, split_of, manifest)
    for split in SPLITS:  # 3 actors: one per split, never shared
        assert info["splits"][split]["actors"] == 1
        assert info["splits"][split]["actor_names"] == actors[split]
    assert info["imbalance_ratio"] == 1.5  # per actor 3 takes of each emotion, 2 of NEU
    assert info["bad_inputs"] == [] and info["faces_not_found"] is None


def test_meld_floor_is_always_neutral(meld: Path) -> None:
    manifest = CorpusManifest.load(meld)
    info = describe("meld", str(meld))
    official = {"train": "train", "dev": "val", "test": "test"}
    split_of = {r.key: official[r.key.split("/")[0]] for r in manifest.recordings}
    check(info, manifest.classes, split_of, manifest)
    check_durations(info, split_of, manifest)
    assert info["majority_floor"]["class"] == "neutral"
    for split in SPLITS:
        names = sorted(
            {speaker_name(r.actor) for r in manifest.recordings if split_of[r.key] == split}
        )
        assert info["splits"][split]["actor_names"] == names


def test_ravdess(small_corpus: Path) -> None:
    manifest = CorpusManifest.load(small_corpus)
    info = describe("ravdess", str(small_corpus))
    actors = split_actors([f"{r.actor:02d}" for r in manifest.recordings], 0.15, 0.15, 0)
    by_actor = {a: s for s, names in actors.items() for a in names}
    split_of = {r.key: by_actor[f"{r.actor:02d}"] for r in manifest.recordings}
    check(info, manifest.classes, split_of, manifest)
    check_durations(info, split_of, manifest)


def test_fi(tmp_path: Path) -> None:
    write_corpus("fi", tmp_path, actors=3, seed=1, workers=1)
    manifest = CorpusManifest.load(tmp_path)
    info = describe("fi", str(tmp_path))
    assert info["classes"] == list(FI_CLASSES) == list(manifest.classes)
    total = Counter(r.emotion for r in manifest.recordings)
    assert info["per_class"] == {c: total[c] for c in FI_CLASSES}
    assert info["imbalance_ratio"] == pytest.approx(max(total.values()) / min(total.values()), 1e-3)
    assert sum(info["splits"][s]["samples"] for s in SPLITS) == len(manifest.recordings)
    assert info["majority_floor"]["class"] == "contentment"  # FI's largest class
    assert "duration_s" not in info and "actors" not in info["splits"]["train"]


def test_cli_json_and_text_list_bad_inputs_once(meld: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "meld"
    shutil.copytree(meld, data)
    missing = data / FOLDERS["train"] / "dia0_utt3.mp4"
    missing.unlink()
    empty = data / FOLDERS["dev"] / "dia0_utt0.mp4"
    empty.write_bytes(b"")
    proc = run_trainers("describe", "meld", str(data), "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout)
    bad = {b["path"]: b["reason"] for b in info["bad_inputs"]}
    assert len(bad) == len(info["bad_inputs"]) == 2
    assert "but missing" in bad[str(missing)] and bad[str(empty)] == "zero-byte file"
    assert info["samples"] == len(CorpusManifest.load(meld).recordings) - 1
    assert info["splits"]["val"]["duration_s"]["count"] == info["splits"]["val"]["samples"] - 1
    # The CLI adds face counts from the (empty) feature cache and decodes nothing for them.
    assert (info["faces"]["checked"], info["faces"]["decoded"]) == (0, 0)
    direct = json.loads(json.dumps(describe("meld", str(data))))
    assert {k: v for k, v in info.items() if k not in ("faces", "faces_note")} == {
        k: v for k, v in direct.items() if k != "faces_note"
    }

    # The text report (in-process: one interpreter start per test is enough).
    assert main(["describe", "meld", str(data)]) == 0
    text = capsys.readouterr().out
    assert "majority-class floor (always 'neutral'" in text
    assert f"{missing}: listed in train_sent_emo.csv" in text
    assert "faces not found: not counted" in text
    assert "bad inputs: 2" in text


def test_cli_refuses_a_missing_directory(tmp_path: Path, capsys) -> None:
    assert main(["describe", "crema-d", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_floor_at_melds_real_counts_is_the_known_031() -> None:
    """MELD's published class counts: always "neutral" scores about 0.31 weighted F1 on test."""
    from trainers.data.describe import train_majority_floor
    from trainers.data.meld import CLASSES

    train = {"neutral": 4710, "surprise": 1205, "fear": 268, "sadness": 683, "joy": 1743,
             "disgust": 271, "anger": 1109}  # fmt: skip
    test = {"neutral": 1256, "surprise": 281, "fear": 50, "sadness": 208, "joy": 402,
            "disgust": 68, "anger": 345}  # fmt: skip
    labels = {
        split: [CLASSES.index(c) for c, n in counts.items() for _ in range(n)]
        for split, counts in (("train", train), ("test", test))
    }
    floor = train_majority_floor(CLASSES, labels)
    assert floor["class"] == "neutral"
    assert floor["accuracy"] == pytest.approx(1256 / 2610, abs=1e-4)
    assert floor["weighted_f1"] == pytest.approx(0.3126, abs=1e-3)
