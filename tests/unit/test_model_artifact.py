"""The artifact format: digest verified before unpickling, fast path equal to sklearn."""

import numpy as np
import pytest

from model import (
    DEVICE_FEATURES,
    ArtifactFormatError,
    ArtifactIntegrityError,
    ArtifactMetadata,
    dump_artifact,
    load_artifact,
    sha256_hex,
)
from model.compiled import compile_spec
from model.transforms import signed_log1p
from training import generate_synthetic
from training.estimators import build_estimator


@pytest.fixture(scope="module")
def fleet():
    return generate_synthetic(devices=200, days=60, seed=3)


@pytest.mark.parametrize("algorithm", ["decision_tree", "logistic_regression"])
def test_fast_path_equals_predict_proba(fleet, algorithm):
    estimator = build_estimator(algorithm, seed=3).fit(fleet.X, fleet.y)
    data = dump_artifact(estimator, ArtifactMetadata(algorithm, DEVICE_FEATURES, 0.5))
    predictor = load_artifact(data, sha256_hex(data))
    assert predictor.compiled
    expected = estimator.predict_proba(fleet.X)[:, 1]
    assert np.abs(predictor.predict_proba(fleet.X) - expected).max() <= 1e-12
    one = predictor.predict_proba(fleet.X[:1])
    assert abs(one[0] - expected[0]) <= 1e-12


def test_a_trees_fast_path_gives_sklearns_probabilities_to_the_bit(fleet):
    # A tree's threshold is one of its leaves' scores: an ulp off would flip every row of that
    # leaf between FAILURE and NON_FAILURE.
    estimator = build_estimator("decision_tree", seed=3).fit(fleet.X, fleet.y)
    data = dump_artifact(estimator, ArtifactMetadata("decision_tree", DEVICE_FEATURES, 0.5))
    served = load_artifact(data, sha256_hex(data)).predict_proba(fleet.X)
    expected = estimator.predict_proba(fleet.X)[:, 1]
    assert np.array_equal(served, expected)
    for threshold in np.unique(expected):
        assert np.array_equal(served >= threshold, expected >= threshold)


def test_unpruned_tree_fast_path_equals_predict_proba(fleet):
    estimator = build_estimator("decision_tree", seed=3)
    estimator.set_params(max_depth=None).fit(fleet.X, fleet.y)
    data = dump_artifact(estimator, ArtifactMetadata("decision_tree", DEVICE_FEATURES, 0.5))
    predictor = load_artifact(data, sha256_hex(data))
    assert (
        np.abs(predictor.predict_proba(fleet.X) - estimator.predict_proba(fleet.X)[:, 1]).max()
        <= 1e-12
    )


