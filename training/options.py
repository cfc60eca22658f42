"""What a training run is asked to do, and what it produced."""

from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from training.errors import InvalidOptionsError
from training.estimators import ALGORITHMS, DECISION_TREE, DEFAULT_TREE_DEPTH
from training.features import FEATURE_SETS
from training.labels import DEFAULT_HORIZON_DAYS, MAX_HORIZON_DAYS


@dataclass(frozen=True)
class TrainOptions:
    """Options of one training run: a data file, the service's database, or synthetic data.

    With `from_database` the rows are the stored predictions and outcomes of the database
    training registers into (training/database.py), observed in [date_from, date_to) (days,
    00:00 UTC; None: unbounded); with neither it and `data_path`, the synthetic generator.
    """

    data_path: Path | None = None
    from_database: bool = False
    date_from: date | None = None
    date_to: date | None = None
    algorithm: str | None = None  # None: train every algorithm, keep the best (see experiment)
    seed: int = 0
    min_recall: float | None = None  # None: threshold maximises validation F1
    max_depth: int | None = None  # decision tree only; None: chosen by cross-validation
    horizon_days: int = DEFAULT_HORIZON_DAYS  # positive: the device fails within this many days
    feature_set: str | None = None  # a name of FEATURE_SETS; None: chosen by cross-validation
    activate: bool = False
    report_dir: Path = Path("artifacts")
    synthetic_devices: int = 600
    synthetic_days: int = 120
    cv_folds: int = 5  # 0: no cross-validation, no calibration (see training.experiment)
    validation_curve: bool = True  # search the tree's depth (False: max_depth, or 4)
    refit: bool = True  # serve the selected pipeline refitted on every device (see experiment)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings), for lineage."""
        data = asdict(self)
        data["data_path"] = None if self.data_path is None else str(self.data_path)
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            data[name] = None if value is None else value.isoformat()
        data["report_dir"] = str(self.report_dir)
        return data

    def algorithms(self) -> tuple[str, ...]:
        """The candidate algorithms this run trains."""
        return ALGORITHMS if self.algorithm is None else (self.algorithm,)

    def tree_depth(self) -> int | None:
        """The decision tree's fixed depth, or None when cross-validation searches it."""
        if self.max_depth is None and not self.validation_curve:
            return DEFAULT_TREE_DEPTH
        return self.max_depth


@dataclass(frozen=True)
class TrainingOutcome:
    """The registered version; `report_path` is its report.json (plots and model beside it)."""

    version: str
    algorithm: str
    threshold: float
    metrics: dict[str, Any]
    report_path: Path
    activated: bool
    trained_on_synthetic_data: bool


def validate_options(options: TrainOptions) -> None:
    """Reject inconsistent options before any work is done."""
    problems = [message for broken, message in _rules(options) if broken]
    if problems:
        raise InvalidOptionsError("; ".join(problems))


def _rules(o: TrainOptions) -> list[tuple[bool, str]]:
    window = o.date_from is not None or o.date_to is not None
    return [
        (
            o.from_database and o.data_path is not None,
            "data_path and from_database exclude each other",
        ),
        (window and not o.from_database, "date_from and date_to apply to from_database only"),
        (
            o.date_from is not None and o.date_to is not None and o.date_from >= o.date_to,
            f"date_from {o.date_from} must be before date_to {o.date_to}",
        ),
        (
            o.algorithm is not None and o.algorithm not in ALGORITHMS,
            f"algorithm must be one of {', '.join(ALGORITHMS)}",
        ),
        (
            o.min_recall is not None and not 0.0 < o.min_recall <= 1.0,
            "min_recall must be in (0, 1]",
        ),
        (o.max_depth is not None and o.max_depth < 1, "max_depth must be >= 1"),
        (
            o.max_depth is not None and o.algorithm not in (None, DECISION_TREE),
            "max_depth applies to decision_tree only",
        ),
        (
            not 1 <= o.horizon_days <= MAX_HORIZON_DAYS,
            f"horizon_days must be between 1 and {MAX_HORIZON_DAYS}",
        ),
        (
            o.feature_set is not None and o.feature_set not in FEATURE_SETS,
            f"feature_set must be one of {', '.join(FEATURE_SETS)}",
        ),
        (o.cv_folds == 1 or o.cv_folds < 0, "cv_folds must be 0 (skip) or >= 2"),
        (
            o.synthetic_devices < 2 or o.synthetic_days < 2,
            "synthetic data needs at least 2 devices and 2 days",
        ),
    ]
