"""Streamed ranking metrics and the degradation rule (model/performance.py) against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from model.performance import RankingSums, compare_with_training, threshold_figures


def _groups(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Failures and non-failures per distinct score, highest score first (as SQL groups them)."""
    scores, inverse = np.unique(p, return_inverse=True)
    positives = np.bincount(inverse, weights=y, minlength=scores.size)[::-1]
    totals = np.bincount(inverse, minlength=scores.size)[::-1]
    return positives.astype(int), (totals - positives).astype(int)


@pytest.mark.parametrize(("decimals", "batch"), [(1, 1), (2, 7), (6, 1000), (3, 100_000)])
def test_streamed_aucs_equal_scikit_learn(decimals, batch):
    rng = np.random.default_rng(decimals)
    p = np.round(rng.uniform(size=5000), decimals)  # few decimals: many ties, as trees give
    y = (rng.uniform(size=5000) < 0.05 + 0.3 * p).astype(int)
    positives, negatives = _groups(y, p)
    sums = RankingSums()
    for start in range(0, positives.size, batch):
        sums.add(positives[start : start + batch], negatives[start : start + batch])
    assert (sums.positives, sums.negatives) == (y.sum(), (1 - y).sum())
    assert sums.roc_auc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert sums.pr_auc == pytest.approx(average_precision_score(y, p), abs=1e-12)


def test_one_class_has_no_ranking_metrics():
    sums = RankingSums()
    sums.add([0, 0], [3, 4])
    assert sums.roc_auc is None and sums.pr_auc is None
    sums.add([], [])
    assert sums.negatives == 7


def test_rates_over_nothing_are_unknown():
    figures = threshold_figures(tp=0, fp=0, tn=5, fn=0)
    assert figures["precision"] is None and figures["recall"] is None
    assert figures["false_positive_rate"] == 0.0
    assert threshold_figures(3, 1, 5, 1) == {
        "precision": 0.75, "recall": 0.75, "f1": 0.75, "false_positive_rate": 1 / 6,
        "false_negative_rate": 0.25,
    }  # fmt: skip


def test_a_figure_more_than_the_tolerance_below_training_is_a_finding():
    training = {"recall": 0.8, "precision": 0.3, "f1": 0.9}
    assert compare_with_training({"recall": 0.71, "precision": 0.2}, training, 0.1) == []
    findings = compare_with_training({"recall": 0.69, "precision": None}, training, 0.1)
    assert len(findings) == 2 and findings[0].startswith("recall 0.6900 is 0.1100 below")
    assert "precision 0.0000" in findings[1]  # unknown counts as nothing
    assert compare_with_training({"recall": 0.0}, {"pr_auc": 0.5}, 0.1) == []  # nothing to hold