def test_altered_artifact_bytes_are_refused_before_unpickling(demo_artifact):
    digest = sha256_hex(demo_artifact)
    altered = bytearray(demo_artifact)
    altered[len(altered) // 2] ^= 0xFF
    with pytest.raises(ArtifactIntegrityError):
        load_artifact(bytes(altered), digest)


def test_artifact_of_another_format_is_refused():
    import io

    import joblib

    buffer = io.BytesIO()
    joblib.dump({"format": "something-else"}, buffer)
    data = buffer.getvalue()
    with pytest.raises(ArtifactFormatError):
        load_artifact(data, sha256_hex(data))


def test_serving_a_compiled_artifact_never_imports_sklearn(demo_artifact, tmp_path):
    import subprocess
    import sys

    path = tmp_path / "model.joblib"
    path.write_bytes(demo_artifact)
    script = (
        "import sys, numpy as np\n"
        "from model import load_artifact, sha256_hex\n"
        f"data = open({str(path)!r}, 'rb').read()\n"
        "p = load_artifact(data, sha256_hex(data))\n"
        "p.predict_proba(np.zeros((3, 8)))\n"
        "print('sklearn' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_format_1_artifacts_still_load(demo_estimator, fleet):
    import io

    import joblib

    payload = {
        "format": "failcast-model/1",
        "estimator": demo_estimator,
        "algorithm": "decision_tree",
        "feature_names": list(DEVICE_FEATURES),
        "threshold": 0.5,
        "params": {},
    }
    buffer = io.BytesIO()
    joblib.dump(payload, buffer)
    data = buffer.getvalue()
    predictor = load_artifact(data, sha256_hex(data))
    assert predictor.compiled
    assert (
        np.abs(predictor.predict_proba(fleet.X) - demo_estimator.predict_proba(fleet.X)[:, 1]).max()
        <= 1e-12
    )


def test_an_estimator_that_cannot_be_compiled_is_served_by_sklearn(fleet):
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(
        fleet.X, fleet.y
    )
    data = dump_artifact(forest, ArtifactMetadata("random_forest", DEVICE_FEATURES, 0.5))
    predictor = load_artifact(data, sha256_hex(data))
    assert not predictor.compiled
    assert np.array_equal(
        predictor.predict_proba(fleet.X[:50]), forest.predict_proba(fleet.X[:50])[:, 1]
    )


def test_truncated_artifact_with_a_matching_digest_is_refused(demo_artifact):
    truncated = demo_artifact[: len(demo_artifact) // 2]
    with pytest.raises(ArtifactFormatError):
        load_artifact(truncated, sha256_hex(truncated))


def _log1p_pipeline(transform: object) -> object:
    """The logistic-regression pipeline with the given input transform."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return Pipeline(
        [
            ("transform", FunctionTransformer(transform)),
            ("scale", StandardScaler()),
            ("classifier", LogisticRegression(class_weight="balanced", max_iter=1000)),
        ]
    )


def test_signed_log1p_is_log1p_on_values_at_least_zero_and_odd_below():
    rng = np.random.default_rng(9)
    at_least_zero = np.concatenate(
        [
            [0.0, 5e-324, 1e-300, 1e-16, 0.5, 1.0, 2.0, 1e15, np.finfo(np.float32).max],
            rng.uniform(0, 1, 1000),
            rng.integers(0, 244_000_000, 1000).astype(np.float64),
        ]
    )
    assert np.array_equal(signed_log1p(at_least_zero), np.log1p(at_least_zero))
    assert np.array_equal(signed_log1p(-at_least_zero), -np.log1p(at_least_zero))
    assert np.isfinite(signed_log1p(np.array([-1.0, -2.0, -1e300]))).all()  # log1p: NaN, -inf


def test_the_logistic_regression_with_signed_log1p_is_the_log1p_one_on_counters(fleet):
    # Counters are >= 0: the new transform fits and scores the same model as the old one.
    old = _log1p_pipeline(np.log1p).fit(fleet.X, fleet.y)
    from training.estimators import logistic_regression

    new = logistic_regression(seed=3, signed=True).fit(fleet.X, fleet.y)
    assert new[0].func is signed_log1p
    assert np.array_equal(old[-1].coef_, new[-1].coef_)
    assert np.array_equal(old.predict_proba(fleet.X), new.predict_proba(fleet.X))
    data = dump_artifact(new, ArtifactMetadata("logistic_regression", DEVICE_FEATURES, 0.5))
    served = load_artifact(data, sha256_hex(data)).predict_proba(fleet.X)
    assert np.abs(served - old.predict_proba(fleet.X)[:, 1]).max() <= 1e-12


def test_a_log1p_pipeline_artifact_still_compiles_and_scores_as_before(fleet):
    # Artifacts registered before signed_log1p carry FunctionTransformer(np.log1p).
    estimator = _log1p_pipeline(np.log1p).fit(fleet.X, fleet.y)
    data = dump_artifact(estimator, ArtifactMetadata("logistic_regression", DEVICE_FEATURES, 0.5))
    predictor = load_artifact(data, sha256_hex(data))
    assert predictor.compiled
    expected = estimator.predict_proba(fleet.X)[:, 1]
    assert np.abs(predictor.predict_proba(fleet.X) - expected).max() <= 1e-12
    assert compile_spec(estimator)["steps"][0] == {"kind": "log1p"}


def test_the_signed_log1p_regression_scores_negative_history_deltas(fleet):
    from support import HISTORY_FEATURES, history_features

    X, y, _ = history_features(fleet)
    assert (X < 0).any()
    estimator = build_estimator("logistic_regression", seed=3, features=HISTORY_FEATURES)
    estimator.fit(X, y)
    metadata = ArtifactMetadata("logistic_regression", HISTORY_FEATURES, 0.5)
    data = dump_artifact(estimator, metadata)
    served = load_artifact(data, sha256_hex(data)).predict_proba(X)
    assert np.isfinite(served).all()
    assert np.abs(served - estimator.predict_proba(X)[:, 1]).max() <= 1e-12
