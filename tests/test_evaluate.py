"""`python -m trainers evaluate`: a run scored on another corpus or split.

The session's tiny hybrid-attention run (``tiny_run`` in conftest.py, shared with
test_predict) is evaluated here; the CREMA-D
corpus is the session's shared one (tests/corpora.py). Every figure of
evaluation.json is checked against scikit-learn on the predictions.jsonl it
was written with, over the shared classes.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import run_trainers
from tests.corpora import CREMAD, shared_corpus
from trainers.rundir import RunDir

# The emotion field of a CREMA-D key (1001_DFA_ANG_XX) -> the RAVDESS run's class.
CREMAD_TO_RAVDESS = {
    "ANG": "angry", "DIS": "disgust", "FEA": "fearful",
    "HAP": "happy", "NEU": "neutral", "SAD": "sad",
}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_run, small_corpus, tmp_path_factory):
    """(the session's tiny run, a copy of the corpus it was trained on, its cache).

    A copy of the same generated corpus: tests/test_predict.py deletes the run's own
    copy to prove predict never reads it, and the two files may share a worker."""
    run, _data, cache = tiny_run
    data = tmp_path_factory.mktemp("evaluate") / "ravdess"
    shutil.copytree(small_corpus, data)
    return run, data, cache


@pytest.fixture(scope="module")
def on_cremad(trained, tmp_path_factory):
    """The run evaluated on every recording of a generated CREMA-D corpus."""
    run, _data, _cache = trained
    corpus = shared_corpus(tmp_path_factory, "crema-d", **CREMAD)
    proc = run_trainers(
        "evaluate", str(run.path), "--data", str(corpus), "--layout", "crema-d",
        "--split", "all", "--out", "cremad",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = run.evaluations / "cremad"
    evaluation = json.loads((folder / "evaluation.json").read_text())
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    return evaluation, rows, proc.stdout


@pytest.mark.slow
def test_cross_corpus_metrics_are_scikit_learns_over_the_shared_classes(trained, on_cremad):
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
        recall_score,
    )

    run, _data, _cache = trained
    evaluation, rows, _stdout = on_cremad
    classes = json.loads(run.summary.read_text())["classes"]
    assert evaluation["classes"] == classes
    shared = evaluation["shared_classes"]
    assert shared == ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
    ids = [classes.index(c) for c in shared]
    assert evaluation["n"] == len(rows) == 3 * 17  # every recording: --split all
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    for row in rows:
        # The label is the recording's own emotion in the run's label space ...
        assert classes[row["label"]] == CREMAD_TO_RAVDESS[row["key"].split("_")[2]], row
        # ... and the decision is the argmax among the shared classes.
        assert row["pred"] == ids[int(np.argmax([row["probs"][i] for i in ids]))]
        assert len(row["probs"]) == len(classes)
    y_true = [r["label"] for r in rows]
    y_pred = [r["pred"] for r in rows]
    m = evaluation["metrics"]
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    assert m["uar"] == pytest.approx(recall_score(y_true, y_pred, average="macro"))
    assert m["confusion"] == confusion_matrix(y_true, y_pred, labels=ids).tolist()
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    for k, name in enumerate(shared):
        got = m["per_class"][name]
        assert [got["precision"], got["recall"], got["f1"]] == pytest.approx([p[k], r[k], f[k]])
        assert got["support"] == s[k]
    # The floor: the run's training majority among the shared classes, always.
    train = json.loads(run.summary.read_text())["data"]["splits"]["train"]["per_class"]
    majority = max(shared, key=lambda c: (train[c], -shared.index(c)))
    floor = evaluation["majority_floor"]
    constant = [classes.index(majority)] * len(y_true)
    assert floor["class_name"] == majority
    assert floor["accuracy"] == pytest.approx(accuracy_score(y_true, constant))
    assert floor["macro_f1"] == pytest.approx(f1_score(y_true, constant, average="macro"))


@pytest.mark.slow
def test_cross_corpus_exclusions_are_counted_and_printed(on_cremad):
    evaluation, rows, stdout = on_cremad
    excluded = evaluation["excluded"]
    # Every CREMA-D class has a RAVDESS counterpart; calm and surprised have none.
    assert excluded["not_learned"] == {}
    assert excluded["not_in_corpus"] == ["calm", "surprised"]
    tops = {
        c: sum(1 for r in rows if int(np.argmax(r["probs"])) == i)
        for i, c in ((1, "calm"), (7, "surprised"))
    }
    assert excluded["top_class_not_in_corpus"] == tops
    assert evaluation["label_map"]["anger"] == "angry"
    assert evaluation["data"]["layout"] == "crema-d" and evaluation["data"]["split"] == "all"
    assert "shared classes only" in stdout
    assert "calm" in stdout and "surprised" in stdout
    assert "majority-class floor" in stdout


@pytest.mark.slow
def test_own_corpus_test_split_is_the_runs_own_test(trained):
    """--split test on the training corpus: the run's test set, predictions and metrics."""
    run, data, _cache = trained
    proc = run_trainers("evaluate", str(run.path), "--data", str(data))
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = run.evaluations / "ravdess-test"  # the default name
    evaluation = json.loads((folder / "evaluation.json").read_text())
    got = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    own = [json.loads(line) for line in run.predictions.read_text().splitlines()]
    own = [row for row in own if row["split"] == "test"]
    assert [(r["key"], r["actor"], r["label"], r["pred"]) for r in got] == [
        (r["key"], r["actor"], r["label"], r["pred"]) for r in own
    ]
    for a, b in zip(got, own, strict=True):
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-5)
    summary = json.loads(run.summary.read_text())
    for key in ("accuracy", "macro_f1", "weighted_f1", "uar"):
        assert evaluation["metrics"][key] == pytest.approx(summary["test"][key]), key
    assert evaluation["metrics"]["confusion"] == summary["test"]["confusion"]
    for name, got in evaluation["metrics"]["per_class"].items():
        assert got == pytest.approx(summary["test"]["per_class"][name]), name
    floor = {k: v for k, v in evaluation["majority_floor"].items() if k != "class_name"}
    assert floor == pytest.approx(summary["majority_floor"])
    assert evaluation["excluded"]["not_in_corpus"] == []


