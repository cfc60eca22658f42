"""Scoring a registered model version on a dataset (for `failcast evaluate`)."""

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from model import Predictor, load_artifact
from persistence import ModelVersionRepository, NotFound, session_scope
from training.dataset import Dataset
from training.errors import InvalidOptionsError, VersionNotFoundError
from training.loader import load_dataset
from training.metrics import evaluate_scores
from training.synthetic import generate_synthetic


def evaluate_version(
    engine: Engine, version: str, data_path: Path | None = None, *, synthetic_seed: int = 1
) -> dict[str, Any]:
    """Score a registered version on a data file (or a fresh synthetic fleet) at its threshold."""
    predictor, data_sha256 = _load_version(engine, version)
    dataset = load_dataset(data_path) if data_path else generate_synthetic(seed=synthetic_seed)
    proba = predictor.predict_proba(_matrix(dataset, predictor))
    return {
        "version": version,
        "algorithm": predictor.algorithm,
        "threshold": predictor.threshold,
        "data": {**dataset.fingerprint.to_json(), "synthetic": dataset.synthetic},
        # Scores on the training data itself are optimistic; say so instead of hiding it.
        "same_data_as_training": dataset.fingerprint.sha256 == data_sha256,
        "metrics": evaluate_scores(dataset.y, proba, predictor.threshold),
    }


def _load_version(engine: Engine, version: str) -> tuple[Predictor, str]:
    with session_scope(engine) as session:
        try:
            row = ModelVersionRepository(session).get(version, with_artifact=True)
        except NotFound as exc:
            raise VersionNotFoundError(f"no model version {version!r}") from exc
        artifact, sha256, data_sha256 = row.artifact, row.artifact_sha256, row.data_sha256
    return load_artifact(artifact, sha256), data_sha256


def _matrix(dataset: Dataset, predictor: Predictor) -> np.ndarray:
    # Arrange columns by name: the model's feature order is its own, not the loader's.
    missing = [n for n in predictor.feature_names if n not in dataset.feature_names]
    if missing:
        raise InvalidOptionsError(f"the data lacks the model's features: {', '.join(missing)}")
    columns = [dataset.feature_names.index(n) for n in predictor.feature_names]
    return np.ascontiguousarray(dataset.X[:, columns])
