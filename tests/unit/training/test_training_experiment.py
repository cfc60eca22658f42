"""One experiment end to end, without database or files: selection, thresholds, metrics JSON."""

import json

import numpy as np
import pytest

from training import TrainOptions, generate_synthetic
from training.evaluation import positive_proba
from training.experiment import run_experiment
from training.thresholds import choose_threshold

OPTIONS = TrainOptions(seed=4, cv_folds=3)


@pytest.fixture(scope="module")
def fleet():
    return generate_synthetic(devices=600, days=120, seed=4)


@pytest.fixture(scope="module")
def experiment(fleet):
    return run_experiment(OPTIONS, fleet, lambda _: None)


def test_both_candidates_are_trained_and_the_better_validation_pr_auc_wins(experiment):
    scores = {name: c.validation["pr_auc"] for name, c in experiment.candidates.items()}
    assert set(scores) == {"decision_tree", "logistic_regression"}
    assert scores[experiment.selected] == max(scores.values())


def test_threshold_is_chosen_on_validation_devices(experiment, fleet):
    chosen = experiment.chosen
    rows = experiment.split.validation
    proba = positive_proba(chosen.estimator, fleet.X[rows])
    assert chosen.threshold == choose_threshold(fleet.y[rows], proba)


def test_test_metrics_score_the_registered_estimator_on_test_devices(experiment, fleet):
    chosen = experiment.chosen
    rows = experiment.split.test
    np.testing.assert_array_equal(
        chosen.test_proba, positive_proba(chosen.estimator, fleet.X[rows])
    )
    assert chosen.test["rows"] == rows.size and chosen.test["threshold"] == chosen.threshold


def test_metrics_json_has_every_section_and_is_strict_json(experiment):
    metrics = experiment.metrics()
    assert {
        "test",
        "validation",
        "cross_validation",
        "validation_curve",
        "candidates",
    } <= metrics.keys()
    assert metrics["cross_validation"]["folds"] == 3
    json.dumps(metrics, allow_nan=False)


def test_validation_curve_covers_depths_and_shows_overfitting(experiment):
    curve = experiment.validation_curve
    assert [p["max_depth"] for p in curve] == [*range(1, 13), None]
    unpruned = curve[-1]
    assert unpruned["train"]["roc_auc"] > 0.99
    assert unpruned["validation"]["roc_auc"] < unpruned["train"]["roc_auc"] - 0.1


def test_min_recall_is_reached_on_validation(fleet):
    options = TrainOptions(
        seed=4, cv_folds=0, validation_curve=False, min_recall=0.8, algorithm="logistic_regression"
    )
    result = run_experiment(options, fleet, lambda _: None)
    assert result.chosen.validation["recall"] >= 0.8
    assert result.validation_curve is None and result.chosen.cross_validation is None
    assert result.metrics()["threshold_rule"] == "min_recall>=0.8"


def test_tree_depth_option_reaches_the_estimator(fleet):
    options = TrainOptions(
        seed=4, cv_folds=0, validation_curve=False, algorithm="decision_tree", max_depth=2
    )
    result = run_experiment(options, fleet, lambda _: None)
    assert result.chosen.estimator.get_depth() <= 2 and result.chosen.params["max_depth"] == 2


def test_same_seed_gives_the_same_experiment(experiment, fleet):
    again = run_experiment(OPTIONS, fleet, lambda _: None)
    assert json.dumps(again.metrics(), sort_keys=True) == json.dumps(
        experiment.metrics(), sort_keys=True
    )


def test_progress_reports_long_steps(fleet):
    messages = []
    run_experiment(TrainOptions(seed=4, cv_folds=2, validation_curve=False), fleet, messages.append)
    assert any("cross-validating" in m for m in messages)
    assert any("fitting decision_tree" in m for m in messages)
