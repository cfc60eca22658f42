"""train() on a synthetic fleet registers a model version in a real (migrated) database."""

import json

import numpy as np
import pytest

from model import load_artifact
from persistence import ModelVersionRepository, PersistenceError, create_db_engine, session_scope
from training import ALGORITHMS, TrainOptions, VersionNotFoundError, evaluate_version, train
from training.experiment import run_experiment
from training.features import FEATURE_SETS
from training.trainer import load_training_data

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def quiet(_: str) -> None:
    """Progress sink that drops messages."""


def options(tmp_path, **overrides):
    # Small and quick: enough failing devices for every split, curve and CV kept cheap.
    base = dict(
        seed=3,
        synthetic_devices=400,
        synthetic_days=100,
        cv_folds=2,
        validation_curve=False,
        report_dir=tmp_path / "reports",
    )
    return TrainOptions(**{**base, **overrides})


def stored(engine, version):
    with session_scope(engine) as session:
        return ModelVersionRepository(session).get(version, with_artifact=True)


def active_version(engine):
    with session_scope(engine) as session:
        row = ModelVersionRepository(session).active()
        return None if row is None else row.version


def test_train_registers_and_activates_a_version(db_engine, tmp_path):
    outcome = train(options(tmp_path, activate=True), db_engine, quiet)
    row = stored(db_engine, outcome.version)
    assert active_version(db_engine) == outcome.version and outcome.activated
    assert (row.algorithm, row.threshold) == (outcome.algorithm, outcome.threshold)
    assert row.trained_on_synthetic_data and outcome.trained_on_synthetic_data
    assert row.data_sha256.startswith("synthetic:") and row.data_failures > 0
    assert row.metrics["selected"] == outcome.algorithm
    assert sorted(row.metrics["candidates"]) == sorted(ALGORITHMS)  # PostgreSQL's JSONB reorders
    assert row.lineage["seed"] == 3 and row.lineage["versions"]["scikit-learn"]
    assert row.horizon_days == 1 == row.lineage["horizon_days"] == row.metrics["horizon_days"]
    feature_set = row.lineage["feature_set"]
    assert row.feature_names == list(FEATURE_SETS[feature_set]) == row.lineage["features"]
    assert row.metrics["feature_set"]["name"] == feature_set


def test_registered_artifact_predicts_like_the_trained_estimator(db_engine, tmp_path):
    opts = options(tmp_path, algorithm="logistic_regression")  # refitted, as every selection is
    outcome = train(opts, db_engine, quiet)
    row = stored(db_engine, outcome.version)
    predictor = load_artifact(row.artifact, row.artifact_sha256)
    # Training is deterministic given the seed: rerun the experiment to get the estimator.
    dataset = load_training_data(opts, quiet)
    run = run_experiment(opts, dataset, quiet)
    features = run.features.matrix  # the history features of every row, as training made them
    # What is registered is the selected pipeline refitted on every device, not its fit on the
    # training devices that the test figures score.
    assert run.refitted is not None and run.served is run.refitted
    expected = run.served.predict_proba(features)[:, 1]
    np.testing.assert_allclose(predictor.predict_proba(features), expected, rtol=1e-9, atol=1e-12)
    trained = run.chosen.estimator.predict_proba(features)[:, 1]
    assert np.abs(predictor.predict_proba(features) - trained).max() > 1e-6
    assert predictor.threshold == outcome.threshold == run.chosen.threshold
    assert predictor.feature_names == tuple(row.feature_names) == run.feature_names
    fitted_on = row.metrics["fitted_on"]
    assert fitted_on == {"devices": "all", "rows": row.data_rows, "devices_count": 400}
    assert row.lineage["refit_on_all_devices"] and row.lineage["options"]["refit"]


