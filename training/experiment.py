"""One training experiment, without side effects: split, fit, choose thresholds, evaluate.

Statistical design (why the served model is *not* refit on train + validation devices):
the threshold is a property of one fitted estimator's scores. A balanced tree's leaf
probabilities, and so its F1-optimal cut, move between fits on different devices, and with
~100 failures in the whole fleet a carried-over threshold would be miscalibrated in a way no
held-out set measured. So the estimator is fitted once on the training devices, its threshold
is chosen on the validation devices, the algorithm is chosen on validation PR-AUC, and the test
devices, untouched until then, score exactly the estimator and threshold that are registered.
Cross-validation (all devices, grouped and stratified) is reported beside, as the estimate of
the procedure's variance; nothing is chosen from it or from the test set.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from training.dataset import Dataset
from training.estimators import DECISION_TREE, build_estimator, estimator_params
from training.evaluation import cross_validate, positive_proba, validation_curve
from training.metrics import evaluate_scores
from training.options import TrainOptions
from training.splits import DeviceSplit, Folds, grouped_folds, split_devices
from training.thresholds import choose_threshold

Progress = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class Candidate:
    """One fitted algorithm with its threshold and held-out scores."""

    algorithm: str
    estimator: Any
    params: dict[str, Any]
    threshold: float
    validation: dict[str, Any]
    test: dict[str, Any]
    cross_validation: dict[str, Any] | None
    test_proba: npt.NDArray[np.float64]

    def summary(self) -> dict[str, Any]:
        """JSON-ready metrics of this candidate."""
        return {
            "params": self.params,
            "threshold": self.threshold,
            "validation": self.validation,
            "test": self.test,
            "cross_validation": self.cross_validation,
        }


@dataclass(frozen=True, eq=False)
class Experiment:
    """Every candidate of a run, the one selected, and the tree-depth validation curve."""

    dataset: Dataset
    split: DeviceSplit
    candidates: dict[str, Candidate]
    selected: str
    validation_curve: list[dict[str, Any]] | None
    threshold_rule: str

    @property
    def chosen(self) -> Candidate:
        """The selected candidate."""
        return self.candidates[self.selected]

    def metrics(self) -> dict[str, Any]:
        """The metrics JSON stored with the model version."""
        chosen = self.chosen
        return {
            "selected": self.selected,
            "selection": "highest validation PR-AUC",
            "threshold": chosen.threshold,
            "threshold_rule": self.threshold_rule,
            "test": chosen.test,
            "validation": chosen.validation,
            "cross_validation": chosen.cross_validation,
            "validation_curve": self.validation_curve,
            "candidates": {name: c.summary() for name, c in self.candidates.items()},
        }


def run_experiment(options: TrainOptions, dataset: Dataset, progress: Progress) -> Experiment:
    """Train every candidate algorithm and select one (see the module docstring)."""
    progress("splitting devices into train / validation / test")
    split = split_devices(dataset, options.seed)
    folds = _cv_folds(options, dataset, progress)
    candidates = {
        name: _candidate(name, options, dataset, split, folds, progress)
        for name in options.algorithms()
    }
    # max() keeps the first of equal scores: candidates are in ALGORITHMS order.
    selected = max(candidates, key=lambda name: candidates[name].validation["pr_auc"] or 0.0)
    curve = _curve(options, dataset, split, progress) if DECISION_TREE in candidates else None
    rule = "max_f1" if options.min_recall is None else f"min_recall>={options.min_recall}"
    return Experiment(dataset, split, candidates, selected, curve, rule)


def _cv_folds(options: TrainOptions, dataset: Dataset, progress: Progress) -> Folds | None:
    if options.cv_folds == 0:
        return None
    progress(f"building {options.cv_folds} cross-validation folds grouped by device")
    return grouped_folds(dataset, options.cv_folds, options.seed)


def _candidate(
    algorithm: str,
    options: TrainOptions,
    dataset: Dataset,
    split: DeviceSplit,
    folds: Folds | None,
    progress: Progress,
) -> Candidate:
    depth = options.max_depth if algorithm == DECISION_TREE else None
    estimator = build_estimator(algorithm, options.seed, depth)
    progress(f"fitting {algorithm} on {split.train.size} training rows")
    estimator.fit(dataset.X[split.train], dataset.y[split.train])
    val_y, val_p = _scores(estimator, dataset, split.validation)
    threshold = choose_threshold(val_y, val_p, options.min_recall)
    test_y, test_p = _scores(estimator, dataset, split.test)
    cv = None
    if folds is not None:
        progress(f"cross-validating {algorithm} over {len(folds)} device folds")
        cv = cross_validate(build_estimator(algorithm, options.seed, depth), dataset, folds)
    return Candidate(
        algorithm,
        estimator,
        estimator_params(algorithm, options.seed, depth),
        threshold,
        evaluate_scores(val_y, val_p, threshold),
        evaluate_scores(test_y, test_p, threshold),
        cv,
        test_p,
    )


def _scores(
    estimator: Any, dataset: Dataset, rows: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    return dataset.y[rows], positive_proba(estimator, dataset.X[rows])


def _curve(
    options: TrainOptions, dataset: Dataset, split: DeviceSplit, progress: Progress
) -> list[dict[str, Any]] | None:
    if not options.validation_curve:
        return None
    # Cross-validate over the development devices (the test devices stay untouched); without
    # folds, fall back to the one train/validation split.
    development = np.sort(np.concatenate([split.train, split.validation]))
    folds = (
        grouped_folds(dataset, options.cv_folds, options.seed, development)
        if options.cv_folds
        else [(split.train, split.validation)]
    )
    return validation_curve(dataset, folds, options.seed, progress=progress)