@pytest.mark.slow
def test_recordings_of_classes_the_run_never_learned_are_excluded(trained, tmp_path):
    """A run whose 'calm' is some other emotion: RAVDESS calm takes are not scored."""
    from trainers.inference.bundle import load_bundle
    from trainers.inference.evaluate import evaluate

    run, data, _cache = trained
    copy = RunDir(tmp_path / "run")
    shutil.copytree(run.path, copy.path)
    bundle = load_bundle(copy.path)
    bundle.classes[1] = "boredom"  # the model's output 1 no longer names calm
    evaluation = evaluate(bundle, data, "ravdess", "test", "renamed")
    own = [json.loads(line) for line in run.predictions.read_text().splitlines()]
    calm = sum(1 for r in own if r["split"] == "test" and r["label"] == 1)
    assert calm > 0
    assert evaluation["excluded"]["not_learned"] == {"calm": calm}
    assert evaluation["excluded"]["not_in_corpus"] == ["boredom"]
    assert evaluation["n"] == sum(1 for r in own if r["split"] == "test") - calm
    rows = (copy.evaluations / "renamed" / "predictions.jsonl").read_text().splitlines()
    assert all(json.loads(r)["pred"] != 1 and json.loads(r)["label"] != 1 for r in rows)


@pytest.mark.slow
def test_summary_md_shows_the_evaluations_beside_the_runs_test(trained, on_cremad):
    from emoconsole.report import write_report

    run, _data, _cache = trained
    evaluation, _rows, _stdout = on_cremad
    md = write_report(run.path).read_text()
    section = md.split("## Evaluations on other data")[1].split("\n## ")[0]
    assert "the run's own test" in section
    line = next(x for x in section.splitlines() if x.startswith("| cremad |"))
    assert f"{evaluation['metrics']['macro_f1']:.4f}" in line and "| 51 | 6 |" in line
    assert "cremad, majority floor" in section
    assert "run classes the corpus lacks: calm, surprised" in section


def test_bad_usage_exits_2_before_loading_anything(tmp_path):
    proc = run_trainers("evaluate", str(tmp_path), "--data", str(tmp_path), "--layout", "nope")
    assert proc.returncode == 2 and "nope" in proc.stderr
    missing = tmp_path / "no-such-corpus"
    proc = run_trainers("evaluate", str(tmp_path / "no-run"), "--data", str(missing))
    assert proc.returncode == 2 and f"--data {missing}: no such directory" in proc.stderr
    proc = run_trainers("evaluate", str(tmp_path), "--data", str(tmp_path), "--out", "../x")
    assert proc.returncode == 2 and "--out" in proc.stderr


def test_classes_are_matched_by_emotion_across_corpora():
    from trainers.data import cremad, meld, ravdess
    from trainers.data.combined import CLASSES as COMBINED
    from trainers.inference.evaluate import LabelMapping

    cremad_run = LabelMapping.between(cremad.CLASSES, ravdess.CLASSES)
    assert cremad_run.not_learned == ["calm", "surprised"]
    assert cremad_run.not_in_corpus == []
    assert cremad_run.to_json()["angry"] == "anger"
    meld_run = LabelMapping.between(meld.CLASSES, ravdess.CLASSES)
    assert meld_run.not_learned == ["calm"]
    assert meld_run.to_json()["surprised"] == "surprise"
    combined_run = LabelMapping.between(COMBINED, meld.CLASSES)
    assert combined_run.not_learned == ["surprise"]
    assert [COMBINED[i] for i in combined_run.shared] == list(COMBINED)


@pytest.mark.slow
def test_nothing_to_score_exits_1_and_leaves_no_evaluation(trained, tmp_path):
    run, _data, _cache = trained
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_trainers(
        "evaluate", str(run.path), "--data", str(empty), "--layout", "crema-d", "--out", "none"
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "no crema-d recordings" in proc.stderr
    assert not (run.evaluations / "none" / "evaluation.json").exists()
    assert "none" not in [name for name, _ in run.read_evaluations()]
