"""The model quality failcast's training reaches on the real data, pinned (issue 14).

The session's one real-data run (`real_training`: `failcast train --data` with its defaults,
seed 0, horizon 1 day) is held to the goals and to the figures it reached when this test was
written, so that a change which lowers the quality fails here. The pins are exact up to a small
tolerance: a deliberate change of the pipeline that moves them updates them here, with the
README's table (Model lifecycle, "Model quality"). Skipped visibly without the data.
"""

import pytest
from support import needs_real_data

pytestmark = needs_real_data

# (value, tolerance): figures of the selected pipeline, seed 0, 1-day horizon.
CV_ROC_AUC = (0.881, 0.003)  # grouped 5-fold cross-validation over all devices
CV_PR_AUC = (0.126, 0.003)
TEST_ROC_AUC = (0.830, 0.003)  # the held-out test devices, scored once
TEST_PR_AUC = (0.123, 0.003)
TEST_COUNTS = {"tp": 4, "fp": 25, "fn": 17}  # at the threshold chosen on validation devices
BEFORE = {"recall": 0.24, "precision": 0.098}  # the logistic regression on counters, served before


@pytest.fixture(scope="module")
def metrics(real_training):
    return real_training.outcome.metrics


def pinned(value, pin):
    expected, tolerance = pin
    return value == pytest.approx(expected, abs=tolerance)


def test_the_selected_pipeline_and_its_features(real_training, metrics):
    assert metrics["selected"] == "blend"  # boosting's lead is within the folds' noise
    assert metrics["feature_set"]["name"] == "counters+delta+max7+zero_run+observations"
    assert real_training.row.feature_names == metrics["feature_set"]["features"]
    assert real_training.row.params["calibration"] == metrics["calibration"]["method"]


def test_cross_validation_reaches_the_goal_and_its_pins(metrics):
    cv = metrics["cross_validation"]
    assert cv["folds"] == 5
    roc, pr = cv["roc_auc"]["mean"], cv["pr_auc"]["mean"]
    assert roc >= 0.88 and pr >= 0.10, (roc, pr)  # the goal at a 1-day horizon
    assert pinned(roc, CV_ROC_AUC) and pinned(pr, CV_PR_AUC), (roc, pr)
    calibrated = cv["calibrated"]  # the served (calibrated) probabilities rank as well
    assert calibrated["roc_auc"]["mean"] >= 0.88 and calibrated["pr_auc"]["mean"] >= 0.10


def test_calibration_keeps_the_ranking_the_model_learned(metrics):
    calibration = metrics["calibration"]
    assert calibration["method"] == "sigmoid"  # isotonic's 0.087 -> 0.062 PR-AUC: refused
    assert calibration["method"] in calibration["keeps_ranking"]
    ranking = calibration["ranking"]
    assert ranking["isotonic"]["pr_auc"] < ranking["uncalibrated"]["pr_auc"] - 0.02
    cv = metrics["cross_validation"]
    assert cv["calibrated"]["pr_auc"]["mean"] == pytest.approx(cv["pr_auc"]["mean"], abs=1e-12)


def test_calibration_improves_the_brier_score_on_held_out_folds(metrics):
    for name, candidate in metrics["candidates"].items():
        brier = candidate["cross_validation"]["calibrated"]["brier"]
        assert brier["calibrated"]["mean"] < brier["uncalibrated"]["mean"], name
    # What failureProbability meant before (a balanced-class score) against now.
    before = metrics["references"]["logistic_regression_counters"]["test"]["brier"]
    assert metrics["test"]["brier"] < before / 50


def test_the_test_devices_beat_every_reference_and_the_model_served_before(metrics):
    test = metrics["test"]
    assert pinned(test["roc_auc"], TEST_ROC_AUC) and pinned(test["pr_auc"], TEST_PR_AUC)
    assert {k: test[k] for k in TEST_COUNTS} == TEST_COUNTS
    for name, reference in metrics["references"].items():
        assert test["roc_auc"] > reference["test"]["roc_auc"], name
        assert test["pr_auc"] > reference["test"]["pr_auc"], name
    served_before = metrics["references"]["logistic_regression_counters"]["test"]
    assert served_before["recall"] == pytest.approx(BEFORE["recall"], abs=0.005)
    assert served_before["precision"] == pytest.approx(BEFORE["precision"], abs=0.005)
    # The threshold maximises F1 on the validation devices; on the 21 test failures it finds 4
    # (5 before) with a third of the false alarms per failure found.
    assert test["precision"] > BEFORE["precision"] and test["f1"] > _f1(BEFORE)


def _f1(scores):
    return 2 * scores["recall"] * scores["precision"] / (scores["recall"] + scores["precision"])


def test_the_feature_set_table_is_in_the_metrics(metrics):
    table = {row["name"]: row for row in metrics["feature_sets"]}
    assert list(table) == [
        "counters",
        "counters+delta+max7",
        "counters+delta+max7+zero_run+observations",
    ]
    assert [row["depth"] for row in table.values()] == [0, 6, 7]
    boosted = {n: r["scores"]["hist_gradient_boosting"]["pr_auc"]["mean"] for n, r in table.items()}
    assert max(boosted, key=boosted.get) == metrics["feature_set"]["name"]


def test_the_registered_version_is_refitted_on_every_device(real_training, metrics):
    # The test figures above score the fit on the training devices; what is served is the same
    # pipeline refitted on all 1,163 devices, at the threshold chosen on validation devices.
    assert metrics["fitted_on"] == {"devices": "all", "rows": 124_165, "devices_count": 1163}
    assert real_training.row.lineage["refit_on_all_devices"]
    assert real_training.row.threshold == metrics["threshold"] == metrics["test"]["threshold"]
