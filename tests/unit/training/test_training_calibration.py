"""Calibration on grouped folds: cross-fitted calibrators, the method chosen by Brier score."""

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV

from training import generate_synthetic
from training.calibration import METHODS, brier, calibrated, choose_method, cross_fitted
from training.estimators import logistic_regression
from training.evaluation import cross_validation, held_out, positive_proba
from training.splits import grouped_folds


@pytest.fixture(scope="module")
def fleet():
    return generate_synthetic(devices=500, days=100, seed=8)


@pytest.fixture(scope="module")
def folds(fleet):
    return grouped_folds(fleet, 4, seed=8)


@pytest.fixture(scope="module")
def scores(fleet, folds):
    # Balanced class weights: the scores rank, but are far from probabilities.
    return held_out(logistic_regression(seed=8), fleet.X, fleet.y, folds)


def test_calibration_improves_the_brier_score_on_held_out_folds(fleet, folds):
    result = cross_validation(logistic_regression(seed=8), fleet.X, fleet.y, folds, "sigmoid")
    calibration = result.summary["calibrated"]["brier"]
    before, after = calibration["uncalibrated"]["per_fold"], calibration["calibrated"]["per_fold"]
    assert len(before) == len(after) == 4
    assert all(a < b / 10 for a, b in zip(after, before, strict=True)), (before, after)
    # Sigmoid calibration is monotonic: it keeps each fold's ranking.
    calibrated_roc = result.summary["calibrated"]["roc_auc"]["per_fold"]
    assert calibrated_roc == pytest.approx(result.summary["roc_auc"]["per_fold"])


def test_each_fold_is_calibrated_by_the_other_folds_only(fleet, scores):
    y, fold_of = fleet.y, scores.fold_of
    probabilities = cross_fitted("isotonic", scores.response, y, fold_of)
    # Labels of fold 0 changed: fold 0's calibrated probabilities do not move, the others' may.
    flipped = np.where(fold_of == 0, 1 - y, y)
    again = cross_fitted("isotonic", scores.response, flipped, fold_of)
    np.testing.assert_array_equal(again[fold_of == 0], probabilities[fold_of == 0])
    assert not np.array_equal(again[fold_of != 0], probabilities[fold_of != 0])


def test_the_method_with_the_lower_brier_score_is_chosen(fleet, scores):
    choice = choose_method(scores.response, scores.proba, fleet.y, scores.fold_of)
    assert set(choice["brier"]) == {"uncalibrated", *METHODS}
    assert "sigmoid" in choice["keeps_ranking"]
    kept = choice["keeps_ranking"]
    assert choice["brier"][choice["method"]] == min(choice["brier"][m] for m in kept)
    assert choice["brier"]["uncalibrated"] == brier(fleet.y, scores.proba)
    assert choice["brier"][choice["method"]] < choice["brier"]["uncalibrated"] / 10


def test_the_served_estimator_is_one_estimator_and_one_calibrator_on_grouped_folds(fleet):
    rows = np.arange(len(fleet))
    folds = grouped_folds(fleet, 3, seed=8)
    model = calibrated(logistic_regression(seed=8), "sigmoid", folds)
    assert isinstance(model, CalibratedClassifierCV) and model.ensemble is False
    model.fit(fleet.X[rows], fleet.y[rows])
    assert len(model.calibrated_classifiers_) == 1
    proba = positive_proba(model, fleet.X)
    assert proba.min() >= 0.0 and proba.max() <= 1.0
    assert brier(fleet.y, proba) < brier(
        fleet.y, positive_proba(model.calibrated_classifiers_[0].estimator, fleet.X)
    )


def test_a_method_that_blurs_the_ranking_is_not_chosen_for_its_brier_score():
    # Few failures, none below the top 15% of scores and then a steep ramp: isotonic
    # regression's steps fit that with a lower Brier score than a sigmoid, and merge 20,000
    # distinct scores into a few dozen values, which ranks the held-out failures of the ramp
    # worse (PR-AUC) than the scores did (by 0.011 to 0.018 over seeds 0-7).
    rng = np.random.default_rng(3)
    scores = rng.random(20_000)
    risk = 0.002 + 0.3 * np.clip((scores - 0.85) / 0.15, 0, 1)
    y = (rng.random(scores.size) < risk).astype(np.int64)
    fold_of = rng.integers(0, 5, scores.size).astype(np.intp)
    choice = choose_method(scores, scores, y, fold_of)
    assert choice["brier"]["isotonic"] < choice["brier"]["sigmoid"]
    ranking = choice["ranking"]
    assert ranking["isotonic"]["pr_auc"] < ranking["uncalibrated"]["pr_auc"] - 0.01
    assert ranking["sigmoid"] == pytest.approx(ranking["uncalibrated"], abs=1e-12)
    assert choice["keeps_ranking"] == ["sigmoid"] and choice["method"] == "sigmoid"
