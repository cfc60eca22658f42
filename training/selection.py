"""Choosing features and hyperparameters by grouped cross-validation on the training devices
only (the validation and test devices are never read here).

1. Feature sets: every candidate set is cross-validated with every algorithm at its default
   point (the table the report shows). Each algorithm takes the set where it scored the highest
   mean PR-AUC. Scores that round to the same third decimal are a tie, and a tie goes to the
   set reading fewer earlier observations (what serving fetches per device on a cache miss).
2. Hyperparameters: each algorithm's grid (training.estimators.search_grid) on its set; the
   point with the highest mean PR-AUC wins (the first of the grid on a tie). The tree's grid
   over depths, with training-fold scores beside, is the validation curve.
3. Each algorithm's held-out scores at its chosen point choose its calibration method
   (training.calibration.choose_method).

The blend (training.blend) is not searched when gradient boosting is: it takes the boosted
model's feature set and point (its members are that model and the logistic regression on the
same features), and is cross-validated there once. Searching it too would add five runs of the
costliest candidate and, more to the point, more chances for a candidate to win by the noise of
~64 failing training devices (a blend of counters alone once won the search that way, and lost
on the test devices).

The algorithm served is then chosen by `select` (training.experiment), so its feature set is
the version's: the one with the highest mean PR-AUC at its choice, unless the blend is within
the noise of the folds of it (`NOISE_RULE`), in which case the blend is served. On the public
data no pair of candidates is told apart by the folds: the best one's lead over the blend was
0.011 to 0.041 of mean PR-AUC, with a standard error of 0.034 to 0.056 (four device splits);
the folds' winner changed from split to split (boosting, the logistic regression), and so did
the winner on unseen devices, where the blend, which averages the two, ranked better than
either reference on every split (bench.quality). An average of two models cannot rank much
worse than the better one and varies less than either, so a tie within the noise goes to it,
as the one-standard-error rule gives a tie to the simpler model. Every configuration is
cross-validated once (results are shared between the steps).
"""

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.calibration import choose_method
from training.dataset import IntArray
from training.estimators import (
    BLEND,
    DECISION_TREE,
    HIST_GRADIENT_BOOSTING,
    build_estimator,
    default_point,
    search_grid,
)
from training.evaluation import HeldOut, held_out, summary
from training.features import FeatureTable, depth_of
from training.splits import Folds

Progress = Callable[[str], None]
TIE_DECIMALS = 3


@dataclass(frozen=True, eq=False)
class Choice:
    """An algorithm's chosen point on the chosen features, and how it was chosen."""

    algorithm: str
    feature_set: str
    point: dict[str, Any]
    scores: HeldOut  # its held-out scores on the training devices' folds
    grid: list[dict[str, Any]]  # every point tried, with its mean ROC-AUC and PR-AUC
    calibration: dict[str, Any]  # training.calibration.choose_method's result

    @property
    def pr_auc(self) -> float:
        """Mean cross-validated PR-AUC on the training devices: what selection compares."""
        return self.scores.mean("pr_auc")


@dataclass(frozen=True, eq=False)
class Search:
    """Each algorithm's choice, and the tables behind them."""

    feature_sets: list[dict[str, Any]]
    choices: dict[str, Choice]
    validation_curve: list[dict[str, Any]] | None


class _Runs:
    """Cross-validation of (features, algorithm, point) on the training devices, each once."""

    def __init__(
        self, table: FeatureTable, y: IntArray, folds: Folds, seed: int, progress: Progress
    ) -> None:
        self.table, self.y, self.folds, self.seed = table, y, folds, seed
        self.progress = progress
        self._done: dict[str, HeldOut] = {}

    def run(
        self, names: Sequence[str], algorithm: str, point: Mapping[str, Any], label: str
    ) -> HeldOut:
        key = json.dumps([list(names), algorithm, dict(point)], sort_keys=True)
        if key not in self._done:
            self.progress(f"cross-validating {algorithm} {_describe(point)} on {label}")
            estimator = build_estimator(algorithm, self.seed, point, names)
            X = self.table.columns(names)
            tree = algorithm == DECISION_TREE
            self._done[key] = held_out(estimator, X, self.y, self.folds, train_scores=tree)
        return self._done[key]


NOISE_RULE = (
    "highest mean grouped cross-validated PR-AUC on the training devices; the blend when the"
    " best one's lead over it is within one standard error of their paired per-fold difference"
)


def select(choices: Mapping[str, Choice]) -> tuple[str, dict[str, Any]]:
    """The algorithm to serve (see the module docstring) and how it was chosen: the best by
    mean PR-AUC, its lead over the blend and the standard error of that lead."""
    # max() keeps the first of equal scores: the first algorithm of ALGORITHMS.
    best = max(choices, key=lambda name: choices[name].pr_auc)
    detail: dict[str, Any] = {"rule": NOISE_RULE, "best": best, "selected": best}
    if BLEND not in choices or best == BLEND:
        return best, detail
    lead = _fold_pr_auc(choices[best].scores) - _fold_pr_auc(choices[BLEND].scores)
    error = float(lead.std(ddof=1) / np.sqrt(lead.size)) if lead.size > 1 else 0.0
    detail.update(blend_lead=float(lead.mean()), standard_error=error)
    if lead.mean() <= error:
        detail["selected"] = BLEND
    return detail["selected"], detail


