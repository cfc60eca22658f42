"""Plain-numpy evaluators of fitted scikit-learn models, free of sklearn at serving time.

sklearn's `predict_proba` validates its input on every call (about 165 us for one row); the
arrays below give the same numbers (to 1e-12) in a few microseconds. A model is compiled once,
at training time, into a spec of plain arrays that the artifact carries, so serving needs
neither sklearn's per-call overhead nor sklearn itself in memory. Only the shapes failcast
trains are compiled; `compile_spec` returns None for anything else and the caller falls back
to `predict_proba`.

Each evaluator also explains its answers, in the same pass as the probabilities (`explain`):

- a tree gives the path from root to leaf: each internal node visited, as `{"feature",
  "threshold", "value", "goesLeft"}` (the value as given; `goesLeft` is the comparison the tree
  made, of the value's float32 copy as scikit-learn makes it, with `<=`), its `score` the leaf's
  probability (a tree has no link function) and its `baseValue` the root's;
- a logistic regression gives each feature's `contribution` to the log-odds (its coefficient
  times its transformed value), largest magnitude first, its `score` the log-odds (scikit-learn's
  `decision_function`) and its `baseValue` the intercept, so that `baseValue` + the sum of the
  contributions = `score`.

Explanations are plain JSON, keyed like the GraphQL `Explanation` type (camelCase), so they are
stored with a prediction and served as they are.
"""

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Spec = dict[str, Any]
Explanation = dict[str, Any]
DECISION_PATH = "DECISION_PATH"
CONTRIBUTIONS = "CONTRIBUTIONS"


class Evaluator(Protocol):
    """P(failure) of each row of an (n, features) array, optionally with explanations."""

    def __call__(self, matrix: FloatArray) -> FloatArray: ...

    def explain(
        self, matrix: FloatArray, names: Sequence[str]
    ) -> tuple[FloatArray, list[Explanation]]:
        """The probabilities and, per row, its explanation (`names`: the columns' features)."""
        ...


