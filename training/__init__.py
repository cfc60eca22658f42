"""Training: datasets, the synthetic generator, pipelines, evaluation, reports, registration.

Needs the `train` extra (scikit-learn, matplotlib): `pip install 'failcast[train]'`. Serving never
imports this package; the CLI imports it lazily, after checking the extra is there.
"""

from training.dataset import DataFingerprint, Dataset
from training.errors import (
    DataNotFoundError,
    EmptyDatasetError,
    InsufficientDataError,
    InvalidOptionsError,
    MalformedRowError,
    MissingColumnsError,
    NoFailuresError,
    TrainingError,
    UnreadableDataError,
    VersionNotFoundError,
)
from training.estimators import (
    ALGORITHMS,
    DECISION_TREE,
    HIST_GRADIENT_BOOSTING,
    LOGISTIC_REGRESSION,
)
from training.evaluate import evaluate_version
from training.evaluation import cross_validate_reference
from training.loader import load_dataset
from training.options import TrainingOutcome, TrainOptions
from training.synthetic import SyntheticParams, generate_synthetic
from training.trainer import print_progress, train
from training.writer import write_dataset_csv

__all__ = [
    "ALGORITHMS",
    "DECISION_TREE",
    "HIST_GRADIENT_BOOSTING",
    "LOGISTIC_REGRESSION",
    "DataFingerprint",
    "DataNotFoundError",
    "Dataset",
    "EmptyDatasetError",
    "InsufficientDataError",
    "InvalidOptionsError",
    "MalformedRowError",
    "MissingColumnsError",
    "NoFailuresError",
    "SyntheticParams",
    "TrainOptions",
    "TrainingError",
    "TrainingOutcome",
    "UnreadableDataError",
    "VersionNotFoundError",
    "cross_validate_reference",
    "evaluate_version",
    "generate_synthetic",
    "load_dataset",
    "print_progress",
    "train",
    "write_dataset_csv",
]
