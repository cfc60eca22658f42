"""Plain-numpy evaluators of fitted scikit-learn models, free of sklearn at serving time.

sklearn's `predict_proba` validates its input on every call (about 165 us for one row of a tree,
about 2 ms for 200 boosted trees, which it walks one call each); the arrays below give the same
numbers (to 1e-12; gradient boosting's raw score to the bit) in microseconds for one row, and a
1,000-row batch of 200 boosted trees in about the time of scikit-learn's single-threaded
Cython (bench.compiled_models). A model is compiled once, at training time, into a
spec of plain arrays that the artifact carries, so serving needs neither sklearn's per-call
overhead nor sklearn itself in memory. Only the shapes failcast trains are compiled:

- a bare DecisionTreeClassifier;
- Pipeline([FunctionTransformer(f), StandardScaler(), LogisticRegression()]) with f np.log1p (the
  artifacts of earlier versions) or model.transforms.signed_log1p (history deltas are negative);
- a bare binary HistGradientBoostingClassifier without categorical features;
- training.blend.ScoreBlend of a boosted model and a logistic pipeline as above: a weighted sum
  of their scores;
- CalibratedClassifierCV(one of the above, method="sigmoid" or "isotonic") holding one
  calibrated classifier (ensemble=False, or a FrozenEstimator): the inner estimator refit on all
  the data, then one calibrator;

`compile_spec` returns None for anything else (multiclass, categorical splits, an ensemble of
calibrated classifiers, ...) and the caller falls back to `predict_proba`.

Each evaluator has a *score*, what scikit-learn's calibration reads (`decision_function` where the
model has one, else P(failure)), and a link from score to probability: none for a tree, the
logistic function for a logistic regression and for gradient boosting, the calibrator for a
calibrated model. Each also explains its answers, in the same pass as the probabilities
(`explain`):

- a tree gives the path from root to leaf: each internal node visited, as `{"feature",
  "threshold", "value", "goesLeft"}` (the value as given; `goesLeft` is the comparison the tree
  made, of the value's float32 copy as scikit-learn makes it, with `<=`), its `score` the leaf's
  probability (a tree has no link function) and its `baseValue` the root's;
- a logistic regression gives each feature's `contribution` to the log-odds (its coefficient
  times its transformed value), largest magnitude first, its `score` the log-odds (scikit-learn's
  `decision_function`) and its `baseValue` the intercept, so that `baseValue` + the sum of the
  contributions = `score`;
- gradient boosting gives contributions to the log-odds too, by path attribution (Saabas): each
  tree's walk from root to leaf moves its expected value from the root's to the leaf's, and each
  step's change is credited to the feature the node split on. A node's expected value is the
  mean of its leaves' values weighted by the training rows that reached each (the nodes' `count`,
  unweighted by class weights): scikit-learn's internal `value` of a node is its unshrunk Newton
  step, 0 at the root, on another scale than the (shrunk) leaves, so compile time computes them.
  `score` is the raw log-odds (`decision_function`), `baseValue` the baseline plus every tree's
  root expected value, so `baseValue` + the sum of the contributions = `score`; features whose
  contribution is 0 (no split on them along the row's paths) are left out;
- a blend gives contributions to its score: each feature's is the weighted sum of its
  contributions to the members' scores (weights of the score), `baseValue` the weighted sum of
  theirs, so `baseValue` + the sum = `score`; features contributing exactly 0 are left out;
- a calibrated model gives its inner model's explanation, as it is: its `score` is the inner
  model's score, which the calibrator maps monotonically to the probability answered (isotonic:
  non-decreasing; sigmoid expit(-(a score + b)): increasing, as a < 0 for any model better than
  chance). What raised the score raised the probability, but the contributions add up to the
  inner score, not to the probability or its log-odds.

Explanations are plain JSON, keyed like the GraphQL `Explanation` type (camelCase), so they are
stored with a prediction and served as they are.

How scikit-learn computes what is reproduced (1.9): a tree compares the float32 copy of a value
with `<=`; gradient boosting compares the float64 value with `<=`, sends NaN to the side
`missing_go_to_left` says (serving never sends NaN), starts from `_baseline_prediction` and adds
the trees' leaves in order, then P = expit(raw); a calibrated classifier's P(failure) is the
sigmoid calibrator's expit(-(a f + b)) or the isotonic regression's linear interpolation of
(`X_thresholds_`, `y_thresholds_`) at f clipped to their range (np.interp, which scipy's
interp1d itself delegates to), values in (1, 1 + 1e-5] set to 1.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from model.transforms import signed_log1p

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
UintArray = npt.NDArray[np.uint64]
Spec = dict[str, Any]
Explanation = dict[str, Any]
DECISION_PATH = "DECISION_PATH"
CONTRIBUTIONS = "CONTRIBUTIONS"


class CheckedRows(list[dict[str, Any]]):
    """JSON objects that all have the keys of `columns`, in its order, each key's values of its
    type (floats finite): checked when they were made, for the whole call at once, so that a
    reader that would check the same (the compiled plans, graph.schema.plans) serves them as
    they are. Not to be changed once made: the check would no longer hold."""

    __slots__ = ("columns",)

    def __init__(self, rows: list[dict[str, Any]], columns: tuple[tuple[str, type], ...]) -> None:
        super().__init__(rows)
        self.columns = columns


# an explanation's contributions, as CheckedRows: feature (String), value and contribution (Float)
CONTRIBUTION_COLUMNS: tuple[tuple[str, type], ...] = (
    ("feature", str), ("value", float), ("contribution", float),
)  # fmt: skip


class Evaluator(Protocol):
    """P(failure) of each row of an (n, features) array, optionally with explanations."""

    def __call__(self, matrix: FloatArray) -> FloatArray: ...

    def explain(
        self, matrix: FloatArray, names: Sequence[str]
    ) -> tuple[FloatArray, list[Explanation]]:
        """The probabilities and, per row, its explanation (`names`: the columns' features)."""
        ...


class _Linked:
    """An evaluator whose probability is a link function of its score."""

    def score(self, matrix: FloatArray) -> FloatArray:
        """What scikit-learn's calibration reads: the decision function, else P(failure)."""
        raise NotImplementedError

    def score_one(self, matrix: FloatArray) -> float:
        """The score of a one-row matrix, as a float (the same bits as `score`)."""
        return float(self.score(matrix)[0])

    def scored_explanations(
        self, matrix: FloatArray, names: Sequence[str]
    ) -> tuple[FloatArray, list[Explanation]]:
        """The scores and each row's explanation."""
        raise NotImplementedError

    def link(self, scores: FloatArray) -> FloatArray:
        """P(failure) of scores."""
        raise NotImplementedError

    def __call__(self, matrix: FloatArray) -> FloatArray:
        return self.link(self.score(matrix))

    def explain(
        self, matrix: FloatArray, names: Sequence[str]
    ) -> tuple[FloatArray, list[Explanation]]:
        """The probabilities and each row's explanation (see the module docstring)."""
        scores, explanations = self.scored_explanations(matrix, names)
        return self.link(scores), explanations


class TreeEvaluator(_Linked):
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

    def link(self, scores: FloatArray) -> FloatArray:
        return scores  # a tree's score is its leaf's probability

    def score(self, matrix: FloatArray) -> FloatArray:
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

    def scored_explanations(
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


class _Additive(_Linked):
    """A linked evaluator whose score is `base_value` plus per-feature contributions."""

    base_value: float
    every_feature = False  # an explanation lists features that contributed exactly 0 too

    def scored_parts(self, matrix: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The scores and the (rows, features) contributions that add up to them."""
        raise NotImplementedError

    def scored_parts_one(self, matrix: FloatArray) -> tuple[float, list[float]]:
        """`scored_parts` of a one-row matrix, in floats (the same bits)."""
        scores, parts = self.scored_parts(matrix)
        return float(scores[0]), parts[0].tolist()

    def scored_explanations(
        self, matrix: FloatArray, names: Sequence[str]
    ) -> tuple[FloatArray, list[Explanation]]:
        """The scores and each row's contributions to its score (see the module docstring)."""
        every = self.every_feature
        if matrix.shape[0] == 1:
            score, parts = self.scored_parts_one(matrix)
            row = matrix[0].tolist()
            return np.array([score]), [
                _contributions_one(score, self.base_value, row, parts, names, every)
            ]
        scores, contributions = self.scored_parts(matrix)
        return scores, _contributions(scores, self.base_value, matrix, contributions, names, every)


def _contributions(
    scores: FloatArray,
    base_value: float,
    matrix: FloatArray,
    parts: FloatArray,
    names: Sequence[str],
    every_feature: bool,
) -> list[Explanation]:
    """CONTRIBUTIONS explanations, largest magnitude first (ties in the features' order);
    without `every_feature`, features that contributed exactly 0 are left out."""
    values, contributions = matrix.tolist(), parts.tolist()
    orders = np.argsort(-np.abs(parts), axis=1, kind="stable").tolist()  # all rows at once
    # every row's values are floats (tolist of float64); checked finite here, once for all rows
    checked = bool(np.isfinite(matrix).all() and np.isfinite(parts).all()) and _all_str(names)
    rows = zip(scores.tolist(), values, contributions, orders, strict=True)
    return [
        _contribution(score, base_value, row, part, ranked, names, every_feature, checked)
        for score, row, part, ranked in rows
    ]


def _contributions_one(
    score: float,
    base_value: float,
    row: list[float],
    part: list[float],
    names: Sequence[str],
    every_feature: bool,
) -> Explanation:
    """`_contributions` of one row given as floats, in plain Python: the same explanation
    without numpy's per-call cost (its 1-row calls took about 25 us of one row's 30)."""
    if not (all(map(math.isfinite, row)) and all(map(math.isfinite, part))):
        # numpy's order of what is not finite, and the explanation left unchecked
        [made] = _contributions(
            np.array([score]), base_value, np.array([row]), np.array([part]), names, every_feature
        )
        return made
    keys = [-abs(p) for p in part]
    ranked = sorted(range(len(part)), key=keys.__getitem__)  # stable, as argsort's "stable"
    checked = _all_str(names)
    return _contribution(score, base_value, row, part, ranked, names, every_feature, checked)


def _all_str(names: Sequence[str]) -> bool:
    return all(type(name) is str for name in names)


def _contribution(
    score: float,
    base_value: float,
    row: list[float],
    part: list[float],
    ranked: list[int],
    names: Sequence[str],
    every_feature: bool,
    checked: bool,
) -> Explanation:
    """One row's explanation: its features in `ranked` order (those that contributed exactly
    0 left out without `every_feature`); `checked`: every value finite, every name a str."""
    order = ranked if every_feature else [j for j in ranked if part[j] != 0.0]
    made = [{"feature": names[j], "value": row[j], "contribution": part[j]} for j in order]
    return {
        "kind": CONTRIBUTIONS,
        "score": score,
        "baseValue": base_value,
        "contributions": CheckedRows(made, CONTRIBUTION_COLUMNS) if checked else made,
    }


class LinearEvaluator(_Additive):
    """Input transforms (log1p or signed log1p, standard scaling), then a binary logistic
    regression."""

    every_feature = True  # a linear model's explanation lists every feature

    def __init__(self, spec: Spec) -> None:
        self.steps: list[Callable[[FloatArray], FloatArray]] = [_step(s) for s in spec["steps"]]
        self.coef = np.asarray(spec["coef"], dtype=np.float64)
        self.bias = float(spec["bias"])
        self.base_value = self.bias

    def link(self, scores: FloatArray) -> FloatArray:
        return _sigmoid(scores)

    def score(self, matrix: FloatArray) -> FloatArray:
        return self._margin(self._transformed(matrix))

    def _transformed(self, matrix: FloatArray) -> FloatArray:
        values = matrix
        for step in self.steps:
            values = step(values)
        return values

    def _margin(self, transformed: FloatArray) -> FloatArray:
        return np.asarray(transformed @ self.coef + self.bias, dtype=np.float64)

    def scored_parts(self, matrix: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The log-odds and each feature's contribution to them (every feature)."""
        transformed = self._transformed(matrix)
        return self._margin(transformed), transformed * self.coef


class BoostedEvaluator(_Additive):
    """Sums the leaves of binary gradient-boosted trees, vectorised over rows and trees at once.

    Finding each (row, tree)'s leaf is the costly part. Trees of at most 64 leaves (scikit-learn's
    default is 31) use bitmasks (QuickScorer, Lucchese et al. 2015): every internal node whose
    test a row fails (it goes right) rules out the leaves of its left subtree, and the row's leaf
    is the leftmost leaf no failed test ruled out, so one comparison per node and one OR per
    tree find all leaves without walking. Larger trees are walked level by level. A single row
    goes through Python code generated from the trees (`_OneRowCode`), cheaper than any numpy
    call. Leaves are then added to the baseline tree by tree, in scikit-learn's order (bit for
    bit its raw score), and contributions are summed from each leaf's path table in a fixed
    order, so that one row and a batch give the same bits.
    """

    def __init__(self, spec: Spec) -> None:
        self.baseline = float(spec["baseline"])
        nodes = _Nodes(
            roots=np.asarray(spec["roots"], dtype=np.intp),
            left=np.asarray(spec["left"], dtype=np.intp),
            right=np.asarray(spec["right"], dtype=np.intp),
            feature=np.asarray(spec["feature"], dtype=np.intp),
            threshold=np.asarray(spec["threshold"], dtype=np.float64),
            missing_left=np.asarray(spec["missing_left"], dtype=bool),
        )
        roots, left, right, feature = nodes.roots, nodes.left, nodes.right, nodes.feature
        value = np.asarray(spec["value"], dtype=np.float64)
        depth = int(spec["depth"])
        leaf = left < 0
        # Leaves in node order: tree by tree, left to right (the nodes are in pre-order).
        self.leaf_nodes = np.flatnonzero(leaf)
        self.leaf_value = value[self.leaf_nodes]
        self.first_leaf = np.searchsorted(self.leaf_nodes, roots)
        self.base_value = self.baseline + float(value[roots].sum())
        self._paths = _leaf_paths(self.leaf_nodes, left, right, feature, value, depth)
        leaves_per_tree = np.diff(np.append(self.first_leaf, len(self.leaf_nodes)))
        self._one = _OneRowCode(nodes, value, self._paths)
        self._finder: _QuickScorer | _LevelWalk
        if len(roots) and int(leaves_per_tree.max()) > _WORD:
            self._finder = _LevelWalk(nodes, depth)
        else:
            self._finder = _QuickScorer(nodes, self.first_leaf)

    def link(self, scores: FloatArray) -> FloatArray:
        return _sigmoid(scores)

    def _leaves(self, matrix: FloatArray) -> IndexArray:
        """(rows, trees): each row's leaf in each tree, as a position in `leaf_nodes`."""
        return self._finder.leaves(matrix)

    def _raw(self, leaves: IndexArray) -> FloatArray:
        # baseline + tree 0 + tree 1 + ..., in that order (np.cumsum adds sequentially)
        terms = np.empty((leaves.shape[0], leaves.shape[1] + 1))
        terms[:, 0] = self.baseline
        terms[:, 1:] = self.leaf_value[leaves]
        return np.asarray(np.cumsum(terms, axis=1)[:, -1], dtype=np.float64)

    def score(self, matrix: FloatArray) -> FloatArray:
        if matrix.shape[0] == 1:
            return np.array([self.score_one(matrix)])
        return self._raw(self._leaves(matrix))

    def score_one(self, matrix: FloatArray) -> float:
        return self._one.raw(self.baseline, matrix[0].tolist())

    def scored_parts_one(self, matrix: FloatArray) -> tuple[float, list[float]]:
        return self._one.parts(self.baseline, matrix[0].tolist(), matrix.shape[1])

    def scored_parts(self, matrix: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The raw log-odds and each feature's contribution to them (0: no split on it)."""
        if matrix.shape[0] == 1:
            raw, parts = self.scored_parts_one(matrix)
            return np.array([raw]), np.array([parts])
        leaves = self._leaves(matrix)
        return self._raw(leaves), self._paths.contributions(leaves, matrix.shape[1])


class BlendEvaluator(_Additive):
    """training.blend.ScoreBlend: the weighted sum of its members' scores (the boosted model's
    raw log-odds and the logistic regression's), and of their contributions."""

    def __init__(self, spec: Spec) -> None:
        members = [evaluator(member) for member in spec["members"]]
        if not all(isinstance(m, _Additive) for m in members):
            raise ValueError("a blend's members must add up contributions")
        self.members: list[_Additive] = [m for m in members if isinstance(m, _Additive)]
        self.weights = [float(w) for w in spec["weights"]]
        if len(self.weights) != len(self.members) or not self.members:
            raise ValueError("a blend needs one weight per member")
        pairs = zip(self.weights, self.members, strict=True)
        self.base_value = sum(w * m.base_value for w, m in pairs)

    def link(self, scores: FloatArray) -> FloatArray:
        return _sigmoid(scores)

    def score(self, matrix: FloatArray) -> FloatArray:
        if matrix.shape[0] == 1:
            return np.array([self.score_one(matrix)])
        # w0 f0 + w1 f1 + ..., in ScoreBlend.decision_function's order
        total = self.weights[0] * self.members[0].score(matrix)
        for weight, member in zip(self.weights[1:], self.members[1:], strict=True):
            total = total + weight * member.score(matrix)
        return np.asarray(total, dtype=np.float64)

    def score_one(self, matrix: FloatArray) -> float:
        # as `score`, in floats: the same operations, each rounded as numpy rounds it
        total = self.weights[0] * self.members[0].score_one(matrix)
        for weight, member in zip(self.weights[1:], self.members[1:], strict=True):
            total = total + weight * member.score_one(matrix)
        return total

    def scored_parts_one(self, matrix: FloatArray) -> tuple[float, list[float]]:
        # as `scored_parts`, in floats: the same products and sums, each rounded as numpy does
        score, parts = self.members[0].scored_parts_one(matrix)
        total, summed = self.weights[0] * score, [self.weights[0] * p for p in parts]
        for weight, member in zip(self.weights[1:], self.members[1:], strict=True):
            score, parts = member.scored_parts_one(matrix)
            total = total + weight * score
            summed = [s + weight * p for s, p in zip(summed, parts, strict=True)]
        return total, summed

    def scored_parts(self, matrix: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The blended score and each feature's weighted contributions to the members'."""
        scores, parts = self.members[0].scored_parts(matrix)
        total, summed = self.weights[0] * scores, self.weights[0] * parts
        for weight, member in zip(self.weights[1:], self.members[1:], strict=True):
            scores, parts = member.scored_parts(matrix)
            total, summed = total + weight * scores, summed + weight * parts
        return np.asarray(total, dtype=np.float64), summed


class _Nodes(NamedTuple):
    """Every tree's nodes, tree after tree, each tree in pre-order (a leaf's left is -1)."""

    roots: IndexArray  # each tree's first node
    left: IndexArray
    right: IndexArray
    feature: IndexArray
    threshold: FloatArray
    missing_left: npt.NDArray[np.bool_]  # where NaN goes


_WORD = 64  # leaves a tree may have for the bitmask leaf finder
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)  # every leaf of a 64-leaf tree


class _QuickScorer:
    """Leaf finder by bitmasks (trees of at most 64 leaves; nodes in pre-order)."""

    block_rows = 32  # rows per pass: the (internal nodes, rows) work arrays stay in cache

    def __init__(self, nodes: _Nodes, first_leaf: IndexArray) -> None:
        roots, left, right, feature, threshold, missing_left = nodes
        leaf = left < 0
        inner = np.flatnonzero(~leaf)
        self.first_leaf = first_leaf  # of each tree, among all leaves
        # Rank of a node among its tree's leaves: leaves before it in its tree. In pre-order the
        # left child's subtree is the nodes from left[i] to right[i] (excluded), so its leaves
        # have the ranks from before[left[i]] to before[right[i]] (excluded): the bits a failed
        # test rules out.
        tree: IndexArray = np.repeat(np.arange(len(roots)), np.diff(np.append(roots, len(left))))
        counted: IndexArray = np.cumsum(leaf) - leaf
        before: IndexArray = counted - counted[roots][tree]
        low: UintArray = before[left[inner]].astype(np.uint64)
        high: UintArray = before[right[inner]].astype(np.uint64)
        shifted = np.uint64(1) << np.minimum(high, np.uint64(_WORD - 1))
        below_high = np.where(high >= _WORD, _ALL, shifted - np.uint64(1))
        self.cuts: UintArray = below_high ^ ((np.uint64(1) << low) - np.uint64(1))
        self.feature: IndexArray = feature[inner]
        self.threshold: FloatArray = threshold[inner, None]
        self.missing_right: npt.NDArray[np.bool_] = ~missing_left[inner, None]
        itree = tree[inner]
        split = np.flatnonzero(np.r_[True, itree[1:] != itree[:-1]]) if len(inner) else inner
        self.starts: IndexArray = split
        self.trees_split: IndexArray = itree[split]
        self.trees = len(roots)

    def leaves(self, matrix: FloatArray) -> IndexArray:
        """(rows, trees): each row's leaf in each tree, as a position among all leaves."""
        rows, width = matrix.shape[0], min(matrix.shape[0], self.block_rows)
        found = np.empty((rows, self.trees), dtype=np.intp)
        missing = bool(np.isnan(matrix).any())
        # Work arrays, nodes by rows (the reduction per tree then runs over whole rows of
        # memory), made once per call: fresh arrays this size per block cost page faults.
        values = np.empty((len(self.feature), width))
        fails = np.empty(values.shape, dtype=bool)
        cut = np.empty(values.shape, dtype=np.uint64)
        for start in range(0, rows, width):
            block = np.ascontiguousarray(matrix[start : start + width].T)
            n = block.shape[1]
            np.take(block, self.feature, axis=0, out=values[:, :n], mode="clip")
            np.greater(values[:, :n], self.threshold, out=fails[:, :n])  # goes right
            if missing:
                fails[:, :n] |= np.isnan(values[:, :n]) & self.missing_right
            np.multiply(fails[:, :n], self.cuts[:, None], out=cut[:, :n])
            ruled_out = np.zeros((self.trees, n), dtype=np.uint64)
            if len(self.feature):
                ruled_out[self.trees_split] = np.bitwise_or.reduceat(cut[:, :n], self.starts)
            # the leftmost leaf not ruled out: the lowest 0 bit, as a power of two (a tree's
            # leaf is never ruled out, so this never overflows), and its exponent
            lowest = (ruled_out + np.uint64(1)) & ~ruled_out
            rank = np.frexp(lowest.astype(np.float64))[1] - 1  # 2**k is 0.5 * 2**(k + 1)
            found[start : start + n] = (rank + self.first_leaf[:, None]).T
        return found


_NESTING = 40  # levels of `if` a tree's generated code nests (CPython's parser allows 100)


class _OneRowCode:
    """One row's walk down every tree, as Python code generated from the trees at load: each
    tree a nest of `if r[feature] <= threshold:` with its leaves' values (and, for `parts`, their
    path changes) as constants. For a single row this is several times faster than the
    vectorised finders (whose numpy calls cost more than 60 small trees' few comparisons) and
    than walking node tuples in a loop (16.6 -> 4.3 us for 60 trees of 31 leaves, explained
    29.4 -> 7.9 us), with the same comparisons (float64 `<=`, NaN to the side each node learned)
    and the same additions in the same order, so its scores are the batch's to the bit.

    The source holds only ints (node, feature) and floats written with `repr`, which reads
    back as the same float (infinities and NaN by name); the artifact it comes from was checked
    against the registry's sha256 before it was unpickled. A subtree deeper than `_NESTING`
    levels is walked node by node from there (`_walk`): deep trees would overflow the parser's
    indentation."""

    def __init__(self, nodes: _Nodes, value: FloatArray, paths: "_LeafPaths") -> None:
        roots, left, right, feature, threshold, missing_left = nodes
        self._left, self._right = left.tolist(), right.tolist()
        self._feature, self._threshold = feature.tolist(), threshold.tolist()
        self._nan_left = missing_left.tolist()
        self._nesting = _NESTING
        self._value: list[float] = value.tolist()
        position = (np.cumsum(left < 0) - 1).tolist()  # of a leaf node among all leaves
        # per leaf node: its path's (feature split on, change of the expected value), root first
        starts, lengths = paths.start.tolist(), paths.length.tolist()
        features, changes = paths.feature.tolist(), paths.change.tolist()
        steps = [
            list(zip(features[s : s + n], changes[s : s + n], strict=True))
            for s, n in zip(starts, lengths, strict=True)
        ]
        self._path: list[list[tuple[int, float]]] = [
            steps[p] if is_leaf else []
            for p, is_leaf in zip(position, (left < 0).tolist(), strict=True)
        ]
        raw, parts = ["def raw(r, t):"], ["def parts(r, t, p):"]
        for root in roots.tolist():
            self._emit(root, 1, raw, with_parts=False)
            self._emit(root, 1, parts, with_parts=True)
        source = "\n".join([*raw, "    return t", *parts, "    return t", ""])
        namespace: dict[str, Any] = {
            "INF": np.inf, "NAN": np.nan, "walk": self._walk, "V": self._value, "P": self._path,
        }  # fmt: skip
        exec(compile(source, "<model.compiled: trees>", "exec"), namespace)  # noqa: S102
        self._raw: Callable[[list[float], float], float] = namespace["raw"]
        self._parts: Callable[[list[float], float, list[float]], float] = namespace["parts"]

    def _emit(self, node: int, level: int, out: list[str], with_parts: bool) -> None:
        """The code of the subtree at `node`, indented `level` times, into `out`."""
        pad = "    " * level
        if self._left[node] < 0:
            out.append(f"{pad}t += {_literal(self._value[node])}")
            if with_parts:
                out += [f"{pad}p[{f}] += {_literal(c)}" for f, c in self._path[node]]
            return
        if level > self._nesting:  # walked from here on, in a loop
            out += [f"{pad}n = walk(r, {node})", f"{pad}t += V[n]"]
            if with_parts:
                out += [f"{pad}for f, c in P[n]:", f"{pad}    p[f] += c"]
            return
        x = f"r[{self._feature[node]}]"
        test = f"{x} <= {_literal(self._threshold[node])}"
        out.append(f"{pad}if {test} or {x} != {x}:" if self._nan_left[node] else f"{pad}if {test}:")
        self._emit(self._left[node], level + 1, out, with_parts)
        out.append(f"{pad}else:")
        self._emit(self._right[node], level + 1, out, with_parts)

    def _walk(self, row: list[float], node: int) -> int:
        """The leaf node the row reaches from `node` (the comparisons of the generated code)."""
        left, right, feature = self._left, self._right, self._feature
        threshold, nan_left = self._threshold, self._nan_left
        while left[node] >= 0:
            x = row[feature[node]]
            go_left = x <= threshold[node] or (x != x and nan_left[node])
            node = left[node] if go_left else right[node]
        return node

    def raw(self, baseline: float, row: list[float]) -> float:
        """The baseline plus each tree's leaf, tree by tree: np.cumsum's sequential order."""
        return self._raw(row, baseline)

    def parts(self, baseline: float, row: list[float], width: int) -> tuple[float, list[float]]:
        """`raw` and each feature's contribution: the leaves' path changes added tree by tree,
        root to leaf, from 0 (the order of _LeafPaths.contributions' bincount)."""
        parts = [0.0] * width
        return self._parts(row, baseline, parts), parts


def _literal(value: float) -> str:
    """Python source for a float that reads back as the same float."""
    if value != value:
        return "NAN"
    if value in (np.inf, -np.inf):
        return "INF" if value > 0 else "-INF"
    return repr(float(value))


class _LevelWalk:
    """Leaf finder that walks every tree, a level per step, leaves stepping to themselves."""

    block_rows = 512  # bounds the (rows, trees) temporaries

    def __init__(self, nodes: _Nodes, depth: int) -> None:
        roots, left, right, feature, threshold, missing_left = nodes
        leaf = left < 0
        itself = np.arange(len(left), dtype=np.intp)
        self.roots = roots
        self.left = np.where(leaf, itself, left)
        self.right = np.where(leaf, itself, right)
        self.feature = np.where(leaf, 0, feature)
        self.threshold = threshold
        self.missing_left = missing_left
        self.depth = depth
        self.position = np.cumsum(leaf) - 1  # of a leaf node among all leaves

    def leaves(self, matrix: FloatArray) -> IndexArray:
        """(rows, trees): each row's leaf in each tree, as a position among all leaves."""
        blocks = range(0, matrix.shape[0], self.block_rows)
        found = [self._block(matrix[i : i + self.block_rows]) for i in blocks]
        return np.concatenate(found) if found else np.zeros((0, len(self.roots)), np.intp)

    def _block(self, matrix: FloatArray) -> IndexArray:
        rows, width = matrix.shape
        flat = np.ascontiguousarray(matrix).ravel()
        cells = (np.arange(rows, dtype=np.intp) * width)[:, None]
        node = np.repeat(self.roots[None, :], rows, axis=0)
        missing = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            values = flat[cells + self.feature[node]]
            go_left = values <= self.threshold[node]
            if missing:
                go_left |= np.isnan(values) & self.missing_left[node]
            node = np.where(go_left, self.left[node], self.right[node])
        return np.asarray(self.position[node], dtype=np.intp)


class _LeafPaths:
    """Each leaf's path from its root as (feature split on, change of the expected value)."""

    def __init__(self, start: IndexArray, length: IndexArray, feature: IndexArray,
                 change: FloatArray) -> None:  # fmt: skip
        self.start, self.length, self.feature, self.change = start, length, feature, change

    def contributions(self, leaves: IndexArray, width: int) -> FloatArray:
        """(rows, width): per row, its leaves' path changes summed per feature, tree by tree and
        root to leaf, from 0."""
        rows = leaves.shape[0]
        flat = leaves.ravel()
        lengths = self.length[flat]
        ends = np.cumsum(lengths)
        entries = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(
            ends - lengths - self.start[flat], lengths
        )
        row = np.repeat(np.arange(rows, dtype=np.intp), lengths.reshape(leaves.shape).sum(axis=1))
        cells = row * width + self.feature[entries]
        parts = np.bincount(cells, weights=self.change[entries], minlength=rows * width)
        return np.asarray(parts.reshape(rows, width), dtype=np.float64)


def _leaf_paths(
    leaf_nodes: IndexArray,
    left: IndexArray,
    right: IndexArray,
    feature: IndexArray,
    value: FloatArray,
    depth: int,
) -> _LeafPaths:
    inner = np.flatnonzero(left >= 0)
    parent = np.full(len(left), -1, dtype=np.intp)
    parent[left[inner]] = inner
    parent[right[inner]] = inner
    chain = [leaf_nodes]  # leaf, its parent, ..., the root, then -1
    for _ in range(depth):
        up = chain[-1]
        chain.append(np.where(up >= 0, parent[np.maximum(up, 0)], -1))
    ancestors = np.stack(chain, axis=1)[:, ::-1]  # root first, -1 padding in front
    above, below = ancestors[:, :-1], ancestors[:, 1:]
    step = above >= 0
    return _LeafPaths(
        start=np.asarray(np.cumsum(step.sum(axis=1)) - step.sum(axis=1), dtype=np.intp),
        length=np.asarray(step.sum(axis=1), dtype=np.intp),
        feature=feature[above[step]],
        change=value[below[step]] - value[above[step]],
    )


class CalibratedEvaluator:
    """An inner evaluator's score, mapped to P(failure) by a sigmoid or isotonic calibrator."""

    def __init__(self, spec: Spec) -> None:
        inner = evaluator(spec["inner"])
        if not isinstance(inner, _Linked):
            raise ValueError("a calibrated model's inner model must have a score")
        self.inner = inner
        self.calibrate, self.calibrate_one = _calibrator(spec["calibrator"])

    def __call__(self, matrix: FloatArray) -> FloatArray:
        if matrix.shape[0] == 1:  # floats: numpy's per-call cost exceeds the arithmetic
            return np.array([self.calibrate_one(self.inner.score_one(matrix))])
        return self.calibrate(self.inner.score(matrix))

    def explain(
        self, matrix: FloatArray, names: Sequence[str]
    ) -> tuple[FloatArray, list[Explanation]]:
        """The calibrated probabilities and the inner model's explanations, as they are."""
        scores, explanations = self.inner.scored_explanations(matrix, names)
        if matrix.shape[0] == 1:
            return np.array([self.calibrate_one(float(scores[0]))]), explanations
        return self.calibrate(scores), explanations


def _calibrator(
    spec: Spec,
) -> tuple[Callable[[FloatArray], FloatArray], Callable[[float], float]]:
    """The calibrator of a spec: of an array of scores, and of one score (the same bits: the
    same operations, numpy's exp and interp on the one score)."""
    if spec["kind"] == "sigmoid":
        a, b = float(spec["a"]), float(spec["b"])

        def sigmoid_one(score: float) -> float:
            margin = -(a * score + b)
            return _almost_one_is_one_float(1.0 / (1.0 + float(np.exp(-margin))))

        return lambda scores: _almost_one_is_one(_sigmoid(-(a * scores + b))), sigmoid_one
    if spec["kind"] == "isotonic":
        x = np.asarray(spec["x"], dtype=np.float64)
        y = np.asarray(spec["y"], dtype=np.float64)
        # np.interp holds the end values outside [x[0], x[-1]]: the clipping of
        # out_of_bounds="clip" (x[0] and x[-1] are the smallest and largest scores fitted).
        return (
            lambda scores: _almost_one_is_one(np.interp(scores, x, y)),
            lambda score: _almost_one_is_one_float(float(np.interp(score, x, y))),
        )
    raise ValueError(f"unknown calibrator {spec['kind']!r}")


def _almost_one_is_one(proba: FloatArray) -> FloatArray:
    # scikit-learn's _CalibratedClassifier: values minimally above 1 are set to 1
    proba = np.asarray(proba, dtype=np.float64)
    return np.where((proba > 1.0) & (proba <= 1.0 + 1e-5), 1.0, proba)


def _almost_one_is_one_float(proba: float) -> float:
    return 1.0 if 1.0 < proba <= 1.0 + 1e-5 else proba


def _sigmoid(margin: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-margin)), dtype=np.float64)


def _step(spec: Spec) -> Callable[[FloatArray], FloatArray]:
    if spec["kind"] == "log1p":
        return np.log1p
    if spec["kind"] == "signed_log1p":
        return signed_log1p
    mean = np.asarray(spec["mean"], dtype=np.float64)
    scale = np.asarray(spec["scale"], dtype=np.float64)
    return lambda x: (x - mean) / scale


def evaluator(spec: Spec) -> Evaluator:
    """The evaluator a spec describes."""
    kinds: dict[str, Callable[[Spec], Evaluator]] = {
        "tree": TreeEvaluator,
        "linear": LinearEvaluator,
        "boosted": BoostedEvaluator,
        "calibrated": CalibratedEvaluator,
        "blend": BlendEvaluator,
    }
    return kinds[spec["kind"]](spec)


def _positive_index(estimator: Any) -> int | None:
    classes = [int(c) for c in getattr(estimator, "classes_", [])]
    return classes.index(1) if sorted(classes) == [0, 1] else None


TRANSFORMS: dict[Callable[..., Any], str] = {np.log1p: "log1p", signed_log1p: "signed_log1p"}


def _transform_spec(step: Any) -> Spec | None:
    name = type(step).__name__
    if name == "FunctionTransformer":
        plain = step.kw_args is None and step.inverse_func is None
        kind = next((k for f, k in TRANSFORMS.items() if step.func is f), None)
        return {"kind": kind} if kind is not None and plain else None
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


def _boosted_tree(nodes: Any, offset: int) -> tuple[Spec, int] | None:
    """One tree of a HistGradientBoostingClassifier: its arrays (node ids from `offset`) and its
    depth; None for a layout other than scikit-learn's pre-order (a node, its left subtree, then
    its right subtree), which the evaluator's bitmasks rely on."""
    leaf = np.asarray(nodes["is_leaf"], dtype=bool)
    left = np.where(leaf, -1, np.asarray(nodes["left"], dtype=np.int64))
    right = np.where(leaf, -1, np.asarray(nodes["right"], dtype=np.int64))
    # Expected values: leaves as they are, internal nodes the count-weighted mean of their
    # children, computed from the last node back (children come after their parent).
    value = np.asarray(nodes["value"], dtype=np.float64).copy()
    weight = np.asarray(nodes["count"], dtype=np.float64).copy()
    size = np.ones(len(leaf), dtype=np.int64)  # nodes in each subtree
    for i in np.flatnonzero(~leaf)[::-1].tolist():
        lo, hi = int(left[i]), int(right[i])
        if lo != i + 1 or hi != lo + size[lo] or hi + size[hi] > len(leaf):
            return None
        size[i] = 1 + size[lo] + size[hi]
        total = weight[lo] + weight[hi]
        if total > 0:
            value[i] = (weight[lo] * value[lo] + weight[hi] * value[hi]) / total
        else:
            value[i] = (value[lo] + value[hi]) / 2
        weight[i] = total
    if size[0] != len(leaf):
        return None
    depth = np.zeros(len(leaf), dtype=np.int64)
    for i in np.flatnonzero(~leaf).tolist():
        depth[left[i]] = depth[right[i]] = depth[i] + 1
    spec = {
        "left": np.where(leaf, -1, left + offset),
        "right": np.where(leaf, -1, right + offset),
        "feature": np.where(leaf, 0, np.asarray(nodes["feature_idx"], dtype=np.int64)),
        "threshold": np.asarray(nodes["num_threshold"], dtype=np.float64),
        "missing_left": np.asarray(nodes["missing_go_to_left"], dtype=bool),
        "value": value,
    }
    return spec, int(depth.max())


def _boosted_spec(estimator: Any) -> Spec | None:
    if _positive_index(estimator) != 1 or estimator.n_trees_per_iteration_ != 1:
        return None  # multiclass, or labels other than 0/1
    if getattr(estimator, "_preprocessor", None) is not None:
        return None  # categorical features (reordered columns, bitsets)
    baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).ravel()
    if baseline.shape != (1,):
        return None
    trees, roots, depth, offset = [], [], 0, 0
    for iteration in estimator._predictors:
        if len(iteration) != 1:
            return None
        nodes = iteration[0].nodes
        if np.any(nodes["is_categorical"]):
            return None
        tree = _boosted_tree(nodes, offset)
        if tree is None:
            return None
        trees.append(tree[0])
        roots.append(offset)
        depth = max(depth, tree[1])
        offset += len(nodes)
    keys = ("left", "right", "feature", "threshold", "missing_left", "value")
    empty = {"left": np.int64, "right": np.int64, "feature": np.int64, "threshold": np.float64,
             "missing_left": bool, "value": np.float64}  # fmt: skip
    return {
        "kind": "boosted",
        "baseline": float(baseline[0]),
        "roots": np.array(roots, dtype=np.int64),
        **{
            k: np.concatenate([t[k] for t in trees]) if trees else np.zeros(0, dtype=empty[k])
            for k in keys
        },
        "depth": depth,
    }


def _final_spec(estimator: Any, steps: list[Spec]) -> Spec | None:
    positive = _positive_index(estimator)
    name = type(estimator).__name__
    if positive is None:
        return None
    if name == "DecisionTreeClassifier" and not steps:
        return _tree_spec(estimator, positive)
    if name == "HistGradientBoostingClassifier" and not steps:
        return _boosted_spec(estimator)
    if name == "ScoreBlend" and not steps:
        return _blend_spec(estimator)
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


def _blend_spec(estimator: Any) -> Spec | None:
    members = [_uncalibrated_spec(member) for member in estimator.members_]
    if any(m is None or m["kind"] not in ("linear", "boosted") for m in members):
        return None  # only members whose score is a decision function that adds up
    weights = [float(w) for w in estimator.weights_]
    return {"kind": "blend", "members": members, "weights": weights}


def _uncalibrated_spec(estimator: Any) -> Spec | None:
    if type(estimator).__name__ != "Pipeline":
        return _final_spec(estimator, [])
    steps = []
    for _, step in estimator.steps[:-1]:
        spec = _transform_spec(step)
        if spec is None:
            return None
        steps.append(spec)
    return _final_spec(estimator.steps[-1][1], steps)


def _calibrator_spec(calibrator: Any) -> Spec | None:
    name = type(calibrator).__name__
    if name == "_SigmoidCalibration":
        return {"kind": "sigmoid", "a": float(calibrator.a_), "b": float(calibrator.b_)}
    if name == "IsotonicRegression" and calibrator.out_of_bounds == "clip":
        x = np.asarray(calibrator.X_thresholds_, dtype=np.float64)
        y = np.asarray(calibrator.y_thresholds_, dtype=np.float64)
        if len(x) and x[0] == calibrator.X_min_ and x[-1] == calibrator.X_max_:
            return {"kind": "isotonic", "x": x, "y": y}
    return None


def _calibrated_spec(estimator: Any) -> Spec | None:
    pairs = estimator.calibrated_classifiers_
    if _positive_index(estimator) != 1 or len(pairs) != 1:
        return None  # an ensemble averages several calibrated classifiers
    pair = pairs[0]
    if pair.method not in ("sigmoid", "isotonic") or len(pair.calibrators) != 1:
        return None
    inner = pair.estimator
    if type(inner).__name__ == "FrozenEstimator":  # delegates every method to what it froze
        inner = inner.estimator
    inner_spec = _uncalibrated_spec(inner)
    calibrator = _calibrator_spec(pair.calibrators[0])
    if inner_spec is None or calibrator is None or _positive_index(inner) != 1:
        return None
    # The calibrator was fitted on the inner model's decision_function where it has one, else
    # on its P(failure): the compiled score must be the same quantity.
    reads_decision = hasattr(inner, "decision_function")
    if reads_decision != (inner_spec["kind"] in ("linear", "boosted", "blend")):
        return None
    return {"kind": "calibrated", "inner": inner_spec, "calibrator": calibrator}


def compile_spec(estimator: Any) -> Spec | None:
    """Plain arrays that evaluate P(failure) like the estimator, or None for unknown shapes."""
    if type(estimator).__name__ == "CalibratedClassifierCV":
        return _calibrated_spec(estimator)
    return _uncalibrated_spec(estimator)
