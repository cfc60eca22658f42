"""Explanations by the compiled evaluators equal scikit-learn's own decision_path and
decision_function, on real rows of the public dataset and on the synthetic fleet."""

import json
import math
import pickle

import numpy as np
import orjson
import pytest
from support import needs_real_data, real_dataset

from graph.schema import build_schema
from model import DEVICE_FEATURES, ArtifactMetadata, Predictor, dump_artifact, load_artifact
from model import sha256_hex as digest
from model.compiled import CONTRIBUTION_COLUMNS, CheckedRows, _contributions, _contributions_one
from training import generate_synthetic
from training.estimators import build_estimator

TOLERANCE = 1e-9


def _fitted(
    algorithm: str, X: np.ndarray, y: np.ndarray, point: dict | None = None, **params: object
):
    estimator = build_estimator(algorithm, 0, point)
    if params:
        estimator.set_params(**params)
    estimator.fit(X, y)
    data = dump_artifact(estimator, ArtifactMetadata(algorithm, DEVICE_FEATURES, 0.5))
    predictor = load_artifact(data, digest(data))
    assert predictor.compiled
    return estimator, predictor


def _rows(X: np.ndarray, y: np.ndarray, count: int = 400) -> np.ndarray:
    """Every failure and a fixed-seed sample of the rest: both sides of the model are explained."""
    rng = np.random.default_rng(12)
    rest = rng.choice(np.flatnonzero(y == 0), size=count, replace=False)
    return np.asarray(X[np.sort(np.concatenate([np.flatnonzero(y == 1), rest]))])


@pytest.fixture(scope="module")
def fleet():
    data = generate_synthetic(devices=300, days=60, seed=7)
    return data.X, data.y


@pytest.fixture(scope="module")
def real():
    data = real_dataset()
    return data.X, data.y


@pytest.fixture(params=["fleet", pytest.param("real", marks=needs_real_data)])
def dataset(request):
    """Rows of the synthetic fleet, and of the public dataset (skipped visibly without it)."""
    return request.getfixturevalue(request.param)


def _check_tree(estimator, predictor: Predictor, rows: np.ndarray) -> None:
    tree = estimator.tree_
    probabilities, explanations = predictor.explain(rows)
    assert explanations is not None
    indicator = estimator.decision_path(rows)
    leaves = estimator.apply(rows)
    # Each node's probability as scikit-learn's predict_proba gives it: scikit-learn >= 1.4
    # stores class fractions (returned as they are), older versions counts (divided).
    values = tree.value[:, 0, :]
    sums = values.sum(axis=1)
    node_proba = values[:, 1] if np.all(np.abs(sums - 1) <= 1e-9) else values[:, 1] / sums
    expected_proba = estimator.predict_proba(rows)[:, 1]
    assert np.abs(probabilities - expected_proba).max() <= 1e-12
    for i, explanation in enumerate(explanations):
        visited = indicator.indices[indicator.indptr[i] : indicator.indptr[i + 1]].tolist()
        assert visited[-1] == leaves[i]  # node ids grow along a path: the leaf comes last
        internal = visited[:-1]
        assert explanation["kind"] == "DECISION_PATH"
        assert explanation["score"] == pytest.approx(expected_proba[i], abs=1e-12)
        assert explanation["score"] == node_proba[leaves[i]]
        assert explanation["baseValue"] == node_proba[0]
        assert len(explanation["path"]) == len(internal)
        for step, node, following in zip(explanation["path"], internal, visited[1:], strict=True):
            feature = int(tree.feature[node])
            assert step["feature"] == DEVICE_FEATURES[feature]
            assert step["threshold"] == float(tree.threshold[node])
            assert step["value"] == float(rows[i, feature])  # as given, not its float32 copy
            assert step["goesLeft"] is bool(following == tree.children_left[node])
            # the direction is the one scikit-learn took: a float32 comparison with <=
            assert step["goesLeft"] is bool(np.float32(rows[i, feature]) <= tree.threshold[node])


