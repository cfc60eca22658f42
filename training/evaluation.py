"""Cross-validation grouped by device, and the validation curve over tree depth."""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import clone

from training.dataset import Dataset
from training.estimators import decision_tree, logistic_regression
from training.metrics import ranking_metrics
from training.splits import Folds, Rows, grouped_folds

DEPTHS: tuple[int | None, ...] = (*range(1, 13), None)  # None: unpruned


def positive_proba(estimator: Any, X: np.ndarray) -> np.ndarray:
    """P(failure) from a fitted binary classifier with classes_ == [0, 1]."""
    return np.asarray(estimator.predict_proba(X)[:, 1], dtype=np.float64)


def fit_score(estimator: Any, dataset: Dataset, train: Rows, held: Rows) -> dict[str, Any]:
    """Fit a fresh clone on `train` rows; ROC-AUC and PR-AUC on `held` rows."""
    fitted = clone(estimator).fit(dataset.X[train], dataset.y[train])
    return ranking_metrics(dataset.y[held], positive_proba(fitted, dataset.X[held]))


def _summary(values: Sequence[float | None]) -> dict[str, Any]:
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    return {
        "mean": float(present.mean()) if present.size else None,
        "std": float(present.std()) if present.size else None,
        "per_fold": list(values),
    }


def cross_validate(estimator: Any, dataset: Dataset, folds: Folds) -> dict[str, Any]:
    """Per-fold ROC-AUC and PR-AUC over the given folds, with their mean and spread."""
    scores = [fit_score(estimator, dataset, train, held) for train, held in folds]
    return {
        "folds": len(folds),
        "roc_auc": _summary([s["roc_auc"] for s in scores]),
        "pr_auc": _summary([s["pr_auc"] for s in scores]),
    }


def cross_validate_reference(dataset: Dataset, seed: int = 0, folds: int = 5) -> dict[str, Any]:
    """The three reference models of SOURCE.md, cross-validated on the same device folds."""
    splits = grouped_folds(dataset, folds, seed)
    models = {
        "decision_tree_unpruned": decision_tree(seed, None, balanced=False),
        "decision_tree_depth4_balanced": decision_tree(seed, 4),
        "logistic_regression_log1p_balanced": logistic_regression(seed),
    }
    return {name: cross_validate(model, dataset, splits) for name, model in models.items()}


def validation_curve(
    dataset: Dataset,
    folds: Folds,
    seed: int,
    depths: Sequence[int | None] = DEPTHS,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Mean train and validation ROC-AUC / PR-AUC of a balanced tree at each depth over folds."""
    curve = []
    for depth in depths:
        if progress is not None:
            progress(f"validation curve: max_depth={depth or 'unpruned'}")
        scores = [_depth_scores(dataset, train, held, seed, depth) for train, held in folds]
        point: dict[str, Any] = {"max_depth": depth}
        for side in ("train", "validation"):
            for metric in ("roc_auc", "pr_auc"):
                summary = _summary([s[side][metric] for s in scores])
                point.setdefault(side, {})[metric] = summary["mean"]
                point[side][f"{metric}_std"] = summary["std"]
        curve.append(point)
    return curve


def _depth_scores(
    dataset: Dataset, train: Rows, held: Rows, seed: int, depth: int | None
) -> dict[str, dict[str, float | None]]:
    fitted = decision_tree(seed, depth).fit(dataset.X[train], dataset.y[train])
    return {
        "train": ranking_metrics(dataset.y[train], positive_proba(fitted, dataset.X[train])),
        "validation": ranking_metrics(dataset.y[held], positive_proba(fitted, dataset.X[held])),
    }
