"""Training options are checked before any work is done."""

import json
from pathlib import Path

import pytest

from training import InvalidOptionsError, TrainOptions
from training.options import validate_options


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (TrainOptions(algorithm="random_forest"), "algorithm must be one of"),
        (TrainOptions(min_recall=0.0), "min_recall"),
        (TrainOptions(min_recall=1.5), "min_recall"),
        (TrainOptions(max_depth=0), "max_depth must be >= 1"),
        (TrainOptions(algorithm="logistic_regression", max_depth=3), "decision_tree only"),
        (TrainOptions(cv_folds=1), "cv_folds"),
        (TrainOptions(synthetic_devices=1), "at least 2 devices"),
        (TrainOptions(algorithm="hist_gradient_boosting", max_depth=3), "decision_tree only"),
        (TrainOptions(horizon_days=0), "horizon_days must be between 1 and 365"),
        (TrainOptions(horizon_days=366), "horizon_days"),
        (TrainOptions(feature_set="everything"), "feature_set must be one of counters"),
    ],
)
def test_inconsistent_options_are_rejected(options, message):
    with pytest.raises(InvalidOptionsError, match=message) as caught:
        validate_options(options)
    assert caught.value.code == "TRAINING_INVALID_OPTIONS"


@pytest.mark.parametrize(
    "options",
    [
        TrainOptions(),
        TrainOptions(algorithm="decision_tree", max_depth=6, min_recall=1.0, cv_folds=0),
        TrainOptions(max_depth=6, horizon_days=7, feature_set="counters"),
    ],
)
def test_consistent_options_pass(options):
    validate_options(options)


def test_no_algorithm_means_every_candidate():
    assert TrainOptions().algorithms() == (
        "decision_tree",
        "logistic_regression",
        "hist_gradient_boosting",
        "blend",
    )
    assert TrainOptions(algorithm="decision_tree").algorithms() == ("decision_tree",)


def test_the_tree_depth_is_searched_unless_fixed():
    assert TrainOptions().tree_depth() is None
    assert TrainOptions(max_depth=6).tree_depth() == 6
    assert TrainOptions(validation_curve=False).tree_depth() == 4


def test_options_serialise_to_json():
    data = TrainOptions(data_path=Path("d.csv"), report_dir=Path("r")).to_json()
    assert json.loads(json.dumps(data))["data_path"] == "d.csv"