def _fold_pr_auc(scores: HeldOut) -> np.ndarray:
    return np.array([fold["pr_auc"] or 0.0 for fold in scores.validation])


def _describe(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items()) or "(defaults)"


def _rounded(value: float) -> float:
    return round(value, TIE_DECIMALS)


def search(
    table: FeatureTable,
    y: IntArray,
    folds: Folds,
    sets: Mapping[str, Sequence[str]],
    algorithms: Sequence[str],
    seed: int,
    max_depth: int | None,
    progress: Progress,
) -> Search:
    """Steps 1-3 of the module docstring. `table` and `y` hold the training devices' rows only,
    and `folds` are positions in them."""
    runs = _Runs(table, y, folds, seed, progress)
    inherits = BLEND in algorithms and HIST_GRADIENT_BOOSTING in algorithms
    searched = [a for a in algorithms if not (inherits and a == BLEND)]
    defaults = {
        (name, algorithm): runs.run(names, algorithm, default_point(algorithm, max_depth), name)
        for name, names in sets.items()
        for algorithm in searched
    }
    rows = [
        _set_row(name, names, {a: defaults[(name, a)] for a in searched})
        for name, names in sets.items()
    ]
    choices = {}
    for algorithm in searched:
        # max() keeps the first of equal keys; the depth breaks ties of rounded scores.
        chosen = max(
            sets,
            key=lambda name: (
                _rounded(defaults[(name, algorithm)].mean("pr_auc")),
                -depth_of(sets[name]),
            ),
        )
        choices[algorithm] = _choose_point(runs, sets[chosen], chosen, algorithm, max_depth, y)
    if inherits:
        boosted = choices[HIST_GRADIENT_BOOSTING]
        names = sets[boosted.feature_set]
        blend = _choose_point(
            runs, names, boosted.feature_set, BLEND, max_depth, y, [boosted.point]
        )
        choices = {a: blend if a == BLEND else choices[a] for a in algorithms}
    curve = None
    if DECISION_TREE in choices and len(choices[DECISION_TREE].grid) > 1:
        tree = choices[DECISION_TREE]
        curve = _curve(runs, sets[tree.feature_set], tree.feature_set, max_depth)
    return Search(rows, choices, curve)


def _set_row(name: str, names: Sequence[str], scores: Mapping[str, HeldOut]) -> dict[str, Any]:
    by_algorithm = {
        algorithm: {
            "roc_auc": summary([f["roc_auc"] for f in s.validation]),
            "pr_auc": summary([f["pr_auc"] for f in s.validation]),
        }
        for algorithm, s in scores.items()
    }
    return {
        "name": name,
        "features": len(names),
        "depth": depth_of(names),
        "scores": by_algorithm,
    }


def _choose_point(
    runs: _Runs,
    names: Sequence[str],
    label: str,
    algorithm: str,
    max_depth: int | None,
    y: IntArray,
    grid: Sequence[Mapping[str, Any]] | None = None,
) -> Choice:
    """The best point of `grid` (default: the algorithm's search grid) on `names`."""
    grid = search_grid(algorithm, max_depth) if grid is None else grid
    scored = [(point, runs.run(names, algorithm, point, label)) for point in grid]
    # max() keeps the first of equal scores: the first point of the grid.
    point, scores = max(scored, key=lambda pair: _rounded(pair[1].mean("pr_auc")))
    table = [
        {"point": p, "roc_auc": s.mean("roc_auc"), "pr_auc": s.mean("pr_auc")} for p, s in scored
    ]
    calibration = choose_method(scores.response, scores.proba, y, scores.fold_of)
    return Choice(algorithm, label, dict(point), scores, table, calibration)


def _curve(
    runs: _Runs, names: Sequence[str], label: str, max_depth: int | None
) -> list[dict[str, Any]]:
    """Mean train and validation ROC-AUC / PR-AUC of the tree at each depth of its grid."""
    curve = []
    for point in search_grid(DECISION_TREE, max_depth):
        scores = runs.run(names, DECISION_TREE, point, label)
        entry: dict[str, Any] = {"max_depth": point["max_depth"]}
        for side, folds in (("train", scores.train or []), ("validation", scores.validation)):
            for metric in ("roc_auc", "pr_auc"):
                values = summary([f[metric] for f in folds])
                entry.setdefault(side, {})[metric] = values["mean"]
                entry[side][f"{metric}_std"] = values["std"]
        curve.append(entry)
    return curve


def relative_folds(folds: Folds, rows: np.ndarray) -> Folds:
    """Folds over a subset of rows (sorted row indices), as positions within the subset."""
    return [(np.searchsorted(rows, a), np.searchsorted(rows, b)) for a, b in folds]