def _check_linear(estimator, predictor: Predictor, rows: np.ndarray) -> None:
    probabilities, explanations = predictor.explain(rows)
    assert explanations is not None
    margins = estimator.decision_function(rows)
    transformed = estimator[:-1].transform(rows)
    coef, intercept = estimator[-1].coef_[0], float(estimator[-1].intercept_[0])
    assert np.abs(probabilities - estimator.predict_proba(rows)[:, 1]).max() <= 1e-12
    for i, explanation in enumerate(explanations):
        parts = explanation["contributions"]
        assert explanation["kind"] == "CONTRIBUTIONS"
        assert abs(explanation["score"] - margins[i]) <= TOLERANCE
        assert explanation["baseValue"] == intercept
        total = explanation["baseValue"] + sum(p["contribution"] for p in parts)
        assert abs(total - explanation["score"]) <= TOLERANCE
        assert sorted(p["feature"] for p in parts) == sorted(DEVICE_FEATURES)
        magnitudes = [abs(p["contribution"]) for p in parts]
        assert magnitudes == sorted(magnitudes, reverse=True)
        for part in parts:
            j = DEVICE_FEATURES.index(part["feature"])
            assert part["value"] == float(rows[i, j])  # the raw input, before log1p and scaling
            assert abs(part["contribution"] - coef[j] * transformed[i, j]) <= TOLERANCE


def test_tree_paths_are_scikit_learns_decision_path(dataset):
    X, y = dataset
    for params in ({}, {"max_depth": None}):  # the pruned tree, and a deep unpruned one
        estimator, predictor = _fitted("decision_tree", X, y, **params)
        _check_tree(estimator, predictor, _rows(X, y))


def test_contributions_add_up_to_scikit_learns_decision_function(dataset):
    X, y = dataset
    estimator, predictor = _fitted("logistic_regression", X, y)
    _check_linear(estimator, predictor, _rows(X, y))


def test_a_value_that_only_its_float32_copy_puts_left_is_reported_as_given(fleet):
    X, y = fleet
    estimator, predictor = _fitted("decision_tree", X, y)
    tree = estimator.tree_
    feature, threshold = int(tree.feature[0]), float(tree.threshold[0])
    row = X[:1].copy()
    row[0, feature] = np.nextafter(threshold, np.inf)  # above the threshold, float32 is not
    if not np.float32(row[0, feature]) <= threshold:
        pytest.skip("this threshold's float32 neighbourhood does not round down")
    _, (explanation,) = predictor.explain(row)
    first = explanation["path"][0]
    assert first["value"] == row[0, feature] > first["threshold"] and first["goesLeft"] is True
    assert estimator.decision_path(row).indices[1] == tree.children_left[0]


@pytest.mark.parametrize("algorithm", ["decision_tree", "logistic_regression", "blend"])
def test_a_batch_is_explained_as_its_rows_one_by_one(fleet, algorithm):
    X, y = fleet
    point = {"max_iter": 15, "max_depth": 3} if algorithm == "blend" else None
    _, predictor = _fitted(algorithm, X, y, point)
    rows = _rows(X, y, 60)
    probabilities, batch = predictor.explain(rows)
    assert np.array_equal(probabilities, predictor.predict_proba(rows))
    for i in range(len(rows)):
        one, (alone,) = predictor.explain(rows[i : i + 1])
        assert one[0] == pytest.approx(probabilities[i], abs=1e-15)
        assert batch[i].keys() == alone.keys()
        assert batch[i]["score"] == pytest.approx(alone["score"], abs=1e-12)
        steps = "path" if algorithm == "decision_tree" else "contributions"
        assert batch[i][steps] == alone[steps]


@pytest.mark.parametrize("algorithm", ["decision_tree", "logistic_regression"])
def test_explanations_are_json_keyed_like_the_graphql_types(fleet, algorithm):
    X, y = fleet
    _, predictor = _fitted(algorithm, X, y)
    _, (explanation,) = predictor.explain(X[:1])
    assert json.loads(json.dumps(explanation)) == explanation
    types = build_schema()._schema.type_map
    assert set(explanation) < set(types["Explanation"].fields)
    step_type = "DecisionStep" if algorithm == "decision_tree" else "Contribution"
    steps = explanation["path" if algorithm == "decision_tree" else "contributions"]
    assert steps and all(set(step) == set(types[step_type].fields) for step in steps)


