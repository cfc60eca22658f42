"""One experiment end to end, without database or files: choices on training devices,
calibration, thresholds on validation devices, the metrics JSON."""

import json

import numpy as np
import pytest

from training import ALGORITHMS, TrainOptions, generate_synthetic
from training.calibration import brier
from training.estimators import TREE_DEPTHS
from training.evaluation import HeldOut, positive_proba
from training.experiment import run_experiment
from training.features import FEATURE_SETS, history_matrix
from training.labels import horizon_labels
from training.selection import Choice, select
from training.thresholds import choose_threshold

OPTIONS = TrainOptions(seed=4, cv_folds=3)


@pytest.fixture(scope="module")
def fleet():
    return generate_synthetic(devices=600, days=120, seed=4)


@pytest.fixture(scope="module")
def experiment(fleet):
    return run_experiment(OPTIONS, fleet, lambda _: None)


def test_every_algorithm_is_a_candidate_and_the_best_cv_pr_auc_on_training_devices_wins(
    experiment,
):
    scores = {name: c.choice.pr_auc for name, c in experiment.candidates.items()}
    assert tuple(scores) == ALGORITHMS
    metrics = experiment.metrics()
    selection = metrics["selection"]
    best = selection["best"]
    assert scores[best] == max(scores.values())
    assert metrics["candidates"][best]["search"]["pr_auc"] == max(scores.values())
    # the best, or the blend when the best one's lead over it is within the folds' noise
    within = best == "blend" or selection["blend_lead"] <= selection["standard_error"]
    assert experiment.selected == selection["selected"] == ("blend" if within else best)


def test_choices_are_cross_validated_on_training_devices_only(experiment, fleet):
    # The search's held-out scores cover the training devices' rows, and nothing else.
    train = experiment.split.train
    for candidate in experiment.candidates.values():
        assert candidate.choice.scores.proba.shape == (train.size,)
        assert (candidate.choice.scores.fold_of >= 0).all()


def test_the_feature_set_table_holds_every_set_and_algorithm(experiment):
    table = experiment.metrics()["feature_sets"]
    assert [row["name"] for row in table] == list(FEATURE_SETS)
    searched = [a for a in ALGORITHMS if a != "blend"]  # the blend takes the boosted model's
    for row in table:
        assert set(row["scores"]) == set(searched) and row["features"] == len(
            FEATURE_SETS[row["name"]]
        )
    # Each algorithm took the set where it scored best at its default point.
    for name in searched:
        candidate = experiment.candidates[name]
        best = max(table, key=lambda r: round(r["scores"][name]["pr_auc"]["mean"], 3))
        assert candidate.feature_set == best["name"]
    blend, boosted = experiment.candidates["blend"], experiment.candidates["hist_gradient_boosting"]
    assert blend.feature_set == boosted.feature_set
    assert blend.choice.point == boosted.choice.point and len(blend.choice.grid) == 1


def test_the_version_reads_the_selected_candidates_features(experiment, fleet):
    chosen = experiment.chosen
    assert experiment.feature_names == FEATURE_SETS[chosen.feature_set]
    np.testing.assert_array_equal(
        experiment.features.matrix, history_matrix(fleet, experiment.feature_names)
    )
    assert experiment.metrics()["feature_set"]["name"] == chosen.feature_set


def test_threshold_is_chosen_on_validation_devices_from_calibrated_probabilities(experiment):
    chosen = experiment.chosen
    rows = experiment.split.validation
    proba = positive_proba(chosen.estimator, chosen.features.matrix[rows])
    assert chosen.threshold == choose_threshold(experiment.dataset.y[rows], proba)
    assert chosen.params["calibration"] == chosen.calibration["method"]


def test_test_metrics_score_the_registered_estimator_on_test_devices(experiment):
    chosen = experiment.chosen
    rows = experiment.split.test
    np.testing.assert_array_equal(
        chosen.test_proba, positive_proba(chosen.estimator, chosen.features.matrix[rows])
    )
    assert chosen.test["rows"] == rows.size and chosen.test["threshold"] == chosen.threshold
    assert chosen.test["brier"] == brier(experiment.dataset.y[rows], chosen.test_proba)


def test_balanced_candidates_are_made_probabilities_by_calibration(experiment):
    # Balanced class weights score far above the failure rate; calibrated, they do not.
    for name in ("decision_tree", "logistic_regression"):
        test = experiment.candidates[name].test
        assert test["brier"] < test["brier_uncalibrated"] / 3, name


