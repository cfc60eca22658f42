"""Gradient boosting compiled to plain arrays (model.compiled) equals scikit-learn's
HistGradientBoostingClassifier, on real rows with history features and on the synthetic fleet,
and explains itself by path attribution that adds up to its log-odds."""

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from support import HISTORY_FEATURES, history_features, needs_real_data, real_history

from model import ArtifactMetadata, Predictor, compiled, dump_artifact, load_artifact, sha256_hex
from model.compiled import compile_spec
from model.golden import build_golden_set, check_golden_set, pick_golden_rows
from training import generate_synthetic

TOLERANCE = 1e-9
NAMES = HISTORY_FEATURES
FIT_ROWS = 6000  # plus every failure: enough for trees of 31 leaves, quick to fit


def boosting(**params: object) -> HistGradientBoostingClassifier:
    """A small balanced gradient-boosted model (no early stopping: a fixed number of trees)."""
    settings: dict[str, object] = {
        "max_iter": 50,
        "early_stopping": False,
        "class_weight": "balanced",
        "random_state": 0,
    }
    return HistGradientBoostingClassifier(**{**settings, **params})


def served(estimator: object, names: tuple[str, ...] = NAMES) -> Predictor:
    """The estimator through the artifact format, as a serving process loads it."""
    data = dump_artifact(estimator, ArtifactMetadata("gradient_boosting", names, 0.5))
    return load_artifact(data, sha256_hex(data))


