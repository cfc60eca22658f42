"""Scoring a registered model version on a dataset (`failcast evaluate`), and the gate.

`evaluate_version` scores a data file (or a fresh synthetic fleet) with a stored version at its
threshold. The rows are labelled for the version's horizon (a failure within `horizon_days`)
and given the history features the version reads, computed from each device's rows as
training computes them. With `held_out`, only the version's own test devices are scored: the
file must be the version's training data (same sha256), and the split is made again from the
seed in its lineage (training.splits.split_devices is deterministic), so the figures are the
training report's test figures, reproduced by the stored artifact. A version refitted on every
device (the default of `failcast train`) has no held-out devices left, and `held_out` is refused
for it: its test figures belong to the fit that preceded the refit (score it on new data).

With a `tolerance`, the scores are also held to the version's training test-set figures by the
rule of model.performance (recall and precision may not fall more than `tolerance` below them),
and the run is stored as a `model_evaluation` row, passed or not, with its findings. A version
without test-set precision or recall cannot be held to anything, and does not pass.
"""

import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import Engine

from model import Predictor, load_artifact
from model.performance import COMPARED, comparable, compare_with_training
from persistence import ModelEvaluation, ModelVersionRepository, NotFound, session_scope
from persistence.evaluations import add_evaluation
from training.dataset import Dataset
from training.errors import InvalidOptionsError, VersionNotFoundError
from training.features import history_matrix
from training.labels import with_horizon
from training.loader import load_dataset
from training.metrics import evaluate_scores
from training.splits import split_devices
from training.synthetic import generate_synthetic


@dataclass(frozen=True)
class _Stored:
    """What evaluation needs of a registered version."""

    id: int
    predictor: Predictor
    data_sha256: str
    seed: int | None
    test: dict[str, Any]
    horizon_days: int
    refitted: bool  # fitted on every device of its data once its test devices were scored


def evaluate_version(
    engine: Engine,
    version: str,
    data_path: Path | None = None,
    *,
    synthetic_seed: int = 1,
    held_out: bool = False,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """Score a registered version on a data file (or a fresh synthetic fleet) at its threshold.

    With a `tolerance`, the scores are also gated and the run stored (the result's "gate").
    """
    stored = _load_version(engine, version)
    predictor = stored.predictor
    dataset = load_dataset(data_path) if data_path else generate_synthetic(seed=synthetic_seed)
    same_data = dataset.fingerprint.sha256 == stored.data_sha256
    # Features first, on every row: a device's history is its own rows, all of them.
    matrix = history_matrix(dataset, predictor.feature_names)
    labelled = with_horizon(dataset, stored.horizon_days)
    rows = _held_out(dataset, stored, same_data) if held_out else np.arange(len(dataset))
    scored = labelled.subset(rows)
    proba = predictor.predict_proba(np.ascontiguousarray(matrix[rows]))
    result = {
        "version": version,
        "algorithm": predictor.algorithm,
        "threshold": predictor.threshold,
        "horizon_days": stored.horizon_days,
        "data": {**dataset.fingerprint.to_json(), "synthetic": dataset.synthetic},
        # Scores on the training data itself are optimistic; say so instead of hiding it.
        "same_data_as_training": same_data,
        "held_out": held_out,
        "metrics": evaluate_scores(scored.y, proba, predictor.threshold),
    }
    if tolerance is not None:
        result["gate"] = _gate(engine, stored, result, tolerance)
    return result


def _gate(
    engine: Engine, stored: "_Stored", result: dict[str, Any], tolerance: float
) -> dict[str, Any]:
    """Hold an evaluation to the version's training test-set figures and store the run."""
    metrics = result["metrics"]
    if comparable(stored.test):
        findings = compare_with_training(metrics, stored.test, tolerance)
    else:
        findings = ["the version has no training test-set precision or recall to compare with"]
    data = result["data"]
    source = data["source"]
    if result["held_out"]:
        source = f"{source} (held-out test devices, seed {stored.seed})"
    row = ModelEvaluation(
        model_version_id=stored.id,
        evaluated_at=datetime.now(UTC),
        data_source=source[:255],
        data_sha256=data["sha256"],
        data_rows=metrics["rows"],
        data_failures=metrics["failures"],
        same_data_as_training=result["same_data_as_training"],
        metrics=metrics,
        tolerance=tolerance,
        passed=not findings,
        findings=findings,
        hostname=socket.gethostname()[:255],
    )
    with session_scope(engine) as session:
        evaluation_id = add_evaluation(session, row).id
    return {
        "evaluation_id": evaluation_id,
        "tolerance": tolerance,
        "passed": not findings,
        "findings": findings,
        "training": {name: stored.test.get(name) for name in COMPARED},
    }


def _load_version(engine: Engine, version: str) -> _Stored:
    with session_scope(engine) as session:
        try:
            row = ModelVersionRepository(session).get(version, with_artifact=True)
        except NotFound as exc:
            raise VersionNotFoundError(f"no model version {version!r}") from exc
        seed = (row.lineage or {}).get("seed")
        refitted = bool((row.lineage or {}).get("refit_on_all_devices"))
        test = (row.metrics or {}).get("test")
        assert row.id is not None
        facts = (row.id, row.artifact, row.artifact_sha256, row.data_sha256, row.horizon_days)
    version_id, artifact, sha256, data_sha256, horizon_days = facts
    return _Stored(
        version_id,
        load_artifact(artifact, sha256),
        data_sha256,
        seed if isinstance(seed, int) else None,
        test if isinstance(test, dict) else {},
        horizon_days,
        refitted,
    )


def _held_out(dataset: Dataset, stored: _Stored, same_data: bool) -> npt.NDArray[np.intp]:
    """The rows of the version's test devices, split again as training split them."""
    if stored.refitted:
        raise InvalidOptionsError(
            "--held-out scores the version's own test devices, and this version was refitted on "
            "every device of its data (none is held out): score it on data it has not seen, or "
            "train with --no-refit to keep its test devices held out"
        )
    if not same_data:
        raise InvalidOptionsError(
            "--held-out scores the version's own test devices: the data must be the file it "
            f"was trained on (sha256 {stored.data_sha256})"
        )
    if stored.seed is None:
        raise InvalidOptionsError(
            "--held-out needs the training seed; the version's lineage has none"
        )
    return split_devices(dataset, stored.seed).test
