"""Registering a trained model as a new model version (one unit of work)."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from persistence import ModelVersion, ModelVersionRepository, session_scope
from training.dataset import DataFingerprint

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class VersionRecord:
    """Everything stored about a version except its name, which the registry assigns."""

    algorithm: str
    params: dict[str, Any]
    feature_names: tuple[str, ...]
    threshold: float
    horizon_days: int  # a row is a failure when its device fails within this many days
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    fingerprint: DataFingerprint
    synthetic: bool
    artifact: bytes
    artifact_sha256: str
    input_profile: dict[str, Any] | None = None  # model.profile.build_profile of training rows
    golden_set: dict[str, Any] | None = None  # model.golden.build_golden_set

    def to_json(self, version: str) -> dict[str, Any]:
        """The record as JSON (without the artifact bytes), for the report."""
        return {
            "version": version,
            "algorithm": self.algorithm,
            "params": self.params,
            "feature_names": list(self.feature_names),
            "threshold": self.threshold,
            "horizon_days": self.horizon_days,
            "metrics": self.metrics,
            "lineage": self.lineage,
            "data": self.fingerprint.to_json(),
            "trained_on_synthetic_data": self.synthetic,
            "artifact_sha256": self.artifact_sha256,
        }

    def to_model(self, version: str) -> ModelVersion:
        """The registry row."""
        data = self.fingerprint
        return ModelVersion(
            version=version,
            algorithm=self.algorithm,
            params=self.params,
            feature_names=list(self.feature_names),
            threshold=self.threshold,
            horizon_days=self.horizon_days,
            metrics=self.metrics,
            trained_on_synthetic_data=self.synthetic,
            data_sha256=data.sha256,
            data_rows=data.rows,
            data_failures=data.failures,
            data_date_from=data.date_from,
            data_date_to=data.date_to,
            data_source=data.source[:255],
            lineage=self.lineage,
            artifact=self.artifact,
            artifact_sha256=self.artifact_sha256,
            input_profile=self.input_profile,
            golden_set=self.golden_set,
            created_at=datetime.now(UTC),
        )


def register_version(
    engine: Engine, record: VersionRecord, activate: bool, on_named: Callable[[str], T]
) -> tuple[str, T]:
    """Add the version (and activate it if asked) in one commit.

    `on_named(version)` runs once the name is known and before the commit, so that work
    depending on the name (the report) failing leaves nothing registered.
    """
    with session_scope(engine) as session:
        repo = ModelVersionRepository(session)
        version = repo.next_version_name()
        named = on_named(version)
        repo.add(record.to_model(version))
        if activate:
            repo.activate(version, via="train", reason="activated when trained")
    return version, named