def test_metrics_json_has_every_section_and_is_strict_json(experiment):
    metrics = experiment.metrics()
    assert {
        "test",
        "validation",
        "cross_validation",
        "calibration",
        "validation_curve",
        "feature_set",
        "feature_sets",
        "references",
        "horizon_days",
        "candidates",
    } <= metrics.keys()
    assert metrics["cross_validation"]["folds"] == 3 and metrics["horizon_days"] == 1
    assert set(metrics["references"]) == {
        "logistic_regression_counters",
        "logistic_regression_history",
    }
    json.dumps(metrics, allow_nan=False)


def test_validation_curve_covers_depths_and_shows_overfitting(experiment):
    curve = experiment.validation_curve
    assert [p["max_depth"] for p in curve] == list(TREE_DEPTHS)
    unpruned = curve[-1]
    assert unpruned["train"]["roc_auc"] > 0.99
    assert unpruned["validation"]["roc_auc"] < unpruned["train"]["roc_auc"] - 0.1
    depth = experiment.candidates["decision_tree"].params["max_depth"]
    best = max(curve, key=lambda p: round(p["validation"]["pr_auc"], 3))
    assert depth == best["max_depth"]


def test_a_horizon_labels_rows_before_failures_on_the_same_devices(fleet, experiment):
    options = TrainOptions(
        seed=4, cv_folds=0, validation_curve=False, algorithm="logistic_regression", horizon_days=5
    )
    week = run_experiment(options, fleet, lambda _: None)
    np.testing.assert_array_equal(week.dataset.y, horizon_labels(fleet, 5))
    assert week.dataset.y.sum() > fleet.y.sum() and week.metrics()["horizon_days"] == 5
    # The devices are split by failure events, the same for every horizon.
    np.testing.assert_array_equal(week.split.test, experiment.split.test)


def test_min_recall_is_reached_on_validation(fleet):
    options = TrainOptions(
        seed=4, cv_folds=0, validation_curve=False, min_recall=0.8, algorithm="logistic_regression"
    )
    result = run_experiment(options, fleet, lambda _: None)
    assert result.chosen.validation["recall"] >= 0.8
    assert result.validation_curve is None and result.chosen.cross_validation is None
    assert result.chosen.calibration is None and result.chosen.params["calibration"] is None
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
    options = TrainOptions(seed=4, cv_folds=2, validation_curve=False, algorithm="decision_tree")
    run_experiment(options, fleet, messages.append)
    assert any("cross-validating decision_tree" in m for m in messages)
    assert any("fitting decision_tree" in m for m in messages)


def _choice(algorithm: str, per_fold: list[float]) -> Choice:
    folds = len(per_fold)
    scores = HeldOut(
        np.zeros(folds),
        np.zeros(folds),
        np.arange(folds, dtype=np.intp),
        [{"roc_auc": 0.5, "pr_auc": v} for v in per_fold],
        None,
    )
    return Choice(algorithm, "counters", {}, scores, [], {"method": "sigmoid"})


@pytest.mark.parametrize(
    ("boosted", "blend", "selected"),
    [
        # a lead of 0.04 over the blend, with folds that disagree (standard error 0.06): a tie
        ([0.30, 0.01, 0.03, 0.40, 0.07], [0.34, 0.01, 0.04, 0.14, 0.08], "blend"),
        # the same mean lead, on every fold alike (standard error 0.004): the boosted model
        ([0.14, 0.05, 0.09, 0.20, 0.12], [0.10, 0.01, 0.05, 0.17, 0.07], "hist_gradient_boosting"),
        ([0.10, 0.10, 0.10], [0.12, 0.11, 0.10], "blend"),  # the blend is the best itself
    ],
)
def test_the_blend_wins_a_lead_within_the_noise_of_the_folds(boosted, blend, selected):
    choices = {
        "logistic_regression": _choice("logistic_regression", [0.0] * len(boosted)),
        "hist_gradient_boosting": _choice("hist_gradient_boosting", boosted),
        "blend": _choice("blend", blend),
    }
    chosen, detail = select(choices)
    assert chosen == detail["selected"] == selected
    if detail["best"] != "blend":
        lead = np.subtract(boosted, blend)
        assert detail["blend_lead"] == pytest.approx(lead.mean())
        assert detail["standard_error"] == pytest.approx(lead.std(ddof=1) / np.sqrt(lead.size))
