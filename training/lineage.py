"""Where a model version came from: seed, options, library versions, data and split sizes."""

import platform
from importlib import metadata
from typing import Any

from training.dataset import Dataset
from training.experiment import Experiment
from training.options import TrainOptions

_PACKAGES = ("failcast", "scikit-learn", "numpy", "joblib")


def package_version(name: str) -> str:
    """Installed version of a distribution, or "unknown" when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"  # e.g. failcast run from a source checkout without installation


def build_lineage(options: TrainOptions, experiment: Experiment) -> dict[str, Any]:
    """The lineage JSON stored with the model version."""
    dataset = experiment.dataset
    # "data" holds the fingerprint; read from the service's database, its "database" entry
    # says which rows: the window, counts, duplicates dropped and the rows' digest.
    return {
        "seed": options.seed,
        "options": options.to_json(),
        "versions": {
            "python": platform.python_version(),
            **{name: package_version(name) for name in _PACKAGES},
        },
        "data": {**dataset.fingerprint.to_json(), "synthetic": dataset.synthetic},
        "data_origin": _origin(dataset),
        "features": list(experiment.feature_names),
        "feature_set": experiment.feature_set,
        "horizon_days": experiment.horizon_days,
        "splits": experiment.split.sizes(dataset),
        "split_method": "StratifiedGroupKFold by device: 1/5 test, then 1/4 of the rest validation",
        "refit_on_validation": False,
        # True: the registered estimator was fitted on every device once the test was scored
        "refit_on_all_devices": experiment.refitted is not None,
    }


def _origin(dataset: Dataset) -> str:
    """Where the rows came from: "database", "synthetic" or "file"."""
    if dataset.fingerprint.database is not None:
        return "database"
    return "synthetic" if dataset.synthetic else "file"
