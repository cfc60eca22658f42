"""One training experiment, without side effects: label, split, choose, fit, calibrate, evaluate.

Statistical design. Devices are split once (grouped, stratified by failure events, seeded):
~60% training, ~20% validation, ~20% test devices; no device is on two sides, and the split is
the same for every horizon (so 1-day and 7-day versions are tested on the same devices).

- Labels: a row is positive when its device fails within `horizon_days` of it
  (training.labels).
- Features: history features per device (training.features), computed from each device's own
  earlier rows only, so they carry nothing across devices or from the future.
- Choices on the training devices only, by grouped cross-validation (training.selection):
  each algorithm's feature set and hyperparameters (the tree's depth, the boosted model's
  size) and its calibration method (Brier score of cross-fitted calibrators that keep the
  ranking), then the algorithm itself (highest mean cross-validated PR-AUC, a tie within the
  folds' noise going to the blend: training.selection.select), whose features the version
  reads.
- Fit: each candidate is CalibratedClassifierCV(estimator, method, cv=the training devices'
  folds, ensemble=False), fitted on the training devices: the calibrator learns from held-out
  scores, the estimator from every training row.
- Threshold: chosen on the validation devices' calibrated probabilities (max F1, or the
  highest threshold reaching --min-recall). It is a probability, not a point on one fit's raw
  scores, which is what lets the refit below keep it; without cross-validation (cv_folds=0)
  nothing is calibrated, and nothing is refitted either.
- Test: the test devices, untouched until then, score each candidate's fitted estimator and
  threshold once, for the report; nothing is chosen from them.
- Refit (`refit`, the default, when cross-validation ran): the selected pipeline, with its
  chosen features, point and calibration method, is fitted again on every device (training,
  validation and test; the calibrator on grouped folds of all of them) and that is what is
  registered, with the threshold chosen above. With ~100 failures in the public fleet, the
  40% of them the validation and test devices hold are worth more to the served model than to
  the report: on unseen devices the refit pipeline ranks better (bench.quality). The threshold
  carries over because it is a calibrated probability, not a point on one fit's raw scale; the
  test figures are then the estimate of the procedure that made the served model, as in any
  refit-on-everything deployment, and the report says which rows the served model saw.
- Reported beside: grouped cross-validation over all devices of each candidate's pipeline
  (its calibration cross-fitted), and of two reference pipelines (the logistic regression
  without and with the chosen history features), as estimates of the procedure's spread. The
  training devices are part of these folds and made the choices above, so these figures lean
  optimistic; the test devices' are not.

With cv_folds = 0 nothing is cross-validated: the feature set is the option's (or
DEFAULT_FEATURE_SET), each algorithm keeps its default point, nothing is calibrated
(probabilities are the estimator's), and the algorithm is chosen by validation PR-AUC.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from training.calibration import brier, calibrated
from training.dataset import Dataset, IntArray
from training.estimators import (
    LOGISTIC_REGRESSION,
    build_estimator,
    default_point,
    estimator_params,
    logistic_regression,
    may_be_negative,
)
from training.evaluation import CrossValidation, cross_validation, positive_proba
from training.features import COUNTERS, FEATURE_SETS, FeatureTable, depth_of, feature_table
from training.labels import with_horizon
from training.metrics import evaluate_scores
from training.options import TrainOptions
from training.selection import Choice, Search, relative_folds, search, select
from training.splits import DeviceSplit, Folds, grouped_folds, split_devices
from training.thresholds import choose_threshold

Progress = Callable[[str], None]
# Without cross-validation nothing is chosen: the counters, as failcast served before.
DEFAULT_FEATURE_SET = COUNTERS
REFERENCES = ("logistic_regression_counters", "logistic_regression_history")


@dataclass(frozen=True, eq=False)
class Candidate:
    """One fitted algorithm with its features, threshold and held-out scores."""

    algorithm: str
    feature_set: str
    features: FeatureTable  # its features of every row, in dataset order
    estimator: Any  # what is served: calibrated when cross-validation ran
    params: dict[str, Any]
    threshold: float
    validation: dict[str, Any]
    test: dict[str, Any]
    cross_validation: dict[str, Any] | None
    test_proba: npt.NDArray[np.float64]
    choice: Choice | None  # how cross-validation on the training devices chose it
    scores: CrossValidation | None  # its grouped cross-validation over all devices

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The calibration method chosen and the Brier scores that chose it."""
        return None if self.choice is None else self.choice.calibration

    def summary(self) -> dict[str, Any]:
        """JSON-ready metrics of this candidate."""
        return {
            "feature_set": self.feature_set,
            "params": self.params,
            "threshold": self.threshold,
            "validation": self.validation,
            "test": self.test,
            "cross_validation": self.cross_validation,
            "search": None
            if self.choice is None
            else {"pr_auc": self.choice.pr_auc, "grid": self.choice.grid},
            "calibration": self.calibration,
        }


