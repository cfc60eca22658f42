"""A real uvicorn process on loopback: concurrent predictions, every one audited and sealed."""

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from support import ORIGINAL_EXAMPLE, REPO_ROOT, count_rows

from auth import ALL_SCOPES, AuthConfig, mint_token
from persistence import seal_pending, verify_seals

SECRET = "uvicorn-suite-" + "k" * 40
CONCURRENT_REQUESTS = 200
PREDICT = "mutation P($i: PredictInput!) { predict(input: $i) { id label } }"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(db_url, db_engine, active_model) -> Iterator[str]:
    """uvicorn serving the app factory, sealing the audit trail every 0.3 s behind a 2 s lag."""
    port = _free_port()
    env = {
        **os.environ,
        "FAILCAST_DATABASE_URL": db_url,
        "FAILCAST_JWT_SECRET": SECRET,
        "FAILCAST_AUDIT_SEAL_INTERVAL_SECONDS": "0.3",
        "FAILCAST_AUDIT_SEAL_LAG_SECONDS": "2",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "graph.app:create_app_from_env",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env, cwd=REPO_ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def _wait_ready(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "uvicorn exited during start-up"
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("uvicorn did not become ready within 30 s")


async def _fire(base: str, token: str, n: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=30
    ) as client:
        body = {"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}}
        return await asyncio.gather(*(client.post("/graphql", json=body) for _ in range(n)))


def test_concurrent_predictions_are_all_stored_audited_and_sealed(server, db_engine):
    config = AuthConfig(secret=SECRET)
    token = mint_token(config, "load", ALL_SCOPES, timedelta(minutes=5))
    responses = asyncio.run(_fire(server, token, CONCURRENT_REQUESTS))
    assert [r.status_code for r in responses] == [200] * CONCURRENT_REQUESTS
    ids = {r.json()["data"]["predict"]["id"] for r in responses}
    assert len(ids) == CONCURRENT_REQUESTS
    assert count_rows(db_engine, "prediction") == CONCURRENT_REQUESTS
    assert count_rows(db_engine, "audit_event") == CONCURRENT_REQUESTS
    seal_pending(db_engine, lag_seconds=0)  # every request has finished: seal the rest
    report = verify_seals(db_engine)
    assert report.ok, report
    assert report.events == CONCURRENT_REQUESTS
