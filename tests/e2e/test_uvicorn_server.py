"""A real uvicorn process on loopback: concurrent predictions, every one audited and sealed."""

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from servers import PREDICT, make_token, run_server
from support import ORIGINAL_EXAMPLE, count_rows

from persistence import seal_pending, sealed_count, verify_seals

CONCURRENT_REQUESTS = 200


@pytest.fixture
def server(db_url, db_engine, active_model) -> Iterator[str]:
    """uvicorn serving the app factory, sealing the audit trail every 0.3 s behind a 2 s lag."""
    env = {"FAILCAST_AUDIT_SEAL_INTERVAL_SECONDS": "0.3", "FAILCAST_AUDIT_SEAL_LAG_SECONDS": "2"}
    with run_server(db_url, env) as running:
        yield running.base


async def _fire(base: str, token: str, n: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=30
    ) as client:
        body = {"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}}
        return await asyncio.gather(*(client.post("/graphql", json=body) for _ in range(n)))


def test_concurrent_predictions_are_all_stored_audited_and_sealed(server, db_engine):
    token = make_token("load")
    responses = asyncio.run(_fire(server, token, CONCURRENT_REQUESTS))
    assert [r.status_code for r in responses] == [200] * CONCURRENT_REQUESTS
    ids = {r.json()["data"]["predict"]["id"] for r in responses}
    assert len(ids) == CONCURRENT_REQUESTS
    assert count_rows(db_engine, "prediction") == CONCURRENT_REQUESTS
    assert count_rows(db_engine, "audit_event") == CONCURRENT_REQUESTS
    # Every request has finished: seal the rest. The server seals concurrently, and a sealer
    # that loses the race for the next block stops early, so seal again (bounded) until done.
    for _ in range(20):
        seal_pending(db_engine, lag_seconds=0)
        if sealed_count(db_engine) == CONCURRENT_REQUESTS:
            break
    report = verify_seals(db_engine)
    assert report.ok, report
    assert report.events == CONCURRENT_REQUESTS
