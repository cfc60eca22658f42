"""Calibrated models compiled to plain arrays (model.compiled) equal scikit-learn's
CalibratedClassifierCV(ensemble=False), sigmoid and isotonic, over every compiled inner shape
(the blend of the boosted model and the logistic regression included), on real rows with
history features and on the synthetic fleet."""

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from support import HISTORY_FEATURES, history_features, needs_real_data, real_history

from model import ArtifactMetadata, Predictor, dump_artifact, load_artifact, sha256_hex
from model.compiled import compile_spec
from model.golden import build_golden_set, check_golden_set, pick_golden_rows
from training import generate_synthetic
from training.estimators import build_estimator

TOLERANCE = 1e-9
NAMES = HISTORY_FEATURES
FIT_ROWS = 5000  # plus every failure


def inner_model(shape: str) -> object:
    """An unfitted model of each compiled inner shape."""
    if shape == "tree":
        return build_estimator("decision_tree", seed=0)
    if shape == "logistic":  # signed log1p: the history deltas are negative
        return build_estimator("logistic_regression", seed=0, features=NAMES)
    if shape == "blend":  # training.blend.ScoreBlend: small boosted trees + the above
        return build_estimator("blend", 0, {"max_iter": 15, "max_depth": 3}, NAMES)
    return HistGradientBoostingClassifier(
        max_iter=15, max_leaf_nodes=15, early_stopping=False, class_weight="balanced",
        random_state=0,
    )  # fmt: skip


def served(estimator: object) -> Predictor:
    data = dump_artifact(estimator, ArtifactMetadata("calibrated", NAMES, 0.5))
    return load_artifact(data, sha256_hex(data))


class Rows:
    """Rows of a dataset with history features: a device-grouped fit sample, its folds, and
    rows to check (mostly unseen)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, devices: np.ndarray, seed: int) -> None:
        rng = np.random.default_rng(seed)
        failures, others = np.flatnonzero(y == 1), rng.permutation(np.flatnonzero(y == 0))
        fit = np.sort(np.concatenate([failures, others[:FIT_ROWS]]))
        check = np.sort(np.concatenate([failures, others[FIT_ROWS : FIT_ROWS + 600]]))
        self.X, self.y = X[fit], y[fit]
        self.folds = list(GroupKFold(n_splits=3).split(self.X, self.y, devices[fit]))
        self.check = X[check]
        self.fitted: dict[tuple[str, str], CalibratedClassifierCV] = {}

    def calibrated(self, shape: str, method: str) -> CalibratedClassifierCV:
        """CalibratedClassifierCV(shape, method) fitted on the grouped folds (once per module)."""
        if (shape, method) not in self.fitted:
            model = CalibratedClassifierCV(
                inner_model(shape), method=method, cv=self.folds, ensemble=False
            )
            self.fitted[shape, method] = model.fit(self.X, self.y)
        return self.fitted[shape, method]


@pytest.fixture(scope="module")
def fleet() -> Rows:
    X, y, devices = history_features(
        generate_synthetic(devices=300, days=60, seed=11, failure_rate=0.01)
    )
    return Rows(X, y, devices, seed=1)


@pytest.fixture(scope="module")
def real() -> Rows:
    X, y, devices = real_history()
    return Rows(X, y, devices, seed=2)


@pytest.fixture(params=["fleet", pytest.param("real", marks=needs_real_data)])
def rows(request: pytest.FixtureRequest) -> Rows:
    """The synthetic fleet, and the public dataset (skipped visibly without it)."""
    return request.getfixturevalue(request.param)


SHAPES = ["tree", "logistic", "boosting", "blend"]
LINEAR = ("logistic", "blend")  # scores with a matrix product
METHODS = ["sigmoid", "isotonic"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", SHAPES)
def test_compiled_calibration_equals_predict_proba(rows: Rows, shape: str, method: str) -> None:
    model = rows.calibrated(shape, method)
    predictor = served(model)
    assert predictor.compiled
    expected = model.predict_proba(rows.check)[:, 1]
    got = predictor.predict_proba(rows.check)
    assert np.abs(got - expected).max() <= TOLERANCE
    singles = [predictor.predict_proba(rows.check[i : i + 1])[0] for i in range(0, 600, 20)]
    # one row equals its batch: to the bit for trees, to rounding of the matrix product (whose
    # one-row and many-row BLAS kernels add in different orders) for a logistic regression
    tolerance = 1e-12 if shape in LINEAR else 0.0
    assert np.abs(np.array(singles) - got[0:600:20]).max() <= tolerance
    # the golden set a version stores, re-scored as a serving process does before serving it
    golden_rows = pick_golden_rows(rows.X, rows.y)
    golden = build_golden_set(NAMES, golden_rows, model.predict_proba(golden_rows)[:, 1])
    check_golden_set(predictor, golden)


@pytest.mark.parametrize("method", METHODS)
def test_one_score_is_calibrated_to_the_bits_of_an_array(fleet: Rows, method: str) -> None:
    # A single row is calibrated in floats (numpy's exp or interp on the one score): the
    # same bits as the array of scores a batch calibrates, far outside the fitted range too.
    model = fleet.calibrated("blend", method)
    fast = served(model)._fast
    scores = np.concatenate(
        [
            _inner_scores(model, fleet.check),
            np.random.default_rng(9).normal(0, 30, 2000),
            [-800.0, -40.0, 0.0, 40.0, 800.0],
        ]
    )
    with np.errstate(over="ignore"):  # exp(800): the probability is 0 either way
        batch = fast.calibrate(scores)
        ones = np.array([fast.calibrate_one(float(s)) for s in scores])
    assert ones.tobytes() == batch.tobytes()


def _inner_scores(model: CalibratedClassifierCV, matrix: np.ndarray) -> np.ndarray:
    """What the calibrator reads: decision_function if the inner model has one, else P(1)."""
    inner = model.calibrated_classifiers_[0].estimator
    if hasattr(inner, "decision_function"):
        return np.asarray(inner.decision_function(matrix))
    return np.asarray(inner.predict_proba(matrix)[:, 1])


def _far_rows(rows: Rows) -> np.ndarray:
    """Rows far outside the data: all zeros, and rows scaled far up, and negated (no valid
    input is negative, but the arithmetic is the same)."""
    scale = np.random.default_rng(8).uniform(5, 50, size=(200, 1))
    far = rows.check[:200] * scale
    return np.vstack([np.zeros((5, len(NAMES))), far, -far])


def _pushed_rows(model: CalibratedClassifierCV) -> np.ndarray:
    """Rows along and against the signs of a calibrated logistic regression's coefficients."""
    direction = np.sign(model.calibrated_classifiers_[0].estimator[-1].coef_[0])
    return np.vstack([s * 10.0**k * direction for s in (-1, 1) for k in (3, 6, 12)])


