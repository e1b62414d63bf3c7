"""Classification metrics computed from one confusion matrix.

numpy only, so summaries can be recomputed anywhere; tests check every figure
against scikit-learn on the saved predictions. Undefined ratios (a class never
predicted or never present) count as 0, as scikit-learn's zero_division=0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    idx = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(preds, dtype=np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def classification_report(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, UAR and per-class precision/recall/F1/support.

    UAR (unweighted average recall) is the mean of per-class recalls: the usual
    speech-emotion figure because it does not reward predicting the majority.
    """
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    total = support.sum()
    # Classes absent from both truth and predictions are left out of the macro means,
    # as scikit-learn does when given only the labels present.
    present = (support + predicted) > 0
    macro = lambda v: float(v[present].mean()) if present.any() else 0.0  # noqa: E731
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": macro(f1),
        "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
        "uar": macro(recall),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion": cm.tolist(),
    }


def majority_floor(train_labels: np.ndarray, eval_labels: np.ndarray, num_classes: int) -> dict:
    """What always predicting the training majority class scores on ``eval_labels``."""
    majority = int(np.bincount(train_labels, minlength=num_classes).argmax())
    cm = confusion_matrix(eval_labels, np.full_like(eval_labels, majority), num_classes)
    rep = classification_report(cm, [str(i) for i in range(num_classes)])
    return {k: rep[k] for k in ("accuracy", "macro_f1", "weighted_f1", "uar")} | {"class": majority}
