"""Reference figures on the real public data (shared/data/SOURCE.md), read from ../shared/data.

Runs in CI (not marked slow). The training run is the session's one (`real_training`, shared
with the other real-data tests); the references are cross-validated here. Skipped when the file
is absent.
"""

import numpy as np
import pytest
from support import REAL_DATA, needs_real_data

from training import cross_validate_reference, load_dataset

pytestmark = needs_real_data


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(REAL_DATA)


@pytest.fixture(scope="module")
def reference(dataset):
    return cross_validate_reference(dataset, seed=0)


@pytest.fixture(scope="module")
def trained(real_training):
    return real_training.outcome, real_training.row


def mean(reference, model, metric):
    return reference[model][metric]["mean"]


def test_loader_reads_the_published_counts(dataset):
    fp = dataset.fingerprint
    assert (fp.rows, fp.failures) == (124_165, 106)
    assert np.unique(dataset.devices).size == 1_163
    assert (str(fp.date_from), str(fp.date_to)) == ("2015-01-01", "2015-11-02")


def test_depth4_balanced_tree_reaches_the_reference(reference):
    assert mean(reference, "decision_tree_depth4_balanced", "roc_auc") >= 0.75
    assert mean(reference, "decision_tree_depth4_balanced", "pr_auc") >= 0.015


def test_logistic_regression_on_log1p_metrics_reaches_the_reference(reference):
    assert mean(reference, "logistic_regression_log1p_balanced", "pr_auc") >= 0.06
    assert mean(reference, "logistic_regression_log1p_balanced", "roc_auc") >= 0.8


def test_unpruned_tree_overfits_far_below_the_pruned_tree(reference):
    unpruned = mean(reference, "decision_tree_unpruned", "roc_auc")
    assert unpruned < 0.65
    assert unpruned < mean(reference, "decision_tree_depth4_balanced", "roc_auc") - 0.15
    assert mean(reference, "decision_tree_unpruned", "pr_auc") < 0.01


def test_train_registers_the_blend_on_real_data(trained):
    outcome, row = trained
    candidates = outcome.metrics["candidates"]
    # What the data says: on the training devices' folds, gradient boosting on history
    # features has the highest PR-AUC, the tree on any features the lowest; the blend's is
    # lower than boosting's by less than the folds' noise, so the blend is registered.
    search = {name: c["search"]["pr_auc"] for name, c in candidates.items()}
    assert max(search, key=search.get) == "hist_gradient_boosting"
    assert min(search, key=search.get) == "decision_tree"
    selection = outcome.metrics["selection"]
    assert selection["best"] == "hist_gradient_boosting"
    assert 0 < selection["blend_lead"] <= selection["standard_error"]
    assert outcome.algorithm == row.algorithm == "blend"
    assert not row.trained_on_synthetic_data and row.data_rows == 124_165
    test = outcome.metrics["test"]
    assert test["pr_auc"] > 10 * test["base_rate"]


def test_the_reference_logistic_regression_is_the_one_of_source_md(trained, reference):
    # The run's reference (the logistic regression on the counters, on the same folds) is
    # SOURCE.md's: log1p and signed log1p are the same on counters, bit for bit.
    ran = trained[0].metrics["references"]["logistic_regression_counters"]["cross_validation"]
    assert ran == reference["logistic_regression_log1p_balanced"]


def test_validation_curve_shows_deep_trees_overfit(trained):
    curve = {point["max_depth"]: point for point in trained[0].metrics["validation_curve"]}
    unpruned, shallow = curve[None], curve[4]
    assert unpruned["train"]["roc_auc"] > 0.99
    assert unpruned["validation"]["roc_auc"] < shallow["validation"]["roc_auc"] - 0.1


def test_the_real_model_carries_a_profile_and_a_golden_set_its_artifact_meets(trained, dataset):
    _, row = trained
    from model import load_artifact as load
    from model.golden import GOLDEN_ROWS, check_golden_set

    assert len(row.golden_set["inputs"]) == GOLDEN_ROWS
    # The failures of the training devices are part of it: the model's positive side is scored.
    assert max(row.golden_set["probabilities"]) > row.threshold
    check_golden_set(load(row.artifact, row.artifact_sha256), row.golden_set)  # served == sklearn
    profile = row.input_profile["features"]
    assert set(profile) == set(row.feature_names)  # counters and history features
    # Refitted on every device: within the whole dataset's range, most counters mostly zeros.
    assert row.input_profile["rows"] == row.data_rows
    for i, name in enumerate(dataset.feature_names):
        assert dataset.X[:, i].min() <= profile[name]["min"] <= profile[name]["max"]
        assert profile[name]["max"] <= dataset.X[:, i].max()
    assert profile["metric3"]["zero_share"] > 0.9
    assert profile["metric2_delta"]["min"] < 0 < profile["metric2_delta"]["max"]