def test_isotonic_clips_scores_outside_its_range(fleet: Rows) -> None:
    # A logistic regression's scores are unbounded: rows pushed along (and against) its
    # coefficients' signs score beyond the fitted range on both sides, where
    # out_of_bounds="clip" holds the end values. (No valid input is negative; the arithmetic
    # is the same.)
    model = fleet.calibrated("logistic", "isotonic")
    calibrator = model.calibrated_classifiers_[0].calibrators[0]
    matrix = np.vstack([fleet.check, _far_rows(fleet), _pushed_rows(model)])
    scores = _inner_scores(model, matrix)
    assert (scores < calibrator.X_thresholds_[0]).any()
    assert (scores > calibrator.X_thresholds_[-1]).any()
    expected = model.predict_proba(matrix)[:, 1]
    assert np.abs(served(model).predict_proba(matrix) - expected).max() <= TOLERANCE


def test_isotonic_on_its_knots(rows: Rows) -> None:
    # A tree calibrated as it is (FrozenEstimator) scores rows with the very leaf probabilities
    # the calibrator was fitted on: rows tie on them, and many are its knots.
    half = len(rows.y) // 2
    tree = inner_model("tree").fit(rows.X[:half], rows.y[:half])
    model = CalibratedClassifierCV(FrozenEstimator(tree), method="isotonic")
    model.fit(rows.X[half:], rows.y[half:])
    knots = model.calibrated_classifiers_[0].calibrators[0].X_thresholds_
    scores = _inner_scores(model, rows.check)
    assert np.isin(scores, knots).sum() > 0
    expected = model.predict_proba(rows.check)[:, 1]
    assert np.abs(served(model).predict_proba(rows.check) - expected).max() <= TOLERANCE


