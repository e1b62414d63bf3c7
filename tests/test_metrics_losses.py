"""Metrics equal scikit-learn's; focal loss reduces to cross-entropy at gamma 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm

from trainers.engine.early_stopping import EarlyStopping
from trainers.engine.losses import FocalLoss, class_weights
from trainers.engine.metrics import classification_report, confusion_matrix, majority_floor


@pytest.mark.parametrize("seed", range(5))
def test_report_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = 8
    y = rng.integers(0, k, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, k, 200))
    if seed == 4:
        p[p == 3] = 2  # a class never predicted
    cm = confusion_matrix(y, p, k)
    rep = classification_report(cm, [str(i) for i in range(k)])
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, p, labels=range(k)))
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert rep["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))
    assert rep["weighted_f1"] == pytest.approx(
        skm.f1_score(y, p, average="weighted", zero_division=0)
    )
    assert rep["uar"] == pytest.approx(skm.balanced_accuracy_score(y, p))
    rec = skm.recall_score(y, p, average=None, labels=range(k), zero_division=0)
    assert [rep["per_class"][str(i)]["recall"] for i in range(k)] == pytest.approx(rec)


def test_majority_floor():
    floor = majority_floor(np.array([0, 0, 1]), np.array([0, 1, 1, 1]), 2)
    assert floor["class"] == 0 and floor["accuracy"] == 0.25


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_focal_gamma_zero_is_weighted_cross_entropy(smoothing):
    torch.manual_seed(0)
    logits, target = torch.randn(32, 5), torch.randint(0, 5, (32,))
    w = torch.rand(5) + 0.5
    focal = FocalLoss(gamma=0.0, weight=w, label_smoothing=smoothing)(logits, target)
    ce = F.cross_entropy(logits, target, weight=w, label_smoothing=smoothing)
    if smoothing == 0.0:
        assert focal.item() == pytest.approx(ce.item(), rel=1e-5)
    unweighted = FocalLoss(gamma=0.0, label_smoothing=smoothing)(logits, target)
    assert unweighted.item() == pytest.approx(
        F.cross_entropy(logits, target, label_smoothing=smoothing).item(), rel=1e-5
    )


def test_focal_down_weights_easy_examples():
    logits = torch.tensor([[5.0, 0.0], [0.2, 0.0]])
    target = torch.tensor([0, 0])
    per = [FocalLoss(gamma=2.0)(logits[i : i + 1], target[i : i + 1]).item() for i in range(2)]
    ce = [F.cross_entropy(logits[i : i + 1], target[i : i + 1]).item() for i in range(2)]
    assert per[0] / ce[0] < per[1] / ce[1]


def test_class_weight_schemes():
    labels = np.array([0] * 90 + [1] * 10)
    inv = class_weights(labels, 3, "inverse")
    assert inv[1] / inv[0] == pytest.approx(9.0)
    assert inv[2] == 0  # absent class: no infinite weight
    sq = class_weights(labels, 2, "inverse_sqrt")
    assert sq[1] / sq[0] == pytest.approx(3.0)
    bal = class_weights(labels, 2, "balanced")
    assert bal[1] / bal[0] == pytest.approx(9.0)
    assert class_weights(labels, 2, "none") is None


def test_early_stopping_patience_min_epochs_min_delta():
    es = EarlyStopping(patience=2, mode="max", min_delta=0.01, min_epochs=5)
    history = [0.5, 0.6, 0.605, 0.6, 0.59, 0.58, 0.57]
    stops = []
    for epoch, value in enumerate(history, start=1):
        es.update(epoch, value)
        stops.append(es.should_stop(epoch))
    assert es.best_epoch == 2  # 0.605 is within min_delta of 0.6
    assert stops.index(True) == 4  # epoch 5: patience ran out at 4 but min_epochs is 5
    assert es.earliest_stop_epoch() == 5
    again = EarlyStopping(patience=2)
    again.load_state_dict(es.state_dict())
    assert again == es
