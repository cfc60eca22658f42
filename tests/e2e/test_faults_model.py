"""A real uvicorn whose registry gets a corrupted model activated: the previous one keeps serving,
and the server still follows the next (good) activation.

The in-process versions live in test_service_faults.py; this one runs the registry poller as it
runs in production, in a uvicorn process polling every 0.2 s.
"""

import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from servers import Server, make_token, run_server
from support import ORIGINAL_EXAMPLE, register_version

from model import DEVICE_FEATURES, ArtifactMetadata, dump_artifact
from persistence import is_sqlite

ENV = {"FAILCAST_MODEL_REFRESH_SECONDS": "0.2", "FAILCAST_LOG_LEVEL": "warning"}
POLLS_S = 1.0  # five polls
FOLLOW_S = 3.0  # a good activation is served within this
PREDICT = "mutation P($i: PredictInput!) { predict(input: $i) { id modelVersion { version } } }"


@pytest.fixture
def sqlite_url(db_url: str) -> str:
    """The registry poller does not depend on the backend: one (the cheaper) is enough."""
    if not is_sqlite(db_url):
        pytest.skip("model corruption is backend-independent; run once, on SQLite")
    return db_url


def _altered(engine, artifact: bytes) -> None:
    """Bytes changed after registration: the digest no longer matches."""
    register_version(engine, artifact, "broken")
    altered = bytearray(artifact)
    altered[100] ^= 0x01
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE model_version SET artifact = :a WHERE version = 'broken'"),
            {"a": bytes(altered)},
        )


def _truncated(engine, artifact: bytes) -> None:
    """A truncated artifact registered with its own digest (a broken upload or training job)."""
    register_version(engine, artifact[: len(artifact) // 2], "broken", lifecycle=False)


def _serving(server: Server) -> str:
    response = httpx.post(
        f"{server.base}/graphql",
        json={"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}},
        headers={"Authorization": f"Bearer {make_token()}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["predict"]["modelVersion"]["version"])


def _wait_serving(server: Server, version: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    serving = _serving(server)
    while serving != version and time.monotonic() < deadline:
        time.sleep(0.1)
        serving = _serving(server)
    return serving


def _next_good(artifact: bytes, demo_estimator: object) -> bytes:
    """Another good artifact (other bytes, other digest): the fix a team would ship."""
    metadata = ArtifactMetadata("decision_tree", DEVICE_FEATURES, 0.6, {"max_depth": 4})
    other = dump_artifact(demo_estimator, metadata)
    assert other != artifact
    return other


def _same_bytes(artifact: bytes, demo_estimator: object) -> bytes:
    """The very artifact the corrupted copy was registered from, registered again."""
    return artifact


@pytest.mark.parametrize(
    ("corrupt", "next_artifact"),
    [
        pytest.param(_altered, _next_good, id="altered-bytes"),
        pytest.param(
            _truncated,
            _next_good,
            id="truncated-with-matching-digest",
        ),
        pytest.param(
            _altered,
            _same_bytes,
            id="altered-bytes-then-intact-copy-registered",
        ),
    ],
)
def test_corrupted_model_activated_while_serving_is_refused_and_the_next_good_one_served(
    corrupt,
    next_artifact,
    sqlite_url,
    db_engine,
    active_model,
    demo_artifact,
    demo_estimator,
    tmp_path: Path,
):
    with run_server(sqlite_url, ENV, tmp_path / "uvicorn.log") as server:
        assert _serving(server) == active_model.version
        corrupt(db_engine, demo_artifact)
        time.sleep(POLLS_S)
        assert _serving(server) == active_model.version  # the previous version keeps serving
        assert server.get("/readyz").status_code == 200
        register_version(db_engine, next_artifact(demo_artifact, demo_estimator), "fixed")
        serving = _wait_serving(server, "fixed", FOLLOW_S)
        log = server.log()
    assert serving == "fixed", f"still serving {serving} {FOLLOW_S} s after activation\n{log}"


def test_server_started_with_a_truncated_active_model_starts_unready(
    sqlite_url, db_engine, demo_artifact, tmp_path: Path
):
    _truncated(db_engine, demo_artifact)
    with run_server(sqlite_url, ENV, tmp_path / "uvicorn.log", ready=False) as server:
        ready = server.get("/readyz")
    assert ready.status_code == 503
    assert "model" in " ".join(ready.json()["problems"])