def test_probabilities_just_above_one_are_one(fleet: Rows) -> None:
    # scikit-learn sets calibrated values in (1, 1 + 1e-5] to 1: an isotonic fit's top value
    # can be such a value (a weighted mean of ones).
    model = fleet.calibrated("logistic", "isotonic")
    calibrator = model.calibrated_classifiers_[0].calibrators[0]
    calibrator.y_thresholds_ = calibrator.y_thresholds_.copy()
    calibrator.y_thresholds_[-1] = 1.0 + 1e-12
    calibrator._build_f(calibrator.X_thresholds_, calibrator.y_thresholds_)
    try:
        matrix = np.vstack([_far_rows(fleet), _pushed_rows(model)])
        top = np.flatnonzero(_inner_scores(model, matrix) >= calibrator.X_thresholds_[-1])
        assert len(top) > 0
        expected = model.predict_proba(matrix)[:, 1]
        assert np.all(expected[top] == 1.0)
        predictor = served(model)
        got = predictor.predict_proba(matrix)
        assert np.all(got[top] == 1.0)
        assert all(predictor.predict_proba(matrix[i : i + 1])[0] == 1.0 for i in top)  # one row
        assert np.abs(got - expected).max() <= TOLERANCE
    finally:
        del fleet.fitted["logistic", "isotonic"]  # refit for any later test


def _same_explanation(got: dict, expected: dict) -> bool:
    # A logistic regression's score is a matrix product, whose rounding may depend on how its
    # arrays happen to be aligned in memory: equal to 1e-12, the rest to the bit.
    score_close = abs(got["score"] - expected["score"]) <= 1e-12
    return score_close and {**got, "score": 0} == {**expected, "score": 0}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", SHAPES)
def test_a_calibrated_model_explains_with_its_inner_model(
    fleet: Rows, shape: str, method: str
) -> None:
    model = fleet.calibrated(shape, method)
    predictor = served(model)
    inner = served(model.calibrated_classifiers_[0].estimator)
    matrix = fleet.check[:120]
    probabilities, explanations = predictor.explain(matrix)
    _, inner_explanations = inner.explain(matrix)
    assert len(explanations) == len(inner_explanations)
    assert all(map(_same_explanation, explanations, inner_explanations))
    assert np.array_equal(probabilities, predictor.predict_proba(matrix))
    scores = np.array([e["score"] for e in explanations])
    assert np.abs(scores - _inner_scores(model, matrix)).max() <= TOLERANCE
    # the calibrator maps the inner score to the probability, monotonically (non-decreasing)
    order = np.argsort(scores, kind="stable")
    assert np.all(np.diff(probabilities[order]) >= 0)
    one, (alone,) = predictor.explain(matrix[7:8])
    assert _same_explanation(alone, explanations[7]) and abs(one[0] - probabilities[7]) <= 1e-12


def test_a_frozen_inner_model_is_compiled(fleet: Rows) -> None:
    fitted = inner_model("boosting").fit(fleet.X, fleet.y)
    half = len(fleet.y) // 2
    model = CalibratedClassifierCV(FrozenEstimator(fitted), method="sigmoid")
    model.fit(fleet.X[half:], fleet.y[half:])
    predictor = served(model)
    assert predictor.compiled
    expected = model.predict_proba(fleet.check)[:, 1]
    assert np.abs(predictor.predict_proba(fleet.check) - expected).max() <= TOLERANCE


def test_an_ensemble_of_calibrated_classifiers_is_not_compiled(fleet: Rows) -> None:
    model = CalibratedClassifierCV(
        inner_model("tree"), method="sigmoid", cv=fleet.folds, ensemble=True
    ).fit(fleet.X, fleet.y)
    assert len(model.calibrated_classifiers_) == 3
    assert compile_spec(model) is None
    predictor = served(model)  # served by scikit-learn, as any unknown shape
    assert not predictor.compiled
    expected = model.predict_proba(fleet.check)[:, 1]
    assert np.array_equal(predictor.predict_proba(fleet.check), expected)


def test_other_calibrations_are_not_compiled(fleet: Rows) -> None:
    temperature = CalibratedClassifierCV(
        inner_model("logistic"), method="temperature", cv=fleet.folds, ensemble=False
    ).fit(fleet.X, fleet.y)
    assert compile_spec(temperature) is None
    forest = CalibratedClassifierCV(
        RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0),
        method="sigmoid",
        cv=fleet.folds,
        ensemble=False,
    ).fit(fleet.X, fleet.y)
    assert compile_spec(forest) is None