class TreeEvaluator:
    """Walks a decision tree's node arrays, vectorised over rows."""

    def __init__(self, spec: Spec) -> None:
        self.left = np.asarray(spec["left"], dtype=np.int64)
        self.right = np.asarray(spec["right"], dtype=np.int64)
        self.feature = np.asarray(spec["feature"], dtype=np.int64)
        self.threshold = np.asarray(spec["threshold"], dtype=np.float64)
        self.leaf_proba = np.asarray(spec["leaf_proba"], dtype=np.float64)
        self.is_leaf = self.left < 0
        self.depth = int(spec["depth"])
        # Lists make the one-row walk several times faster than numpy scalar indexing.
        self._lists = (
            self.left.tolist(),
            self.right.tolist(),
            self.feature.tolist(),
            self.threshold.tolist(),
            self.leaf_proba.tolist(),
        )

    def __call__(self, matrix: FloatArray) -> FloatArray:
        # sklearn compares float32 copies of the inputs against float64 thresholds.
        x32 = matrix.astype(np.float32).astype(np.float64)
        if x32.shape[0] == 1:
            return np.array([self._walk_one(x32[0].tolist())])
        rows = np.arange(x32.shape[0])
        node = np.zeros(x32.shape[0], dtype=np.int64)
        for _ in range(self.depth):
            go_left = x32[rows, self.feature[node]] <= self.threshold[node]
            step = np.where(go_left, self.left[node], self.right[node])
            node = np.where(self.is_leaf[node], node, step)
        return np.asarray(self.leaf_proba[node], dtype=np.float64)

    def _walk_one(self, row: list[float]) -> float:
        left, right, feature, threshold, proba = self._lists
        node = 0
        while left[node] >= 0:
            node = left[node] if row[feature[node]] <= threshold[node] else right[node]
        return float(proba[node])

    def explain(
        self, matrix: FloatArray, names: Sequence[str]
    ) -> tuple[FloatArray, list[Explanation]]:
        """The probabilities and each row's decision path (see the module docstring)."""
        x32 = matrix.astype(np.float32).astype(np.float64)
        if x32.shape[0] == 1:
            proba, path = self._path_one(x32[0].tolist(), matrix[0].tolist(), names)
            return np.array([proba]), [self._explanation(proba, path)]
        rows = np.arange(x32.shape[0])
        node = np.zeros(x32.shape[0], dtype=np.int64)
        visited, lefts, inside = [], [], []
        for _ in range(self.depth):
            internal = ~self.is_leaf[node]
            go_left = x32[rows, self.feature[node]] <= self.threshold[node]
            visited.append(node)
            lefts.append(go_left)
            inside.append(internal)
            node = np.where(internal, np.where(go_left, self.left[node], self.right[node]), node)
        probabilities = np.asarray(self.leaf_proba[node], dtype=np.float64)
        if not visited:  # a tree that is one leaf
            return probabilities, [self._explanation(p, []) for p in probabilities.tolist()]
        steps = np.stack(inside, axis=1).sum(axis=1).tolist()  # once at a leaf, it stays there
        nodes, goes_left = np.stack(visited, axis=1).tolist(), np.stack(lefts, axis=1).tolist()
        _, _, feature, threshold, _ = self._lists
        explanations = []
        rows_given = zip(matrix.tolist(), probabilities.tolist(), strict=True)
        for i, (values, proba) in enumerate(rows_given):
            path = [
                {
                    "feature": names[feature[n]],
                    "threshold": threshold[n],
                    "value": values[feature[n]],
                    "goesLeft": left,
                }
                for n, left in zip(nodes[i][: steps[i]], goes_left[i][: steps[i]], strict=True)
            ]
            explanations.append(self._explanation(proba, path))
        return probabilities, explanations

    def _path_one(
        self, row: list[float], given: list[float], names: Sequence[str]
    ) -> tuple[float, list[dict[str, Any]]]:
        left, right, feature, threshold, proba = self._lists
        node, path = 0, []
        while left[node] >= 0:
            f = feature[node]
            goes_left = row[f] <= threshold[node]
            path.append(
                {"feature": names[f], "threshold": threshold[node], "value": given[f],
                 "goesLeft": goes_left}
            )  # fmt: skip
            node = left[node] if goes_left else right[node]
        return float(proba[node]), path

    def _explanation(self, score: float, path: list[dict[str, Any]]) -> Explanation:
        base = self._lists[4][0]
        return {"kind": DECISION_PATH, "score": score, "baseValue": base, "path": path}


class LinearEvaluator:
    """Input transforms (log1p, standard scaling) then a binary logistic regression."""

    def __init__(self, spec: Spec) -> None:
        self.steps: list[Callable[[FloatArray], FloatArray]] = [_step(s) for s in spec["steps"]]
        self.coef = np.asarray(spec["coef"], dtype=np.float64)
        self.bias = float(spec["bias"])

    def __call__(self, matrix: FloatArray) -> FloatArray:
        return _sigmoid(self._margin(self._transformed(matrix)))

    def _transformed(self, matrix: FloatArray) -> FloatArray:
        values = matrix
        for step in self.steps:
            values = step(values)
        return values

    def _margin(self, transformed: FloatArray) -> FloatArray:
        return np.asarray(transformed @ self.coef + self.bias, dtype=np.float64)

    def explain(
        self, matrix: FloatArray, names: Sequence[str]
    ) -> tuple[FloatArray, list[Explanation]]:
        """The probabilities and each feature's contribution to each row's log-odds."""
        transformed = self._transformed(matrix)
        margin = self._margin(transformed)
        contributions = transformed * self.coef
        order = np.argsort(-np.abs(contributions), axis=1, kind="stable").tolist()
        values, parts = matrix.tolist(), contributions.tolist()
        explanations = [
            {
                "kind": CONTRIBUTIONS,
                "score": score,
                "baseValue": self.bias,
                "contributions": [
                    {"feature": names[j], "value": values[i][j], "contribution": parts[i][j]}
                    for j in order[i]
                ],
            }
            for i, score in enumerate(margin.tolist())
        ]
        return _sigmoid(margin), explanations


