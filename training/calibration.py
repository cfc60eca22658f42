"""Calibrated probabilities: isotonic or sigmoid, chosen by Brier score on grouped folds.

The served estimator is `CalibratedClassifierCV(estimator, method, cv=<grouped folds of the
training devices>, ensemble=False)`: scikit-learn predicts every training row out of fold with
those folds, fits the calibrator on these held-out scores, and refits the estimator on all the
training rows. So the calibrator never sees a score of a device the model was fitted on.

The method is chosen from the same kind of held-out scores, before that fit: the grouped
cross-validation that chose the estimator left a held-out score for every training row; each
method is cross-fitted on them (the calibrator fitted on the other folds' scores, applied to
this fold's) and, of the methods that keep the ranking, the one with the lower Brier score wins
(sigmoid on a tie). A method keeps the ranking when its held-out probabilities' mean per-fold
ROC-AUC and PR-AUC are each at least the uncalibrated scores' (less RANKING_TOLERANCE).
Sigmoid, strictly increasing, always does; isotonic regression is a step function, and with
the few failures of a fleet it has a few dozen steps: on the public data it merged a blend's
41,000 distinct scores into 19 to 31 values, and its lower Brier score came with a test PR-AUC
of 0.092 where the scores it merged ranked at 0.145. failcast's users rank devices by
failureProbability (devicesAtRisk, alerts, thresholds), so calibration may rescale the order
the model learned, never blur it. When no method keeps it (a decreasing sigmoid), the lower
Brier score decides. The calibrators are the ones CalibratedClassifierCV itself fits, on the
same input (the estimator's decision_function where it has one, else its probability).
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.calibration import CalibratedClassifierCV
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss

from training.dataset import FloatArray, IntArray
from training.metrics import ranking_metrics

SIGMOID = "sigmoid"
ISOTONIC = "isotonic"
METHODS: tuple[str, ...] = (SIGMOID, ISOTONIC)
# How much of the held-out ranking (mean per-fold ROC-AUC and PR-AUC) a method may lose: float
# noise, not a trade of ranking for Brier score.
RANKING_TOLERANCE = 1e-3


def calibrator_input(estimator: Any, X: FloatArray) -> FloatArray:
    """What CalibratedClassifierCV calibrates: decision_function, else P(class 1)."""
    if hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(X), dtype=np.float64)
    return np.asarray(estimator.predict_proba(X)[:, 1], dtype=np.float64)


def _calibrator(method: str) -> Any:
    if method == ISOTONIC:
        return IsotonicRegression(out_of_bounds="clip")
    # The sigmoid (Platt) calibrator CalibratedClassifierCV fits, with its target smoothing;
    # scikit-learn keeps it private, so it is imported where it is defined.
    from sklearn.calibration import _SigmoidCalibration

    return _SigmoidCalibration()


def cross_fitted(
    method: str, scores: FloatArray, y: IntArray, fold_of: npt.NDArray[np.intp]
) -> FloatArray:
    """Calibrated probabilities of held-out scores: those of fold j by a calibrator fitted on
    the other folds' (`fold_of`: each row's fold)."""
    out = np.empty_like(scores)
    for fold in np.unique(fold_of):
        held = fold_of == fold
        calibrator = _calibrator(method).fit(scores[~held], y[~held])
        out[held] = np.clip(calibrator.predict(scores[held]), 0.0, 1.0)
    return out


def brier(y: IntArray, proba: FloatArray) -> float:
    """Mean squared difference between P(failure) and the outcome (lower is better)."""
    return float(brier_score_loss(y, proba))


def choose_method(
    scores: FloatArray, proba: FloatArray, y: IntArray, fold_of: npt.NDArray[np.intp]
) -> dict[str, Any]:
    """Of the methods that keep the held-out ranking, the one with the lower cross-fitted Brier
    score (see the module docstring); with the Brier scores and the mean per-fold ranking
    metrics of each method and of the uncalibrated probabilities `proba`, and which methods
    kept the ranking."""
    probabilities = {method: cross_fitted(method, scores, y, fold_of) for method in METHODS}
    scored = {method: brier(y, p) for method, p in probabilities.items()}
    before = fold_ranking(scores, y, fold_of)
    ranking = {method: fold_ranking(p, y, fold_of) for method, p in probabilities.items()}
    keeps = [
        method
        for method in METHODS
        if all(ranking[method][k] >= before[k] - RANKING_TOLERANCE for k in before)
    ]
    # min() keeps the first of equal scores: sigmoid.
    method = min(keeps or METHODS, key=lambda m: scored[m])
    return {
        "method": method,
        "brier": {"uncalibrated": brier(y, proba), **scored},
        "ranking": {"uncalibrated": before, **ranking},
        "keeps_ranking": keeps,
    }


def fold_ranking(proba: FloatArray, y: IntArray, fold_of: npt.NDArray[np.intp]) -> dict[str, float]:
    """Mean over held-out folds (`fold_of` >= 0) of ROC-AUC and PR-AUC (0 where a fold has one
    class), as training.evaluation.HeldOut.mean takes them."""
    folds = [
        ranking_metrics(y[fold_of == f], proba[fold_of == f]) for f in np.unique(fold_of) if f >= 0
    ]
    return {k: float(np.mean([f[k] or 0.0 for f in folds])) for k in ("roc_auc", "pr_auc")}


def calibrated(estimator: Any, method: str, folds: Sequence[tuple[Any, Any]]) -> Any:
    """The estimator calibrated on held-out scores of `folds` (positions in what it is fitted
    on), refitted on all of it: one estimator and one calibrator."""
    # int32 positions: the folds are pickled with the estimator (its `cv`), half the bytes.
    splits = [(np.asarray(a, np.int32), np.asarray(b, np.int32)) for a, b in folds]
    return CalibratedClassifierCV(estimator, method=method, cv=splits, ensemble=False)
