"""Threshold choice on validation scores: maximal F1, or the highest reaching a recall."""

import numpy as np
import pytest

from training import InsufficientDataError, InvalidOptionsError
from training.thresholds import candidate_thresholds, choose_threshold

# Sorted by score: 0.9 (1), 0.8 (1), 0.7 (0), 0.4 (0), 0.35 (1), 0.1 (0); three failures.
#   threshold  tp fp  precision recall  F1
#   0.9         1  0    1       1/3    0.5
#   0.8         2  0    1       2/3    0.8   <- F1 maximum
#   0.7         2  1   2/3      2/3    0.667
#   0.4         2  2   1/2      2/3    0.571
#   0.35        3  2   3/5       1     0.75
#   0.1         3  3   1/2       1     0.667
Y = np.array([0, 0, 1, 1, 0, 1])
P = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9])


def test_candidates_list_precision_and_recall_per_distinct_score():
    thresholds, precision, recall = candidate_thresholds(Y, P)
    np.testing.assert_allclose(thresholds, [0.9, 0.8, 0.7, 0.4, 0.35, 0.1])
    np.testing.assert_allclose(precision, [1, 1, 2 / 3, 1 / 2, 3 / 5, 1 / 2])
    np.testing.assert_allclose(recall, [1 / 3, 2 / 3, 2 / 3, 2 / 3, 1, 1])


def test_default_maximises_f1():
    assert choose_threshold(Y, P) == 0.8


@pytest.mark.parametrize(
    ("min_recall", "expected"), [(1.0, 0.35), (0.5, 0.8), (0.3, 0.9), (2 / 3, 0.8)]
)
def test_min_recall_takes_the_highest_threshold_reaching_it(min_recall, expected):
    assert choose_threshold(Y, P, min_recall=min_recall) == expected


def test_chosen_threshold_applies_with_greater_or_equal():
    threshold = choose_threshold(Y, P, min_recall=1.0)
    scores, labels = P, Y
    assert labels[scores >= threshold].sum() == labels.sum()


def test_equal_scores_form_one_threshold():
    # 0.5 holds one failure and one healthy row: they cannot be separated.
    y, p = np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.2, 0.1])
    thresholds, precision, _ = candidate_thresholds(y, p)
    np.testing.assert_allclose(thresholds, [0.5, 0.2, 0.1])
    assert precision[0] == 0.5
    assert choose_threshold(y, p) == 0.2  # F1 0.5, then 0.8, then 0.667


def test_f1_ties_go_to_the_highest_threshold():
    # F1 is 2/3 at 0.9 (1 tp) and at 0.6 (2 tp, 2 fp): keep the one with fewer alarms.
    y, p = np.array([1, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6])
    assert choose_threshold(y, p) == 0.9


def test_without_failures_no_threshold_can_be_chosen():
    with pytest.raises(InsufficientDataError):
        choose_threshold(np.zeros(4, dtype=np.int64), np.linspace(0, 1, 4))


@pytest.mark.parametrize("min_recall", [0.0, -0.1, 1.01])
def test_min_recall_must_be_a_recall(min_recall):
    with pytest.raises(InvalidOptionsError):
        choose_threshold(Y, P, min_recall=min_recall)