def _sigmoid(margin: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-margin)), dtype=np.float64)


def _step(spec: Spec) -> Callable[[FloatArray], FloatArray]:
    if spec["kind"] == "log1p":
        return np.log1p
    mean = np.asarray(spec["mean"], dtype=np.float64)
    scale = np.asarray(spec["scale"], dtype=np.float64)
    return lambda x: (x - mean) / scale


def evaluator(spec: Spec) -> Evaluator:
    """The evaluator a spec describes."""
    kinds: dict[str, Callable[[Spec], Evaluator]] = {
        "tree": TreeEvaluator,
        "linear": LinearEvaluator,
    }
    return kinds[spec["kind"]](spec)


def _positive_index(estimator: Any) -> int | None:
    classes = [int(c) for c in getattr(estimator, "classes_", [])]
    return classes.index(1) if sorted(classes) == [0, 1] else None


def _transform_spec(step: Any) -> Spec | None:
    name = type(step).__name__
    if name == "FunctionTransformer":
        plain = step.kw_args is None and step.inverse_func is None
        return {"kind": "log1p"} if step.func is np.log1p and plain else None
    if name == "StandardScaler":
        features = len(step.mean_) if step.mean_ is not None else len(step.scale_)
        mean = step.mean_ if step.with_mean else np.zeros(features)
        scale = step.scale_ if step.with_std else np.ones(features)
        return {"kind": "scale", "mean": np.array(mean), "scale": np.array(scale)}
    return None


def _tree_spec(estimator: Any, positive: int) -> Spec:
    tree = estimator.tree_
    values = np.asarray(tree.value, dtype=np.float64)[:, 0, :]
    sums = values.sum(axis=1)
    # scikit-learn >= 1.4 stores each node's class fractions and predict_proba returns them as
    # they are; dividing them by their sum again (about 1) can move a probability by an ulp,
    # enough to flip a row whose score is exactly the threshold (a tree's threshold is a leaf's
    # score). Older versions store counts, which predict_proba divides by their sum.
    fractions = bool(np.all(np.abs(sums - 1.0) <= 1e-9))
    return {
        "kind": "tree",
        "left": np.array(tree.children_left),
        "right": np.array(tree.children_right),
        "feature": np.maximum(np.array(tree.feature), 0),
        "threshold": np.array(tree.threshold, dtype=np.float64),
        "leaf_proba": values[:, positive] if fractions else values[:, positive] / sums,
        "depth": int(tree.max_depth),
    }


def _final_spec(estimator: Any, steps: list[Spec]) -> Spec | None:
    positive = _positive_index(estimator)
    name = type(estimator).__name__
    if positive is None:
        return None
    if name == "DecisionTreeClassifier" and not steps:
        return _tree_spec(estimator, positive)
    if name == "LogisticRegression" and estimator.coef_.shape[0] == 1:
        sign = 1.0 if positive == 1 else -1.0
        coef = sign * np.asarray(estimator.coef_[0], dtype=np.float64)
        return {
            "kind": "linear",
            "steps": steps,
            "coef": coef,
            "bias": sign * float(estimator.intercept_[0]),
        }
    return None


def compile_spec(estimator: Any) -> Spec | None:
    """Plain arrays that evaluate P(failure) like the estimator, or None for unknown shapes."""
    if type(estimator).__name__ != "Pipeline":
        return _final_spec(estimator, [])
    steps = []
    for _, step in estimator.steps[:-1]:
        spec = _transform_spec(step)
        if spec is None:
            return None
        steps.append(spec)
    return _final_spec(estimator.steps[-1][1], steps)