def test_multiclass_calibration_is_not_compiled(fleet: Rows) -> None:
    labels = np.arange(len(fleet.y)) % 3
    model = CalibratedClassifierCV(
        build_estimator("decision_tree", seed=0), method="sigmoid", cv=3, ensemble=False
    ).fit(fleet.X, labels)
    assert compile_spec(model) is None


def test_an_old_log1p_pipeline_calibrates_and_compiles(fleet: Rows) -> None:
    # artifacts of earlier versions: np.log1p on the counters only (which are >= 0)
    counters = [NAMES.index(name) for name in NAMES[:8]]
    pipeline = Pipeline(
        [
            ("log1p", FunctionTransformer(np.log1p)),
            ("scale", StandardScaler()),
            ("classifier", LogisticRegression(class_weight="balanced", max_iter=1000)),
        ]
    )
    X = fleet.X[:, counters]
    model = CalibratedClassifierCV(pipeline, method="isotonic", cv=fleet.folds, ensemble=False)
    model.fit(X, fleet.y)
    data = dump_artifact(model, ArtifactMetadata("calibrated", NAMES[:8], 0.5))
    predictor = load_artifact(data, sha256_hex(data))
    assert predictor.compiled
    check = fleet.check[:, counters]
    expected = model.predict_proba(check)[:, 1]
    assert np.abs(predictor.predict_proba(check) - expected).max() <= TOLERANCE


def test_a_blend_scores_and_explains_as_its_weighted_members(fleet: Rows) -> None:
    model = fleet.calibrated("blend", "sigmoid")
    blend = model.calibrated_classifiers_[0].estimator
    boosted, linear = (served(member) for member in blend.members_)
    w_boosted, w_linear = blend.weights_
    assert w_boosted > 0 and w_linear > 0
    matrix = fleet.check[:150]
    _, explanations = served(blend).explain(matrix)
    _, by_boosted = boosted.explain(matrix)
    _, by_linear = linear.explain(matrix)
    for row, (got, b, lin) in enumerate(zip(explanations, by_boosted, by_linear, strict=True)):
        parts = {c["feature"]: c["contribution"] for c in got["contributions"]}
        # baseValue + contributions = score = w_b f_b + w_l f_l, scikit-learn's decision_function
        assert abs(got["baseValue"] + sum(parts.values()) - got["score"]) <= 1e-9
        assert abs(got["score"] - blend.decision_function(matrix[row : row + 1])[0]) <= 1e-9
        expected = {name: 0.0 for name in NAMES}
        for weight, member in ((w_boosted, b), (w_linear, lin)):
            for c in member["contributions"]:
                expected[c["feature"]] += weight * c["contribution"]
        assert all(abs(parts.get(name, 0.0) - value) <= 1e-12 for name, value in expected.items())
        magnitudes = [abs(c["contribution"]) for c in got["contributions"]]
        assert magnitudes == sorted(magnitudes, reverse=True)
    # One row is explained in floats, not arrays: as in its batch, calibrated or not (the
    # logistic member's matrix product may round a batch's sums in another order: 1e-15)
    for predictor in (served(blend), served(model)):
        probabilities, batch = predictor.explain(matrix[:40])
        for row in range(40):
            one, (alone,) = predictor.explain(matrix[row : row + 1])
            assert one[0] == pytest.approx(probabilities[row], abs=1e-15)
            assert alone["score"] == pytest.approx(batch[row]["score"], abs=1e-12)
            assert alone["contributions"] == batch[row]["contributions"]


def test_a_blend_of_an_uncompiled_member_is_not_compiled(fleet: Rows) -> None:
    from sklearn.svm import LinearSVC

    from training.blend import ScoreBlend

    with pytest.raises(AttributeError):  # a member without log-odds (a tree) cannot be blended
        ScoreBlend(inner_model("boosting"), inner_model("tree")).fit(fleet.X, fleet.y)
    svm = LinearSVC(class_weight="balanced", random_state=0)  # log-odds of no compiled shape
    fitted = ScoreBlend(inner_model("boosting"), svm).fit(np.log1p(np.abs(fleet.X)), fleet.y)
    assert compile_spec(fitted) is None
    predictor = served(fitted)  # served by scikit-learn, as any unknown shape
    assert not predictor.compiled
