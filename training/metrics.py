"""Scores of failure probabilities: ranking quality and the confusion matrix at a threshold."""

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, roc_auc_score

Labels = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float64]


def _ratio(numerator: int, denominator: int) -> float:
    # A rate over an empty set is reported as 0, never NaN (JSON has no NaN).
    return numerator / denominator if denominator else 0.0


def confusion_counts(y: Labels, predicted: npt.NDArray[np.bool_]) -> dict[str, int]:
    """True/false positives/negatives of boolean predictions."""
    actual = y.astype(bool)
    return {
        "tn": int(np.sum(~actual & ~predicted)),
        "fp": int(np.sum(~actual & predicted)),
        "fn": int(np.sum(actual & ~predicted)),
        "tp": int(np.sum(actual & predicted)),
    }


def threshold_metrics(y: Labels, proba: Scores, threshold: float) -> dict[str, Any]:
    """Precision, recall, F1, FPR, FNR and the confusion matrix of `proba >= threshold`."""
    c = confusion_counts(y, proba >= threshold)
    precision = _ratio(c["tp"], c["tp"] + c["fp"])
    recall = _ratio(c["tp"], c["tp"] + c["fn"])
    return {
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
        "false_positive_rate": _ratio(c["fp"], c["fp"] + c["tn"]),
        "false_negative_rate": _ratio(c["fn"], c["fn"] + c["tp"]),
        "confusion_matrix": {"labels": [0, 1], "matrix": [[c["tn"], c["fp"]], [c["fn"], c["tp"]]]},
        **c,
    }


def ranking_metrics(y: Labels, proba: Scores) -> dict[str, float | None]:
    """ROC-AUC and PR-AUC (average precision); None when only one class is present."""
    if np.unique(y).size < 2:
        return {"roc_auc": None, "pr_auc": None}
    return {
        "roc_auc": float(roc_auc_score(y, proba)),
        "pr_auc": float(average_precision_score(y, proba)),
    }


def evaluate_scores(y: Labels, proba: Scores, threshold: float) -> dict[str, Any]:
    """All held-out metrics of one set of predictions."""
    return {
        "rows": int(y.size),
        "failures": int(y.sum()),
        "base_rate": _ratio(int(y.sum()), int(y.size)),
        **ranking_metrics(y, proba),
        **threshold_metrics(y, proba, threshold),
    }