def test_no_refit_registers_the_fit_on_the_training_devices(db_engine, tmp_path):
    opts = options(tmp_path, refit=False, algorithm="logistic_regression")
    outcome = train(opts, db_engine, quiet)
    row = stored(db_engine, outcome.version)
    predictor = load_artifact(row.artifact, row.artifact_sha256)
    run = run_experiment(opts, load_training_data(opts, quiet), quiet)
    assert run.refitted is None and run.served is run.chosen.estimator
    expected = run.chosen.estimator.predict_proba(run.features.matrix)[:, 1]
    np.testing.assert_allclose(
        predictor.predict_proba(run.features.matrix), expected, rtol=1e-9, atol=1e-12
    )
    assert row.metrics["fitted_on"]["devices"] == "training"
    assert row.metrics["fitted_on"]["rows"] == row.lineage["splits"]["train"]["rows"]
    assert not row.lineage["refit_on_all_devices"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_named_algorithm_is_the_one_registered(db_engine, tmp_path, algorithm):
    outcome = train(options(tmp_path, algorithm=algorithm, cv_folds=0), db_engine, quiet)
    row = stored(db_engine, outcome.version)
    assert row.algorithm == algorithm and list(row.metrics["candidates"]) == [algorithm]
    assert load_artifact(row.artifact, row.artifact_sha256).algorithm == algorithm


def test_a_horizon_is_the_versions(db_engine, tmp_path):
    opts = options(tmp_path, horizon_days=7, algorithm="logistic_regression")
    outcome = train(opts, db_engine, quiet)
    row = stored(db_engine, outcome.version)
    assert row.horizon_days == 7 == row.lineage["horizon_days"] == outcome.metrics["horizon_days"]
    assert row.lineage["options"]["horizon_days"] == 7
    report = json.loads(outcome.report_path.read_text())
    assert report["horizon_days"] == 7
    # Rows up to seven days before each failure are positive: more of them than failures.
    positives = sum(size["failures"] for size in row.lineage["splits"].values())
    assert row.data_failures < positives


def test_report_directory_holds_json_model_and_plots(db_engine, tmp_path):
    opts = options(tmp_path, validation_curve=True, cv_folds=3)
    outcome = train(opts, db_engine, quiet)
    directory = opts.report_dir / outcome.version
    assert outcome.report_path == directory / "report.json"
    report = json.loads(outcome.report_path.read_text())
    assert report["version"] == outcome.version and report["metrics"] == outcome.metrics
    assert (directory / "model.joblib").read_bytes() == stored(db_engine, outcome.version).artifact
    for name in ("pr_curve.png", "confusion_matrix.png", "validation_curve.png", "reliability.png"):
        assert (directory / name).read_bytes().startswith(PNG_MAGIC), name
    assert sorted(p.name for p in opts.report_dir.iterdir()) == [outcome.version]


def test_inactive_training_leaves_the_active_version_alone(db_engine, tmp_path):
    quick = {"algorithm": "decision_tree", "cv_folds": 0}  # activation is the point, not selection
    first = train(options(tmp_path, activate=True, **quick), db_engine, quiet)
    second = train(options(tmp_path, seed=4, **quick), db_engine, quiet)
    assert second.version != first.version and not second.activated
    assert active_version(db_engine) == first.version


def test_registration_failure_leaves_no_report(tmp_path):
    unmigrated = create_db_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    opts = options(tmp_path, algorithm="decision_tree", cv_folds=0)
    with pytest.raises(PersistenceError):
        train(opts, unmigrated, quiet)
    assert list(opts.report_dir.iterdir()) == []


def test_evaluate_version_scores_a_registered_version(db_engine, tmp_path):
    outcome = train(options(tmp_path, algorithm="decision_tree", cv_folds=0), db_engine, quiet)
    result = evaluate_version(db_engine, outcome.version)
    assert result["version"] == outcome.version and result["threshold"] == outcome.threshold
    assert result["data"]["synthetic"] and not result["same_data_as_training"]
    assert 0.0 <= result["metrics"]["roc_auc"] <= 1.0


def test_evaluate_unknown_version_is_a_training_error(db_engine):
    with pytest.raises(VersionNotFoundError):
        evaluate_version(db_engine, "1999.01.01-1")


def test_a_trained_version_carries_its_training_profile_and_a_golden_set(db_engine, tmp_path):
    from model.golden import check_golden_set

    # any algorithm has a profile and a golden set: one, refitted (cross-validated) as by default
    outcome = train(options(tmp_path, algorithm="logistic_regression"), db_engine, quiet)
    row = stored(db_engine, outcome.version)
    assert set(row.input_profile["features"]) == set(row.feature_names)
    assert row.input_profile["rows"] == row.data_rows  # the rows of every device: refitted
    golden = row.golden_set
    assert golden["feature_names"] == row.feature_names and len(golden["inputs"]) == 64
    check_golden_set(load_artifact(row.artifact, row.artifact_sha256), golden)
