"""Load: a real uvicorn, 32 concurrent clients; zero errors, and everything sent is accounted for.

CI runs a short form (FAILCAST_LOAD_SECONDS, default 5 s); `make loadtest` runs the full 60 s.
At the end count(audit_event) must equal the requests sent, and count(prediction) the
predictions returned: nothing lost, nothing extra.
"""

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from servers import make_token, run_server
from support import ORIGINAL_EXAMPLE, count_rows

SECONDS = float(os.environ.get("FAILCAST_LOAD_SECONDS", "5"))
CLIENTS = 32
BATCH = 10
PREDICT = "mutation P($i: PredictInput!) { predict(input: $i) { id } }"
PREDICT_BATCH = "mutation B($rows: [PredictInput!]!) { predictBatch(inputs: $rows) { id } }"
# Generous limits: the test measures storage under load, not the rate limiter.
ENV = {"FAILCAST_LOG_LEVEL": "warning", "FAILCAST_RATE_LIMITS": '{"predict": [100000, 100000]}'}


@dataclass
class Tally:
    sent: int = 0
    predictions: int = 0
    errors: list[str] = field(default_factory=list)


async def _client(client: httpx.AsyncClient, worker: int, deadline: float, tally: Tally) -> None:
    turn = 0
    while time.monotonic() < deadline:
        turn += 1
        batch = turn % 5 == 0  # one request in five is a batch
        body = (
            {"query": PREDICT_BATCH, "variables": {"rows": [ORIGINAL_EXAMPLE] * BATCH}}
            if batch
            else {"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}}
        )
        tally.sent += 1
        try:
            response = await client.post("/graphql", json=body)
        except httpx.HTTPError as error:
            tally.errors.append(f"client {worker}: {type(error).__name__}")
            continue
        payload = response.json()
        if response.status_code != 200 or payload.get("errors"):
            tally.errors.append(f"client {worker}: {response.status_code} {payload.get('errors')}")
            continue
        tally.predictions += BATCH if batch else 1


async def _drive(base: str, seconds: float) -> Tally:
    tally = Tally()
    headers = {"Authorization": f"Bearer {make_token()}"}
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=30
    ) as client:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_client(client, i, deadline, tally) for i in range(CLIENTS)))
    return tally


def test_load_with_32_clients_loses_nothing(db_url, db_engine, active_model, tmp_path: Path):
    with run_server(db_url, ENV, tmp_path / "uvicorn.log") as server:
        tally = asyncio.run(_drive(server.base, SECONDS))
    assert tally.errors == []
    assert tally.sent > CLIENTS
    assert count_rows(db_engine, "audit_event") == tally.sent
    assert count_rows(db_engine, "prediction") == tally.predictions
    print(f"\nload: {tally.sent} requests, {tally.predictions} predictions in {SECONDS:g} s")
