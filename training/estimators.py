"""The model shapes failcast trains, and the hyperparameters cross-validation searches.

- decision_tree: a bare DecisionTreeClassifier with balanced class weights, pruned by depth
  (the depth chosen by grouped cross-validation on the training devices, or fixed);
- logistic_regression: Pipeline([FunctionTransformer(log), StandardScaler(),
  LogisticRegression()]) with balanced class weights, where log is np.log1p when every input is
  >= 0 and model.transforms.signed_log1p when some may be negative (history deltas, which
  np.log1p cannot take; on values >= 0 the two agree bit for bit);
- hist_gradient_boosting: a HistGradientBoostingClassifier kept small (few, shallow trees, no
  early stopping, so a fit is deterministic and needs no random row split that would put a
  device on both sides): on ~100 failures, scikit-learn's defaults overfit to a useless model;
- blend: training.blend.ScoreBlend of the two above (the boosted model at a point of its grid,
  and the logistic regression), the mean of their standardised log-odds.

The served estimator is one of these inside CalibratedClassifierCV(..., ensemble=False)
(training.calibration). All are shapes the model package evaluates without scikit-learn.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from model import DEVICE_FEATURES
from model.transforms import signed_log1p
from training.blend import ScoreBlend
from training.errors import InvalidOptionsError

DECISION_TREE = "decision_tree"
LOGISTIC_REGRESSION = "logistic_regression"
HIST_GRADIENT_BOOSTING = "hist_gradient_boosting"
BLEND = "blend"
ALGORITHMS: tuple[str, ...] = (DECISION_TREE, LOGISTIC_REGRESSION, HIST_GRADIENT_BOOSTING, BLEND)
DEFAULT_TREE_DEPTH = 4  # the pruned reference tree of shared/data/SOURCE.md
LOGISTIC_MAX_ITER = 1000  # lbfgs needs more than the default 100 on the scaled counters
# The depths the tree's grouped cross-validation tries (None: unpruned, to show it overfits).
TREE_DEPTHS: tuple[int | None, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 12, None)

# Fixed for every boosted model: a learning rate, L2 on leaf values, leaves of >= 50 rows.
_BOOSTING_BASE: dict[str, Any] = {
    "learning_rate": 0.1,
    "l2_regularization": 1.0,
    "min_samples_leaf": 50,
    "early_stopping": False,
}
# The small grid cross-validation chooses from: how many trees, and how deep.
BOOSTING_GRID: tuple[dict[str, Any], ...] = (
    {"max_iter": 30, "max_depth": 3},
    {"max_iter": 30, "max_depth": 2},
    {"max_iter": 60, "max_depth": 2},
)


def decision_tree(
    seed: int, max_depth: int | None, balanced: bool = True
) -> DecisionTreeClassifier:
    """A decision tree; `max_depth=None` grows it unpruned."""
    return DecisionTreeClassifier(
        max_depth=max_depth,
        class_weight="balanced" if balanced else None,
        random_state=seed,
    )


def logistic_regression(seed: int, signed: bool = False) -> Pipeline:
    """log1p (`signed`: signed_log1p) of the heavy-tailed inputs, standardised, into a balanced
    logistic regression."""
    return Pipeline(
        [
            ("log1p", FunctionTransformer(signed_log1p if signed else np.log1p)),
            ("scale", StandardScaler()),
            (
                "classifier",
                LogisticRegression(
                    class_weight="balanced", max_iter=LOGISTIC_MAX_ITER, random_state=seed
                ),
            ),
        ]
    )


def hist_gradient_boosting(seed: int, max_iter: int, max_depth: int) -> Any:
    """A small boosted ensemble of `max_iter` trees of depth at most `max_depth`."""
    return HistGradientBoostingClassifier(
        **_BOOSTING_BASE, max_iter=max_iter, max_depth=max_depth, random_state=seed
    )


def search_grid(algorithm: str, max_depth: int | None = None) -> list[dict[str, Any]]:
    """The hyperparameters cross-validation tries for an algorithm (one point: nothing to
    choose). A fixed `max_depth` (decision tree) is the only point."""
    if algorithm == DECISION_TREE:
        depths: Sequence[int | None] = TREE_DEPTHS if max_depth is None else (max_depth,)
        return [{"max_depth": depth} for depth in depths]
    if algorithm == LOGISTIC_REGRESSION:
        return [{}]
    if algorithm in (HIST_GRADIENT_BOOSTING, BLEND):  # a blend's point is its boosted member's
        return [dict(point) for point in BOOSTING_GRID]
    raise InvalidOptionsError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")


def default_point(algorithm: str, max_depth: int | None = None) -> dict[str, Any]:
    """The hyperparameters used when nothing is searched (and to compare feature sets)."""
    if algorithm == DECISION_TREE:
        return {"max_depth": max_depth or DEFAULT_TREE_DEPTH}
    return search_grid(algorithm)[0]


def may_be_negative(features: Sequence[str]) -> bool:
    """Whether some of these features can be negative (a history delta)."""
    return any(name.endswith("_delta") for name in features)


def build_estimator(
    algorithm: str,
    seed: int,
    point: Mapping[str, Any] | None = None,
    features: Sequence[str] = DEVICE_FEATURES,
) -> Any:
    """The untrained estimator for an algorithm at a point of its grid (default point: None),
    reading `features`."""
    chosen = dict(default_point(algorithm) if point is None else point)
    if algorithm == DECISION_TREE:
        return decision_tree(seed, chosen["max_depth"])
    if algorithm == LOGISTIC_REGRESSION:
        return logistic_regression(seed, signed=may_be_negative(features))
    if algorithm == HIST_GRADIENT_BOOSTING:
        return hist_gradient_boosting(seed, chosen["max_iter"], chosen["max_depth"])
    if algorithm == BLEND:
        return ScoreBlend(
            hist_gradient_boosting(seed, chosen["max_iter"], chosen["max_depth"]),
            logistic_regression(seed, signed=may_be_negative(features)),
        )
    raise InvalidOptionsError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")


def estimator_params(
    algorithm: str,
    seed: int,
    point: Mapping[str, Any] | None = None,
    features: Sequence[str] = DEVICE_FEATURES,
) -> dict[str, Any]:
    """The hyperparameters that define an algorithm's estimator, JSON-ready."""
    chosen = dict(default_point(algorithm) if point is None else point)
    if algorithm == DECISION_TREE:
        return {"max_depth": chosen["max_depth"], "class_weight": "balanced", "random_state": seed}
    if algorithm == LOGISTIC_REGRESSION:
        return {
            "transform": "signed_log1p" if may_be_negative(features) else "log1p",
            "scaler": "standard",
            "C": 1.0,
            "solver": "lbfgs",
            "class_weight": "balanced",
            "max_iter": LOGISTIC_MAX_ITER,
            "random_state": seed,
        }
    if algorithm == HIST_GRADIENT_BOOSTING:
        return {**_BOOSTING_BASE, **chosen, "class_weight": None, "random_state": seed}
    if algorithm == BLEND:
        return {
            "combination": "mean of the members' log-odds, each divided by its spread",
            HIST_GRADIENT_BOOSTING: estimator_params(HIST_GRADIENT_BOOSTING, seed, chosen),
            LOGISTIC_REGRESSION: estimator_params(LOGISTIC_REGRESSION, seed, None, features),
        }
    raise InvalidOptionsError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")