def test_a_model_scikit_learn_answers_has_no_explanations(fleet):
    from sklearn.ensemble import RandomForestClassifier

    X, y = fleet
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, y)
    data = dump_artifact(forest, ArtifactMetadata("forest", DEVICE_FEATURES, 0.5))
    predictor = load_artifact(data, digest(data))
    probabilities, explanations = predictor.explain(X[:5])
    assert not predictor.compiled and explanations is None
    assert np.array_equal(probabilities, forest.predict_proba(X[:5])[:, 1])


@pytest.mark.parametrize(
    ("algorithm", "params"),
    [("logistic_regression", {}), ("blend", {"max_iter": 15, "max_depth": 3})],
)
def test_contributions_are_checked_once_when_made(fleet, algorithm, params):
    """The compiled plans serve an explanation's contributions as they are when they were
    checked when made: every value a finite float, every feature a str, the keys in order."""
    X, y = fleet
    estimator = build_estimator(algorithm, 0, params or None)
    estimator.fit(X, y)
    data = dump_artifact(estimator, ArtifactMetadata(algorithm, DEVICE_FEATURES, 0.5))
    predictor = load_artifact(data, digest(data))
    for rows in (X[:1], X[:40]):  # the one-row path and the batch path
        _, explanations = predictor.explain(rows)
        assert explanations is not None
        for explanation in explanations:
            parts = explanation["contributions"]
            assert type(parts) is CheckedRows and parts.columns == CONTRIBUTION_COLUMNS
            for part in parts:
                assert tuple(part) == ("feature", "value", "contribution")
                assert type(part["feature"]) is str
                assert all(
                    type(part[k]) is float and math.isfinite(part[k])
                    for k in ("value", "contribution")
                )
            copied = pickle.loads(pickle.dumps(parts))  # to a writer process and back
            assert type(copied) is CheckedRows and copied.columns == parts.columns
            assert copied == parts and orjson.dumps(parts) == orjson.dumps(list(parts))
    # one value that is not finite, and the call's contributions are all left unchecked: the
    # plans check them item by item (and refuse what is not a finite float)
    rows = np.array(X[:3], dtype=np.float64)
    rows[1, 0] = np.inf
    _, explanations = predictor.explain(rows)
    assert explanations is not None
    assert all(type(e["contributions"]) is list for e in explanations)


@pytest.mark.parametrize("every_feature", [True, False])
def test_one_row_in_plain_python_is_explained_as_numpy_explains_it(every_feature):
    """One row's contributions are ranked without numpy (model.compiled._contributions_one):
    the same order as numpy's stable argsort, ties and zeros of either sign included, and the
    same refusal to vouch for a row with a value that is not finite."""
    names = [f"f{i}" for i in range(9)]
    row = [1.0, 2.0, 0.0, 3.5, -1.0, 7.0, 0.25, 9.0, 4.0]
    parts = [0.5, -0.5, 0.0, 2.0, -0.0, 0.5, -2.0, 1e-300, -1e-300]  # ties by magnitude
    for values, contributions in ((row, parts), ([*row[:8], math.nan], parts),
                                  (row, [*parts[:3], math.inf, *parts[4:]])):  # fmt: skip
        one = _contributions_one(0.75, 0.1, values, contributions, names, every_feature)
        [batch] = _contributions(np.array([0.75]), 0.1, np.array([values]),
                                 np.array([contributions]), names, every_feature)  # fmt: skip
        assert type(one["contributions"]) is type(batch["contributions"])
        assert repr(one) == repr(batch)  # NaN != NaN: compared as text, order and all
    one = _contributions_one(0.75, 0.1, row, parts, names, every_feature)
    ranked = [c["feature"] for c in one["contributions"]]
    expected = ["f3", "f6", "f0", "f1", "f5", "f7", "f8", "f2", "f4"]
    assert ranked == (expected if every_feature else expected[:7])
    assert type(one["contributions"]) is CheckedRows