def split(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows to fit on, rows to check): every failure and a sample of the rest in each, the
    checked rows mostly unseen."""
    rng = np.random.default_rng(seed)
    failures, others = np.flatnonzero(y == 1), rng.permutation(np.flatnonzero(y == 0))
    fit = np.sort(np.concatenate([failures, others[:FIT_ROWS]]))
    check = np.sort(np.concatenate([failures, others[FIT_ROWS : FIT_ROWS + 700]]))
    return fit, check


class Case:
    """A fitted model, its served predictor and the rows to check it on."""

    def __init__(self, X: np.ndarray, y: np.ndarray, seed: int) -> None:
        fit, check = split(X, y, seed)
        self.estimator = boosting().fit(X[fit], y[fit])
        self.predictor = served(self.estimator)
        self.rows = X[check]
        self.X, self.y = X, y


@pytest.fixture(scope="module")
def fleet_case() -> Case:
    X, y, _ = history_features(generate_synthetic(devices=300, days=60, seed=7, failure_rate=0.01))
    return Case(X, y, seed=1)


@pytest.fixture(scope="module")
def real_case() -> Case:
    X, y, _ = real_history()
    return Case(X, y, seed=2)


@pytest.fixture(params=["fleet", pytest.param("real", marks=needs_real_data)])
def case(request: pytest.FixtureRequest) -> Case:
    """The synthetic fleet, and the public dataset (skipped visibly without it)."""
    return request.getfixturevalue(f"{request.param}_case")


def test_rows_have_negative_deltas(case: Case) -> None:
    # What the signed transforms and this model must handle: history deltas below zero.
    deltas = [j for j, name in enumerate(NAMES) if name.endswith("_delta")]
    assert (case.rows[:, deltas] < 0).any()
    others = [j for j in range(len(NAMES)) if j not in deltas]
    assert (case.X[:, others] >= 0).all()


def test_compiled_boosting_equals_predict_proba(case: Case) -> None:
    predictor, estimator, rows = case.predictor, case.estimator, case.rows
    assert predictor.compiled
    expected = estimator.predict_proba(rows)[:, 1]
    got = predictor.predict_proba(rows)
    assert np.abs(got - expected).max() <= TOLERANCE
    # The raw score is scikit-learn's to the bit: the same leaves, added in the same order.
    scores, explanations = predictor.explain(rows)
    assert [e["score"] for e in explanations] == estimator.decision_function(rows).tolist()
    assert np.array_equal(scores, got)


def test_one_row_is_scored_and_explained_as_in_a_batch(case: Case) -> None:
    predictor, rows = case.predictor, case.rows[:80]
    batch = predictor.predict_proba(rows)
    probabilities, explanations = predictor.explain(rows)
    for i in range(len(rows)):
        assert predictor.predict_proba(rows[i : i + 1])[0] == batch[i]
        one, (alone,) = predictor.explain(rows[i : i + 1])
        assert one[0] == probabilities[i] == batch[i]
        assert alone == explanations[i]


def _thresholds(estimator: HistGradientBoostingClassifier) -> list[tuple[int, float]]:
    """(feature, threshold) of every finite numeric split."""
    splits = set()
    for (tree,) in estimator._predictors:
        nodes = tree.nodes[tree.nodes["is_leaf"] == 0]
        for feature, threshold in zip(nodes["feature_idx"], nodes["num_threshold"], strict=True):
            if np.isfinite(threshold):
                splits.add((int(feature), float(threshold)))
    return sorted(splits)


def test_rows_exactly_on_and_next_to_thresholds(case: Case) -> None:
    # scikit-learn compares the float64 value with <=: on the threshold goes left, an ulp above
    # goes right; the compiled model must send each of them where scikit-learn does.
    estimator, predictor = case.estimator, case.predictor
    rng = np.random.default_rng(3)
    splits = _thresholds(estimator)
    chosen = [splits[i] for i in rng.choice(len(splits), size=min(150, len(splits)), replace=False)]
    rows = []
    for feature, threshold in chosen:
        base = case.rows[rng.integers(len(case.rows))]
        for value in (threshold, np.nextafter(threshold, -np.inf), np.nextafter(threshold, np.inf)):
            row = base.copy()
            row[feature] = value
            rows.append(row)
    matrix = np.array(rows)
    expected = estimator.predict_proba(matrix)[:, 1]
    assert np.abs(predictor.predict_proba(matrix) - expected).max() <= TOLERANCE
    scores = [e["score"] for e in predictor.explain(matrix)[1]]
    assert scores == estimator.decision_function(matrix).tolist()
    one_by_one = [predictor.predict_proba(matrix[i : i + 1])[0] for i in range(0, len(matrix), 7)]
    assert np.abs(np.array(one_by_one) - expected[::7]).max() <= TOLERANCE
    # A single row is walked tree by tree (not through the vectorised finder): the same leaves,
    # so its raw score is still scikit-learn's to the bit, and its probability the batch's.
    single = [predictor.explain(matrix[i : i + 1])[1][0]["score"] for i in range(len(matrix))]
    assert single == scores
    batch = predictor.predict_proba(matrix)
    assert [predictor.predict_proba(row[None, :])[0] for row in matrix] == batch.tolist()


def _expected_values(nodes: np.ndarray) -> dict[int, float]:
    """Each node's expected value, by recursion: a leaf's value, or its children's weighted by
    the training rows that reached them (an oracle written apart from model.compiled)."""
    values: dict[int, float] = {}

    def visit(node: int) -> tuple[float, float]:
        if nodes["is_leaf"][node]:
            values[node] = float(nodes["value"][node])
            return values[node], float(nodes["count"][node])
        left_value, left_count = visit(int(nodes["left"][node]))
        right_value, right_count = visit(int(nodes["right"][node]))
        count = left_count + right_count
        values[node] = (left_count * left_value + right_count * right_value) / count
        return values[node], count

    visit(0)
    return values


def _saabas(estimator: HistGradientBoostingClassifier, row: np.ndarray) -> tuple[float, dict]:
    """(baseValue, contribution per feature index) by walking scikit-learn's own node arrays."""
    base = float(estimator._baseline_prediction.ravel()[0])
    parts: dict[int, float] = {}
    for (tree,) in estimator._predictors:
        nodes = tree.nodes
        expected = _expected_values(nodes)
        node = 0
        base += expected[0]
        while not nodes["is_leaf"][node]:
            feature = int(nodes["feature_idx"][node])
            goes_left = row[feature] <= nodes["num_threshold"][node]
            child = int(nodes["left"][node] if goes_left else nodes["right"][node])
            parts[feature] = parts.get(feature, 0.0) + expected[child] - expected[node]
            node = child
    return base, parts


