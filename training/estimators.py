"""The two model shapes failcast trains, both with balanced class weights.

Both shapes are ones the model package evaluates without scikit-learn on the serving path: a bare
DecisionTreeClassifier, and Pipeline([FunctionTransformer(signed_log1p), StandardScaler(),
LogisticRegression()]) (model.transforms.signed_log1p: log1p on counters, finite on the negative
history deltas; artifacts of np.log1p pipelines still load).
"""

from typing import Any

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from model.transforms import signed_log1p
from training.errors import InvalidOptionsError

DECISION_TREE = "decision_tree"
LOGISTIC_REGRESSION = "logistic_regression"
ALGORITHMS: tuple[str, ...] = (DECISION_TREE, LOGISTIC_REGRESSION)
DEFAULT_TREE_DEPTH = 4  # the pruned reference tree of shared/data/SOURCE.md
LOGISTIC_MAX_ITER = 1000  # lbfgs needs more than the default 100 on the scaled counters


def decision_tree(
    seed: int, max_depth: int | None, balanced: bool = True
) -> DecisionTreeClassifier:
    """A decision tree; `max_depth=None` grows it unpruned."""
    return DecisionTreeClassifier(
        max_depth=max_depth,
        class_weight="balanced" if balanced else None,
        random_state=seed,
    )


def logistic_regression(seed: int) -> Pipeline:
    """Signed log1p of the heavy-tailed counters (log1p itself on values >= 0, bit for bit),
    standardised, into a balanced logistic regression."""
    return Pipeline(
        [
            ("signed_log1p", FunctionTransformer(signed_log1p)),
            ("scale", StandardScaler()),
            (
                "classifier",
                LogisticRegression(
                    class_weight="balanced", max_iter=LOGISTIC_MAX_ITER, random_state=seed
                ),
            ),
        ]
    )


def build_estimator(algorithm: str, seed: int, max_depth: int | None = None) -> Any:
    """The untrained estimator for an algorithm name."""
    if algorithm == DECISION_TREE:
        return decision_tree(seed, max_depth or DEFAULT_TREE_DEPTH)
    if algorithm == LOGISTIC_REGRESSION:
        return logistic_regression(seed)
    raise InvalidOptionsError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")


def estimator_params(algorithm: str, seed: int, max_depth: int | None = None) -> dict[str, Any]:
    """The hyperparameters that define an algorithm's estimator, JSON-ready."""
    if algorithm == DECISION_TREE:
        depth = max_depth or DEFAULT_TREE_DEPTH
        return {"max_depth": depth, "class_weight": "balanced", "random_state": seed}
    if algorithm == LOGISTIC_REGRESSION:
        return {
            "transform": "signed_log1p",
            "scaler": "standard",
            "C": 1.0,
            "solver": "lbfgs",
            "class_weight": "balanced",
            "max_iter": LOGISTIC_MAX_ITER,
            "random_state": seed,
        }
    raise InvalidOptionsError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")
