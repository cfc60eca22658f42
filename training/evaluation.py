"""Cross-validation grouped by device: held-out scores, their summaries, the reference models."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import clone

from training.calibration import brier, calibrator_input, cross_fitted
from training.dataset import Dataset, FloatArray, IntArray
from training.estimators import decision_tree, logistic_regression
from training.metrics import ranking_metrics
from training.splits import Folds, grouped_folds


def positive_proba(estimator: Any, X: np.ndarray) -> np.ndarray:
    """P(failure) from a fitted binary classifier with classes_ == [0, 1]."""
    return np.asarray(estimator.predict_proba(X)[:, 1], dtype=np.float64)


def summary(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, spread and the values of a per-fold score."""
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    return {
        "mean": float(present.mean()) if present.size else None,
        "std": float(present.std()) if present.size else None,
        "per_fold": list(values),
    }


@dataclass(frozen=True, eq=False)
class HeldOut:
    """Every row of X scored by the fold model that did not see it."""

    proba: FloatArray  # P(failure) as the estimator gives it
    response: FloatArray  # what a calibrator reads (training.calibration.calibrator_input)
    fold_of: npt.NDArray[np.intp]  # each row's fold (-1: in no held-out part)
    validation: list[dict[str, float | None]]  # ROC-AUC and PR-AUC of each held-out part
    train: list[dict[str, float | None]] | None  # of each fold's training rows, if asked

    def mean(self, metric: str) -> float:
        """Mean over folds of a held-out ranking metric (0 where a fold had one class)."""
        return float(np.mean([fold[metric] or 0.0 for fold in self.validation]))


def held_out(
    estimator: Any, X: FloatArray, y: IntArray, folds: Folds, train_scores: bool = False
) -> HeldOut:
    """Fit a clone per fold on its training rows (positions in X), score its held-out rows."""
    proba = np.full(len(y), np.nan)
    response = np.full(len(y), np.nan)
    fold_of = np.full(len(y), -1, dtype=np.intp)
    validation, train = [], []
    for index, (fit_rows, held) in enumerate(folds):
        fitted = clone(estimator).fit(X[fit_rows], y[fit_rows])
        proba[held] = positive_proba(fitted, X[held])
        response[held] = calibrator_input(fitted, X[held])
        fold_of[held] = index
        validation.append(ranking_metrics(y[held], proba[held]))
        if train_scores:
            train.append(ranking_metrics(y[fit_rows], positive_proba(fitted, X[fit_rows])))
    return HeldOut(proba, response, fold_of, validation, train if train_scores else None)


def ranking_summary(folds: Sequence[dict[str, float | None]]) -> dict[str, Any]:
    """ROC-AUC and PR-AUC over folds, each with its mean and spread."""
    return {
        "folds": len(folds),
        "roc_auc": summary([f["roc_auc"] for f in folds]),
        "pr_auc": summary([f["pr_auc"] for f in folds]),
    }


def calibration_summary(
    scores: HeldOut, y: IntArray, method: str
) -> tuple[dict[str, Any], FloatArray]:
    """Brier score per fold of the held-out probabilities, before and after cross-fitted
    calibration (each fold calibrated by the other folds' held-out scores), and the ranking
    metrics of the calibrated probabilities; with those probabilities (NaN: never held out)."""
    seen = scores.fold_of >= 0
    after = np.full(len(y), np.nan)
    after[seen] = cross_fitted(method, scores.response[seen], y[seen], scores.fold_of[seen])
    parts = [scores.fold_of == fold for fold in np.unique(scores.fold_of[seen])]
    result = {
        "method": method,
        "brier": {
            "uncalibrated": summary([brier(y[p], scores.proba[p]) for p in parts]),
            "calibrated": summary([brier(y[p], after[p]) for p in parts]),
        },
        **ranking_summary([ranking_metrics(y[p], after[p]) for p in parts]),
    }
    return result, after


@dataclass(frozen=True, eq=False)
class CrossValidation:
    """A pipeline's grouped cross-validation: the JSON summary and the held-out scores."""

    summary: dict[str, Any]
    proba: FloatArray  # held-out P(failure) of the estimator
    calibrated: FloatArray | None  # the same, calibrated by the other folds (with a method)


def cross_validation(
    estimator: Any, X: FloatArray, y: IntArray, folds: Folds, calibration: str | None = None
) -> CrossValidation:
    """Per-fold ROC-AUC and PR-AUC over the given folds, with their mean and spread; with a
    calibration method, also the calibrated probabilities' (see calibration_summary)."""
    scores = held_out(estimator, X, y, folds)
    result = ranking_summary(scores.validation)
    after = None
    if calibration is not None:
        result["calibrated"], after = calibration_summary(scores, y, calibration)
    return CrossValidation(result, scores.proba, after)


def cross_validate(
    estimator: Any, X: FloatArray, y: IntArray, folds: Folds, calibration: str | None = None
) -> dict[str, Any]:
    """The JSON summary of cross_validation()."""
    return cross_validation(estimator, X, y, folds, calibration).summary


def cross_validate_reference(dataset: Dataset, seed: int = 0, folds: int = 5) -> dict[str, Any]:
    """The three reference models of SOURCE.md on the counters, cross-validated on the same
    device folds."""
    splits = grouped_folds(dataset, folds, seed)
    models = {
        "decision_tree_unpruned": decision_tree(seed, None, balanced=False),
        "decision_tree_depth4_balanced": decision_tree(seed, 4),
        "logistic_regression_log1p_balanced": logistic_regression(seed),
    }
    return {
        name: cross_validate(model, dataset.X, dataset.y, splits) for name, model in models.items()
    }