@dataclass(frozen=True, eq=False)
class Experiment:
    """Every candidate of a run, the one selected, and how the choices were made."""

    dataset: Dataset  # labelled for the horizon
    horizon_days: int
    split: DeviceSplit
    search: Search | None
    candidates: dict[str, Candidate]
    selected: str
    threshold_rule: str
    references: dict[str, Any] | None
    # Held-out probabilities of the logistic regression on the counters (balanced classes), the
    # model failcast served before: what failureProbability meant then (the reliability plot).
    before: npt.NDArray[np.float64] | None = None
    # The selected pipeline refitted on every device (`refit`); None: its candidate's fit is served.
    refitted: Any = None
    # How it was selected (training.selection.select): the rule, the best by PR-AUC, the lead.
    selection: dict[str, Any] | None = None

    @property
    def served(self) -> Any:
        """The estimator registered: the refit, else the selected candidate's own."""
        return self.chosen.estimator if self.refitted is None else self.refitted

    @property
    def served_rows(self) -> IntArray:
        """The rows the registered estimator was fitted on (dataset positions)."""
        if self.refitted is None:
            return self.split.train
        return np.arange(len(self.dataset), dtype=np.intp)

    @property
    def chosen(self) -> Candidate:
        """The selected candidate."""
        return self.candidates[self.selected]

    @property
    def features(self) -> FeatureTable:
        """The selected model's features of every row, in dataset order."""
        return self.chosen.features

    @property
    def feature_set(self) -> str:
        """The name of the selected model's feature set."""
        return self.chosen.feature_set

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The columns the selected model reads (its version's feature_names)."""
        return self.chosen.features.names

    @property
    def validation_curve(self) -> list[dict[str, Any]] | None:
        """The tree's grouped cross-validation over depths (train and validation sides)."""
        return None if self.search is None else self.search.validation_curve

    def metrics(self) -> dict[str, Any]:
        """The metrics JSON stored with the model version."""
        chosen = self.chosen
        return {
            "selected": self.selected,
            "selection": self.selection,
            "horizon_days": self.horizon_days,
            "threshold": chosen.threshold,
            "threshold_rule": self.threshold_rule,
            "fitted_on": {
                "devices": "all" if self.refitted is not None else "training",
                "rows": int(self.served_rows.size),
                "devices_count": int(np.unique(self.dataset.devices[self.served_rows]).size),
            },
            "test": chosen.test,
            "validation": chosen.validation,
            "cross_validation": chosen.cross_validation,
            "calibration": chosen.calibration,
            "validation_curve": self.validation_curve,
            "feature_set": {
                "name": self.feature_set,
                "features": list(self.feature_names),
                "depth": depth_of(self.feature_names),
            },
            "feature_sets": None if self.search is None else self.search.feature_sets,
            "references": self.references,
            "candidates": {name: c.summary() for name, c in self.candidates.items()},
        }


def run_experiment(options: TrainOptions, dataset: Dataset, progress: Progress) -> Experiment:
    """Train every candidate algorithm and select one (see the module docstring).

    Every fit runs on one thread (OpenMP and BLAS pools limited to 1): the fits are many and
    small, threads of a fit waiting for each other cost more than they bring when anything
    else runs on the machine (ten times the wall time was measured on a busy two-core one),
    and one thread gives the same bits on every machine."""
    with threadpool_limits(limits=1):
        return _run(options, dataset, progress)


def _run(options: TrainOptions, dataset: Dataset, progress: Progress) -> Experiment:
    progress("splitting devices into train / validation / test")
    split = split_devices(dataset, options.seed)
    labelled = with_horizon(dataset, options.horizon_days)
    sets = _feature_sets(options)
    progress(f"computing history features of {len(sets)} candidate feature set(s)")
    table = feature_table(dataset, list(sets.values()))
    y = labelled.y
    found, folds, all_folds = None, [], None
    if options.cv_folds:
        progress(f"choosing on {options.cv_folds} folds of the training devices")
        # Folds stratified by failure events (not horizon labels): the same for every horizon.
        train_folds = grouped_folds(dataset, options.cv_folds, options.seed, split.train)
        folds = relative_folds(train_folds, split.train)
        found = search(
            FeatureTable(table.names, table.matrix[split.train]),
            y[split.train],
            folds,
            sets,
            options.algorithms(),
            options.seed,
            options.tree_depth(),
            progress,
        )
        all_folds = grouped_folds(dataset, options.cv_folds, options.seed)
    candidates = {}
    for algorithm in options.algorithms():
        choice = None if found is None else found.choices[algorithm]
        name = next(iter(sets)) if choice is None else choice.feature_set
        features = FeatureTable(sets[name], table.columns(sets[name]))
        candidates[algorithm] = _candidate(
            algorithm, name, features, choice, options, y, split, folds, all_folds, progress
        )
    selected, selection = _select(candidates)
    rule = "max_f1" if options.min_recall is None else f"min_recall>={options.min_recall}"
    references, before, refitted = None, None, None
    if all_folds is not None:
        served = candidates[selected].features
        references, before = _references(options, table, served, y, split, all_folds, progress)
        if options.refit:
            refitted = _refit(candidates[selected], options, y, all_folds, progress)
    return Experiment(
        labelled,
        options.horizon_days,
        split,
        found,
        candidates,
        selected,
        rule,
        references,
        before,
        refitted,
        selection,
    )


def _refit(
    candidate: "Candidate", options: TrainOptions, y: IntArray, all_folds: Folds, progress: Progress
) -> Any:
    """The candidate's pipeline (features, point, calibration method) fitted on every row, its
    calibrator on the grouped folds of all devices."""
    assert candidate.choice is not None  # cross-validation ran
    choice = candidate.choice
    names = candidate.features.names
    estimator = build_estimator(candidate.algorithm, options.seed, choice.point, names)
    served = calibrated(estimator, choice.calibration["method"], all_folds)
    progress(f"refitting {candidate.algorithm} on all {y.size} rows of every device")
    return served.fit(candidate.features.matrix, y)


def _feature_sets(options: TrainOptions) -> dict[str, tuple[str, ...]]:
    """The sets cross-validation chooses from; one set when nothing is cross-validated."""
    if options.feature_set is not None:
        return {options.feature_set: FEATURE_SETS[options.feature_set]}
    if not options.cv_folds:
        return {DEFAULT_FEATURE_SET: FEATURE_SETS[DEFAULT_FEATURE_SET]}
    return dict(FEATURE_SETS)


def _select(candidates: dict[str, Candidate]) -> tuple[str, dict[str, Any]]:
    """training.selection.select over the cross-validated choices; without cross-validation,
    the highest validation PR-AUC."""
    choices = {name: c.choice for name, c in candidates.items() if c.choice is not None}
    if len(choices) == len(candidates):
        return select(choices)

    # max() keeps the first of equal scores: candidates are in ALGORITHMS order.
    def score(name: str) -> float:
        return float(candidates[name].validation["pr_auc"] or 0.0)

    best = max(candidates, key=score)
    return best, {"rule": "highest validation PR-AUC", "best": best, "selected": best}


def _candidate(
    algorithm: str,
    feature_set: str,
    features: FeatureTable,
    choice: Choice | None,
    options: TrainOptions,
    y: IntArray,
    split: DeviceSplit,
    folds: Folds,
    all_folds: Folds | None,
    progress: Progress,
) -> Candidate:
    X = features.matrix
    point = default_point(algorithm, options.tree_depth()) if choice is None else choice.point
    method = None if choice is None else choice.calibration["method"]
    estimator = build_estimator(algorithm, options.seed, point, features.names)
    served = estimator if method is None else calibrated(estimator, method, folds)
    progress(f"fitting {algorithm} on {split.train.size} training rows")
    served.fit(X[split.train], y[split.train])
    val_p = positive_proba(served, X[split.validation])
    threshold = choose_threshold(y[split.validation], val_p, options.min_recall)
    test_p = positive_proba(served, X[split.test])
    validation = evaluate_scores(y[split.validation], val_p, threshold)
    validation["brier"] = brier(y[split.validation], val_p)
    test = evaluate_scores(y[split.test], test_p, threshold)
    test["brier"] = brier(y[split.test], test_p)
    cv = None
    if all_folds is not None:
        progress(f"cross-validating {algorithm} over {len(all_folds)} folds of all devices")
        cv = cross_validation(estimator, X, y, all_folds, method)
    if method is not None:
        raw = served.calibrated_classifiers_[0].estimator  # fitted on every training row
        test["brier_uncalibrated"] = brier(y[split.test], positive_proba(raw, X[split.test]))
    params = {
        **estimator_params(algorithm, options.seed, point, features.names),
        "calibration": method,
    }
    return Candidate(
        algorithm,
        feature_set,
        features,
        served,
        params,
        threshold,
        validation,
        test,
        None if cv is None else cv.summary,
        test_p,
        choice,
        cv,
    )


def _references(
    options: TrainOptions,
    table: FeatureTable,
    served: FeatureTable,
    y: IntArray,
    split: DeviceSplit,
    all_folds: Folds,
    progress: Progress,
) -> tuple[dict[str, Any], npt.NDArray[np.float64]]:
    """The logistic regression on the counters (failcast's model before history features) and
    on the selected model's features, uncalibrated as it was served: grouped CV over all
    devices, and fitted on the training devices, thresholded on the validation devices, tested.
    With the first one's held-out probabilities."""
    progress("cross-validating the reference pipelines")
    result, held = {}, []
    counters = FEATURE_SETS[COUNTERS]
    for name, names in zip(REFERENCES, (counters, served.names), strict=True):
        X = table.columns(names)
        signed = may_be_negative(names)
        model = logistic_regression(options.seed, signed).fit(X[split.train], y[split.train])
        val_p = positive_proba(model, X[split.validation])
        threshold = choose_threshold(y[split.validation], val_p, options.min_recall)
        test_p = positive_proba(model, X[split.test])
        cv = cross_validation(logistic_regression(options.seed, signed), X, y, all_folds)
        held.append(cv.proba)
        result[name] = {
            "algorithm": LOGISTIC_REGRESSION,
            "features": list(names),
            "cross_validation": cv.summary,
            "test": {
                **evaluate_scores(y[split.test], test_p, threshold),
                "brier": brier(y[split.test], test_p),
            },
        }
    return result, held[0]
