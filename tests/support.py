"""Helpers shared by the test suites (imported as `support`)."""

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from model import DEVICE_FEATURES, sha256_hex
from persistence import ModelVersion, ModelVersionRepository, session_scope

REPO_ROOT = Path(__file__).resolve().parents[1]
# The public device-failure dataset: FAILCAST_TEST_DATA, else where this workplace keeps it.
REAL_DATA = Path(
    os.environ.get("FAILCAST_TEST_DATA")
    or REPO_ROOT.parent / "shared" / "data" / "device_failure_subset.csv.gz"
)
PG_URL = os.environ.get("FAILCAST_TEST_DATABASE_URL")
PG_SKIP = "FAILCAST_TEST_DATABASE_URL is not set: PostgreSQL runs skipped (.ci/run sets it)"

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


def register_version(
    engine: Engine, artifact: bytes, version: str = "test-1", activate: bool = True
) -> ModelVersion:
    """Register artifact bytes as a model version (as training would)."""
    row = ModelVersion(
        version=version,
        algorithm="decision_tree",
        params={"max_depth": 4},
        feature_names=list(DEVICE_FEATURES),
        threshold=0.5,
        metrics={"test": {"pr_auc": 0.5}},
        trained_on_synthetic_data=True,
        data_sha256="synthetic:test",
        data_rows=18000,
        data_failures=18,
        data_source="synthetic fleet (tests)",
        artifact_sha256=sha256_hex(artifact),
        artifact=artifact,
        created_at=datetime.now(UTC),
    )
    with session_scope(engine) as session:
        repo = ModelVersionRepository(session)
        repo.add(row)
        if activate:
            repo.activate(version)
    return row
