"""failureAlerts over graphql-transport-ws through a real uvicorn and gql's websockets client:
alerts after commit, filtered by the one matcher, refusals with their close codes, the audit
trail's start and end rows."""

import asyncio
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from alertclient import (
    FAILURE_EXAMPLE,
    subscribed,
    wait_for,
)
from servers import SECRET, make_token, run_server
from support import ORIGINAL_EXAMPLE

from auth import AuthConfig, Scope, mint_token

PREDICT_BATCH = "mutation B($is: [PredictInput!]!) { predictBatch(inputs: $is) { id label } }"


def token(*scopes: Scope, subject: str = "watcher") -> str:
    from datetime import timedelta

    return mint_token(AuthConfig(secret=SECRET), subject, scopes, timedelta(minutes=10))


async def predict(client: httpx.AsyncClient, inputs: list[dict]) -> list[dict]:
    response = await client.post(
        "/graphql", json={"query": PREDICT_BATCH, "variables": {"is": inputs}}
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["predictBatch"]


def audit_rows(engine, where: str) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text(f"SELECT * FROM audit_event WHERE {where}"))
        return [dict(row._mapping) for row in rows]


def test_committed_predictions_reach_the_subscribers_they_match(
    db_url, db_engine, active_model, tmp_path: Path
):
    inputs = [
        {**FAILURE_EXAMPLE, "deviceId": "pump-1"},
        {**ORIGINAL_EXAMPLE, "deviceId": "pump-2"},  # NON_FAILURE
        {**FAILURE_EXAMPLE, "deviceId": "fan-1"},
        {**FAILURE_EXAMPLE},  # no device id
    ]

    async def run(base: str):
        headers = {"Authorization": f"Bearer {make_token('predictor')}"}
        async with (
            httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client,
            subscribed(base, token(Scope.PREDICTIONS_READ), db_engine) as failures,
            subscribed(base, make_token(), db_engine, {"prefix": "pump-", "min": 0.0}) as pumps,
        ):
            made = await predict(client, inputs)
            assert [m["label"] for m in made] == ["FAILURE", "NON_FAILURE", "FAILURE", "FAILURE"]
            await wait_for(failures, 3)
            await wait_for(pumps, 2)
            await asyncio.sleep(0.3)  # nothing more comes
            return made, failures, pumps

    with run_server(db_url, log_path=tmp_path / "server.log") as server:
        made, failures, pumps = asyncio.run(run(server.base))
    ids = [m["id"] for m in made]
    assert failures.ids() == [ids[0], ids[2], ids[3]]
    assert pumps.ids() == [ids[0], ids[1]]
    first = failures.received[0][1]
    assert first["deviceId"] == "pump-1" and first["label"] == "FAILURE"
    assert first["failureProbability"] >= first["threshold"]
    assert first["modelVersion"]["version"] == active_model.version
    # each subscription left a start row before its first event, and an end row
    starts = audit_rows(db_engine, "subscription_event = 'start'")
    assert len(starts) == 2
    assert {r["operation_type"] for r in starts} == {"subscription"}
    assert {r["http_method"] for r in starts} == {"WS"}
    assert {r["subject"] for r in starts} == {"watcher", "load"}
    deadline = time.monotonic() + 5
    while len(ends := audit_rows(db_engine, "subscription_event = 'end'")) < 2:
        assert time.monotonic() < deadline, "no end rows"
        time.sleep(0.05)
    assert {str(r["subscription_id"]) for r in ends} == {str(r["id"]) for r in starts}
    assert all(r["outcome"] == "ok" for r in ends)
