"""Reference figures on the real public data (shared/data/SOURCE.md), read from ../shared/data.

Runs in CI (not marked slow): about half a minute on two cores. Skipped when the file is absent.
"""

from pathlib import Path

import numpy as np
import pytest

from failcast.migrations import upgrade
from persistence import ModelVersionRepository, create_db_engine, session_scope
from training import TrainOptions, cross_validate_reference, load_dataset, train

REAL_DATA = (
    Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "device_failure_subset.csv.gz"
)

pytestmark = pytest.mark.skipif(
    not REAL_DATA.is_file(),
    reason=f"real dataset absent at {REAL_DATA.resolve()}: it is read from ../shared/data, "
    "never copied into the repository",
)


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(REAL_DATA)


@pytest.fixture(scope="module")
def reference(dataset):
    return cross_validate_reference(dataset, seed=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    # One SQLite database is enough: the registry on both backends is covered on synthetic data,
    # and a second real-data run would double this file's time.
    directory = tmp_path_factory.mktemp("real")
    url = f"sqlite:///{directory / 'registry.db'}"
    upgrade(url)
    engine = create_db_engine(url)
    outcome = train(
        TrainOptions(data_path=REAL_DATA, report_dir=directory / "reports"), engine, lambda _: None
    )
    with session_scope(engine) as session:
        row = ModelVersionRepository(session).get(outcome.version, with_artifact=True)
    engine.dispose()
    return outcome, row


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


def test_train_registers_logistic_regression_on_real_data(trained):
    outcome, row = trained
    candidates = outcome.metrics["candidates"]
    # What the data says: logistic regression has the far higher validation PR-AUC.
    assert (
        candidates["logistic_regression"]["validation"]["pr_auc"]
        > candidates["decision_tree"]["validation"]["pr_auc"]
    )
    assert outcome.algorithm == row.algorithm == "logistic_regression"
    assert not row.trained_on_synthetic_data and row.data_rows == 124_165
    test = outcome.metrics["test"]
    assert test["pr_auc"] > 10 * test["base_rate"]


def test_train_cross_validation_matches_the_reference(trained, reference):
    candidates = trained[0].metrics["candidates"]
    tree = candidates["decision_tree"]["cross_validation"]
    logistic = candidates["logistic_regression"]["cross_validation"]
    assert tree == reference["decision_tree_depth4_balanced"]
    assert logistic == reference["logistic_regression_log1p_balanced"]


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
    check_golden_set(load(row.artifact, row.artifact_sha256), row.golden_set)  # compiled == sklearn
    profile = row.input_profile["features"]
    assert set(profile) == set(dataset.feature_names)
    # Training devices only: within the whole dataset's range, and most counters mostly zeros.
    for i, name in enumerate(dataset.feature_names):
        assert dataset.X[:, i].min() <= profile[name]["min"] <= profile[name]["max"]
        assert profile[name]["max"] <= dataset.X[:, i].max()
    assert profile["metric3"]["zero_share"] > 0.9