def test_contributions_are_path_attributions_that_add_up_to_the_log_odds(case: Case) -> None:
    estimator, predictor = case.estimator, case.predictor
    rows = case.rows
    _, explanations = predictor.explain(rows)
    scores = estimator.decision_function(rows)
    for i, explanation in enumerate(explanations):
        parts = explanation["contributions"]
        assert explanation["kind"] == "CONTRIBUTIONS"
        total = explanation["baseValue"] + sum(p["contribution"] for p in parts)
        assert abs(total - explanation["score"]) <= TOLERANCE
        assert abs(explanation["score"] - scores[i]) <= TOLERANCE
        magnitudes = [abs(p["contribution"]) for p in parts]
        assert magnitudes == sorted(magnitudes, reverse=True)
        assert all(p["contribution"] != 0 for p in parts)
        for part in parts:
            assert part["value"] == float(rows[i, NAMES.index(part["feature"])])
    # The attribution itself, against an oracle walking scikit-learn's trees, on a few rows.
    for i in range(0, len(rows), len(rows) // 12):
        base, expected = _saabas(estimator, rows[i])
        explanation = explanations[i]
        assert abs(explanation["baseValue"] - base) <= TOLERANCE
        got = {NAMES.index(p["feature"]): p["contribution"] for p in explanation["contributions"]}
        nonzero = {f: v for f, v in expected.items() if v != 0.0}
        assert got.keys() == nonzero.keys()
        assert all(abs(got[f] - nonzero[f]) <= TOLERANCE for f in got)


def test_missing_values_go_where_scikit_learn_sends_them(fleet_case: Case) -> None:
    # Serving never sends NaN (inputs are checked finite), but the rule is scikit-learn's: a NaN
    # goes to the side each node learned (or the side most training rows took).
    rng = np.random.default_rng(4)
    X, y = fleet_case.X.copy(), fleet_case.y
    fit, check = split(X, y, seed=5)
    X[rng.random(X.shape) < 0.05] = np.nan  # some NaN in training: learned directions
    estimator = boosting(max_iter=15).fit(X[fit], y[fit])
    predictor = served(estimator)
    rows = X[check]
    expected = estimator.predict_proba(rows)[:, 1]
    assert np.isnan(rows).any()
    assert np.abs(predictor.predict_proba(rows) - expected).max() <= TOLERANCE
    singles = [predictor.predict_proba(rows[i : i + 1])[0] for i in range(40)]
    assert np.abs(np.array(singles) - expected[:40]).max() <= TOLERANCE
    assert singles == predictor.predict_proba(rows[:40]).tolist()  # NaN: one row as in a batch
    # The model fitted without NaN, asked about NaN: each node's default side.
    holes = fleet_case.rows.copy()
    holes[rng.random(holes.shape) < 0.3] = np.nan
    expected = fleet_case.estimator.predict_proba(holes)[:, 1]
    assert np.abs(fleet_case.predictor.predict_proba(holes) - expected).max() <= TOLERANCE


def test_trees_of_more_than_64_leaves_are_compiled_too(fleet_case: Case) -> None:
    X = fleet_case.X
    noise = (np.random.default_rng(6).random(len(X)) < 0.3).astype(int)  # gain at every split
    fit, check = np.arange(0, len(X), 2), np.arange(1, len(X), 2)
    estimator = boosting(max_iter=4, max_leaf_nodes=90, min_samples_leaf=2, class_weight=None)
    estimator.fit(X[fit], noise[fit])
    leaves = [int(tree.nodes["is_leaf"].sum()) for (tree,) in estimator._predictors]
    assert max(leaves) > 64  # beyond the bitmasks' word: walked level by level
    predictor = served(estimator)
    rows = X[check]
    assert predictor.compiled
    expected = estimator.predict_proba(rows)[:, 1]
    probabilities, explanations = predictor.explain(rows)
    assert np.abs(predictor.predict_proba(rows) - expected).max() <= TOLERANCE
    assert np.array_equal(probabilities, predictor.predict_proba(rows))
    assert predictor.explain(rows[5:6])[1][0] == explanations[5]
    holes = rows.copy()
    holes[np.random.default_rng(7).random(holes.shape) < 0.3] = np.nan
    expected = estimator.predict_proba(holes)[:, 1]
    assert np.abs(predictor.predict_proba(holes) - expected).max() <= TOLERANCE
    for explanation in explanations:
        total = explanation["baseValue"] + sum(
            p["contribution"] for p in explanation["contributions"]
        )
        assert abs(total - explanation["score"]) <= TOLERANCE


def test_golden_set_of_real_rows_rescored_within_tolerance(case: Case) -> None:
    golden_rows = pick_golden_rows(case.X, case.y)
    golden = build_golden_set(NAMES, golden_rows, case.estimator.predict_proba(golden_rows)[:, 1])
    check_golden_set(case.predictor, golden)


def test_categorical_splits_are_not_compiled(fleet_case: Case) -> None:
    X, y = fleet_case.X.copy(), fleet_case.y
    fit, check = split(X, y, seed=7)
    X[:, 0] = np.minimum(X[:, 0] // 1e7, 20)  # a small-integer column, declared categorical
    estimator = boosting(max_iter=10, categorical_features=[0]).fit(X[fit], y[fit])
    assert compile_spec(estimator) is None
    predictor = served(estimator)  # served by scikit-learn, as any unknown shape
    assert not predictor.compiled
    assert np.array_equal(
        predictor.predict_proba(X[check]), estimator.predict_proba(X[check])[:, 1]
    )


def test_multiclass_boosting_is_not_compiled(fleet_case: Case) -> None:
    X, y = fleet_case.X, fleet_case.y
    labels = np.arange(len(y)) % 3  # classes 0, 1 and 2
    estimator = boosting(max_iter=5, class_weight=None).fit(X[:3000], labels[:3000])
    assert estimator.n_trees_per_iteration_ == 3
    assert compile_spec(estimator) is None


def test_explanations_are_json_keyed_like_the_graphql_types(fleet_case: Case) -> None:
    import json

    from graph.schema import build_schema

    _, (explanation,) = fleet_case.predictor.explain(fleet_case.rows[:1])
    assert json.loads(json.dumps(explanation)) == explanation
    types = build_schema()._schema.type_map
    assert set(explanation) < set(types["Explanation"].fields)
    steps = explanation["contributions"]
    assert steps and all(set(step) == set(types["Contribution"].fields) for step in steps)


def test_a_tree_deeper_than_the_generated_codes_nesting_is_walked_from_there(
    fleet_case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One row goes through Python code generated from the trees; below `_NESTING` levels of
    # `if` a subtree is walked node by node instead. Either way: the batch's bits.
    X = fleet_case.X.copy()
    rng = np.random.default_rng(8)
    X[rng.random(X.shape) < 0.05] = np.nan  # NaN in training: nodes that send NaN left
    fit, check = np.arange(0, len(X), 2), np.arange(1, len(X), 2)
    estimator = boosting(max_iter=6, max_leaf_nodes=40, min_samples_leaf=2).fit(
        X[fit], fleet_case.y[fit]
    )
    assert max(tree.get_max_depth() for (tree,) in estimator._predictors) > 4
    rows = X[check][:60]
    for nesting in (2, compiled._NESTING):
        monkeypatch.setattr(compiled, "_NESTING", nesting)
        predictor = served(estimator)
        batch, explanations = predictor.explain(rows)
        assert np.abs(batch - estimator.predict_proba(rows)[:, 1]).max() <= TOLERANCE
        for i in range(len(rows)):
            one, (alone,) = predictor.explain(rows[i : i + 1])
            assert predictor.predict_proba(rows[i : i + 1])[0] == one[0] == batch[i]
            assert repr(alone) == repr(explanations[i])  # (NaN values: equal as text)


@pytest.mark.parametrize(
    "value", [0.1, -2.5e-308, 5e-324, 1e300, -0.0, 0.0, 3.0, np.inf, -np.inf, 1 / 3]
)
def test_the_generated_codes_constants_read_back_as_the_same_float(value: float) -> None:
    names = {"INF": np.inf}
    read = eval(compiled._literal(value), names)
    assert read == value and np.signbit(read) == np.signbit(value)
    assert eval(compiled._literal(np.nan), {"NAN": np.nan}) != eval(
        compiled._literal(np.nan), {"NAN": np.nan}
    )
