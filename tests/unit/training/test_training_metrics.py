"""Held-out metrics against hand-computed confusion matrices."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score

from training.metrics import evaluate_scores, ranking_metrics, threshold_metrics

# At 0.5: predicted [1, 1, 0, 1, 0, 0, 0, 0] -> tp 2, fn 1, fp 1, tn 4.
Y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
P = np.array([0.9, 0.6, 0.2, 0.7, 0.3, 0.1, 0.05, 0.4])


def test_confusion_matrix_counts_match_hand_computation():
    m = threshold_metrics(Y, P, 0.5)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (4, 1, 1, 2)
    assert m["confusion_matrix"] == {"labels": [0, 1], "matrix": [[4, 1], [1, 2]]}


def test_rates_match_hand_computation():
    m = threshold_metrics(Y, P, 0.5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["false_positive_rate"] == pytest.approx(1 / 5)
    assert m["false_negative_rate"] == pytest.approx(1 / 3)
    assert m["threshold"] == 0.5


def test_threshold_is_inclusive():
    assert threshold_metrics(Y, P, 0.6)["tp"] == 2


def test_metrics_agree_with_sklearn_on_random_scores():
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.1).astype(np.int64)
    p = rng.random(500)
    m = threshold_metrics(y, p, 0.7)
    predicted = (p >= 0.7).astype(int)
    assert m["confusion_matrix"]["matrix"] == confusion_matrix(y, predicted).tolist()
    assert m["precision"] == pytest.approx(precision_score(y, predicted))
    assert m["recall"] == pytest.approx(recall_score(y, predicted))
    assert m["f1"] == pytest.approx(f1_score(y, predicted))


def test_rates_over_empty_sets_are_zero_not_nan():
    m = threshold_metrics(Y, P, 2.0)
    assert (m["precision"], m["recall"], m["f1"], m["false_positive_rate"]) == (0, 0, 0, 0)
    assert m["false_negative_rate"] == 1.0


def test_ranking_metrics_match_hand_computation():
    # Pairs (failure, healthy) ranked correctly: (0.35 > 0.1), (0.8 > 0.1), (0.8 > 0.4): 3 of 4.
    # Average precision: recall 1/2 at precision 1 (0.8), recall 1 at precision 2/3 (0.35).
    m = ranking_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_ranking_metrics_are_none_for_one_class():
    assert ranking_metrics(np.zeros(3, dtype=np.int64), np.ones(3)) == {
        "roc_auc": None,
        "pr_auc": None,
    }


def test_evaluate_scores_reports_support():
    m = evaluate_scores(Y, P, 0.5)
    assert (m["rows"], m["failures"], m["base_rate"]) == (8, 3, 3 / 8)
    assert {"roc_auc", "pr_auc", "precision", "recall", "f1"} <= m.keys()
