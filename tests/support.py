"""Helpers shared by the test suites (imported as `support`)."""

import functools
import os
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from model import DEVICE_FEATURES, load_artifact, sha256_hex
from model.history import HistoryFeatures, history_feature_names
from persistence import (
    METRIC_COLUMNS,
    ModelVersion,
    ModelVersionRepository,
    PredictionBlock,
    RequestRecord,
    metadata,
    new_id,
    new_ids,
    session_scope,
    write_records,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
# The public device-failure dataset: FAILCAST_TEST_DATA, else where this workplace keeps it.
REAL_DATA = Path(
    os.environ.get("FAILCAST_TEST_DATA")
    or REPO_ROOT.parent / "shared" / "data" / "device_failure_subset.csv.gz"
)
PG_SKIP = "FAILCAST_TEST_DATABASE_URL is not set: PostgreSQL runs skipped (.ci/run sets it)"


def _worker_database(url: str | None) -> str | None:
    """FAILCAST_TEST_DATABASE_URL, or under pytest-xdist a database of this worker's own beside
    it (`<name>_gw0`, ...: every worker resets and empties its database as it pleases), created
    when missing. .ci/run drops them with its own."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if url is None or not worker:
        return url
    import sqlalchemy as sa

    base = sa.make_url(url)
    name = f"{base.database}_{worker}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        found = connection.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
        if found is None:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


PG_URL = _worker_database(os.environ.get("FAILCAST_TEST_DATABASE_URL"))

# Modules a serving process never needs: the train extra's, scipy (scikit-learn's), pandas.
TRAINING_STACK = ("sklearn", "scipy", "matplotlib", "pandas")
# Prefix of a `python -c` script: a None entry in sys.modules makes `import sklearn` raise
# ModuleNotFoundError as if it were not installed (the dev venv has it).
HIDE_TRAINING_STACK = f"import sys; sys.modules.update(dict.fromkeys({TRAINING_STACK!r}))\n"

needs_real_data = pytest.mark.skipif(
    not REAL_DATA.is_file(), reason=f"real dataset absent: {REAL_DATA} (set FAILCAST_TEST_DATA)"
)

ORIGINAL_EXAMPLE = {
    "metric1": 215630672,
    "metric2": 56,
    "metric3": 0,
    "metric4": 52,
    "metric5": 6,
    "metric6": 407438,
    "metric7": 0,
    "metric9": 7,
}


# Every table of the models, children before the tables they refer to.
TABLES_CHILD_FIRST = tuple(table.name for table in reversed(metadata.sorted_tables))


def empty_tables(engine: Engine) -> None:
    """Delete every row, children first."""
    with engine.begin() as connection:
        for table in TABLES_CHILD_FIRST:
            connection.execute(sa.text(f"DELETE FROM {table}"))


def count_rows(engine: Engine, table: str) -> int:
    """How many rows a table holds."""
    with engine.connect() as connection:
        return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def gql(
    client: Any, query: str, variables: dict | None = None, headers: dict | None = None
) -> dict:
    """POST a GraphQL operation through a test client and return the decoded body."""
    response = client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.json()


DEMO_FLEET = {"devices": 300, "days": 60, "seed": 7}  # what the demo estimator is trained on


@functools.cache
def demo_fleet() -> Any:
    """The synthetic fleet the demo estimator (conftest) is trained on."""
    from training import generate_synthetic

    return generate_synthetic(**DEMO_FLEET)


@functools.cache
def real_dataset() -> Any:
    """The public dataset, read once per session (callers are marked `needs_real_data`)."""
    from training import load_dataset

    return load_dataset(REAL_DATA)


# Every feature model.history makes, the plain counters first.
HISTORY_FEATURES = (*DEVICE_FEATURES, *history_feature_names())


def history_features(
    dataset: Any, names: tuple[str, ...] = HISTORY_FEATURES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, devices) of every row of a dataset, the features `names` as training
    computes them (model.history, each device's rows in date order), rows grouped by device."""
    order = np.lexsort((dataset.dates, dataset.devices))
    devices = dataset.devices[order]
    starts = np.flatnonzero(devices[1:] != devices[:-1]) + 1
    sequences = np.split(dataset.X[order], starts)
    features = np.vstack(HistoryFeatures(names).of_sequences(sequences))
    return features, dataset.y[order], devices


@functools.cache
def real_history() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """history_features of the public dataset, computed once per session."""
    return history_features(real_dataset())


@functools.cache
def lifecycle_facts(artifact: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(input profile, golden set) of an artifact trained on the demo fleet, as training
    stores them: the profile of the fleet's inputs, golden rows scored by scikit-learn."""
    from training.trainer import serving_checks  # the train extra, loaded when first needed

    fleet = demo_fleet()
    predictor = load_artifact(artifact, sha256_hex(artifact))
    columns = [fleet.feature_names.index(name) for name in predictor.feature_names]
    matrix = fleet.X[:, columns]
    return serving_checks(predictor.feature_names, matrix, fleet.y, predictor.reference_proba)


def register_version(
    engine: Engine,
    artifact: bytes,
    version: str = "test-1",
    activate: bool = True,
    *,
    lifecycle: bool = True,
    metrics: dict[str, Any] | None = None,
    algorithm: str = "decision_tree",
    feature_names: Sequence[str] = DEVICE_FEATURES,
    horizon_days: int = 1,
) -> ModelVersion:
    """Register artifact bytes as a model version (as training would).

    With `lifecycle` (an artifact trained on the demo fleet) the version gets the input profile
    and golden set training would store; a deliberately broken artifact is registered without.
    """
    profile, golden = lifecycle_facts(artifact) if lifecycle else (None, None)
    row = ModelVersion(
        version=version,
        algorithm=algorithm,
        params={"max_depth": 4},
        feature_names=list(feature_names),
        threshold=0.5,
        horizon_days=horizon_days,
        metrics={"test": {"pr_auc": 0.5}} if metrics is None else metrics,
        trained_on_synthetic_data=True,
        data_sha256="synthetic:test",
        data_rows=18000,
        data_failures=18,
        data_source="synthetic fleet (tests)",
        artifact_sha256=sha256_hex(artifact),
        artifact=artifact,
        created_at=datetime.now(UTC),
        input_profile=profile,
        golden_set=golden,
    )
    with session_scope(engine) as session:
        repo = ModelVersionRepository(session)
        repo.add(row)
        if activate:
            repo.activate(version)
    return row


@dataclass(frozen=True)
class RealTraining:
    """failcast's training on the real dataset, as `failcast train --data` runs it (once per
    test session: the `real_training` fixture)."""

    outcome: Any  # training.TrainingOutcome
    row: ModelVersion  # the registered version, artifact included (detached)
    seconds: float  # how long train() took, loading the file included


def copy_version(row: ModelVersion, engine: Engine, activate: bool = False) -> ModelVersion:
    """Register a version stored elsewhere (with its artifact) in another database, as is."""
    facts = row.model_dump(exclude={"id", "is_active", "activated_at"})
    copy = ModelVersion(**facts)
    with session_scope(engine) as session:
        repo = ModelVersionRepository(session)
        repo.add(copy)
        if activate:
            repo.activate(row.version)
    return copy


@dataclass(frozen=True)
class Seeded:
    """One stored prediction, as a test seeded it."""

    id: uuid.UUID
    device_id: str | None
    observed_at: datetime
    created_at: datetime
    probability: float
    is_failure: bool
    subject: str | None


def request_record(
    version_id: int,
    rows: Sequence[tuple[str | None, datetime, float]],
    subject: str | None = "seeder",
    created_at: datetime | None = None,
    threshold: float = 0.5,
    metrics: dict[str, list[float]] | None = None,
    effects: Sequence[Any] = (),
) -> RequestRecord:
    """One successful request's audit row and its predictions (device, observed at,
    probability), as the server hands them to `write_records`.

    Their telemetry is `metrics` (a list of values per metric column), else small made-up values.
    """
    event_id, now = new_id(), created_at or datetime.now(UTC)
    block = PredictionBlock(
        audit_event_id=event_id,
        model_version_id=version_id,
        threshold=threshold,
        created_at=now,
        ids=new_ids(len(rows)),
        device_ids=[r[0] for r in rows],
        observed_at=[r[1] for r in rows],
        metrics=metrics or {m: [float(i % 7) for i in range(len(rows))] for m in METRIC_COLUMNS},
        failure_probability=[r[2] for r in rows],
        is_failure=[r[2] >= threshold for r in rows],
    )
    audit = {
        "id": event_id, "received_at": now, "finished_at": now, "duration_ms": 1.0,
        "subject": subject, "http_method": "POST", "http_path": "/graphql", "http_status": 200,
        "outcome": "ok", "error_codes": [], "predictions_created": len(rows),
    }  # fmt: skip
    return RequestRecord(audit=audit, predictions=[block], effects=list(effects))


def contributions_explanation(features: int) -> dict[str, Any]:
    """A CONTRIBUTIONS explanation of `features` features, as model.compiled makes it."""
    return {
        "kind": "CONTRIBUTIONS",
        "score": -3.25,
        "baseValue": -4.0,
        "contributions": [
            {
                "feature": f"metric{i % 9 + 1}_delta_{i}d",
                "value": i * 1.5,
                "contribution": 0.1 / (i + 1),
            }
            for i in range(features)
        ],
    }


def seed_predictions(
    engine: Engine,
    version_id: int,
    rows: list[tuple[str | None, datetime, float]],
    subject: str | None = "seeder",
    created_at: datetime | None = None,
    threshold: float = 0.5,
    metrics: dict[str, list[float]] | None = None,
) -> list[Seeded]:
    """Store predictions (device, observed at, probability) as one request would, in bulk
    (`request_record`)."""
    record = request_record(version_id, rows, subject, created_at, threshold, metrics)
    write_records(engine, [record])
    [block] = record.predictions
    return [
        Seeded(i, r[0], r[1], block.created_at, r[2], r[2] >= threshold, subject)
        for i, r in zip(block.ids, rows, strict=True)
    ]


# What the app's background work sends meanwhile: SQLite's checkpoints, the registry poll,
# heartbeats, sealing, refusal tallies and webhook delivery claims (none of it is a query a
# request made).
_BACKGROUND = re.compile(
    r"^\s*PRAGMA|model_version\.is_active|server_instance|audit_seal|refusal_tally|"
    r"webhook_delivery",
    re.I,
)


def count_statements(engine: Engine, run: Any) -> int:
    """SQL statements `run()` sends through an engine (the app's background work aside)."""
    count = 0

    def counted(_conn: Any, _cursor: Any, statement: str, *args: object) -> None:
        nonlocal count
        count += _BACKGROUND.search(statement) is None

    sa.event.listen(engine, "before_cursor_execute", counted)
    try:
        run()
    finally:
        sa.event.remove(engine, "before_cursor_execute", counted)
    return count


def readme_verify() -> Callable[[str, str, bytes], bool]:
    """The `verify` function of the README's Webhooks section, exactly as documented."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (code,) = [block for block in blocks if "def verify(" in block]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace["verify"]


def predict_now(models: Any, alerts: Any, audit: Any, telemetry: Any, layout: Any = None) -> Any:
    """The predict use case run to completion from plain or async test code (on a loop of its
    own, in a thread), with the device histories of the models' database."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from graph.runtime.histories import DeviceHistories
    from graph.runtime.usecases import Layout, predict

    histories = DeviceHistories(models.engine)
    work = predict(models, histories, alerts, audit, telemetry, layout or Layout.ONE)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()
