"""failureAlerts over graphql-transport-ws through a real uvicorn and gql's websockets client:
alerts after commit, filtered by the one matcher, refusals with their close codes, the audit
trail's start and end rows."""

import ast
import asyncio
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import websockets
from alertclient import (
    ALERTS,
    FAILURE_EXAMPLE,
    bearer,
    refused_with,
    subscribed,
    wait_for,
    ws_url,
)
from servers import SECRET, make_token, run_server
from support import ORIGINAL_EXAMPLE, REPO_ROOT

from auth import AuthConfig, Scope, mint_token

PREDICT_BATCH = "mutation B($is: [PredictInput!]!) { predictBatch(inputs: $is) { id label } }"


def token(*scopes: Scope, subject: str = "watcher", secret: str = SECRET, ttl: float = 600) -> str:
    """A token; a negative `ttl` makes one that expired that long ago."""
    config = AuthConfig(secret=secret, leeway_seconds=0)
    now = datetime.now(UTC) + timedelta(seconds=min(0.0, ttl * 2))
    return mint_token(config, subject, scopes, timedelta(seconds=abs(ttl)), now=now)


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
        found = [dict(row._mapping) for row in rows]
    for row in found:  # SQLite hands JSON back as text to a plain SELECT
        if isinstance(row["error_codes"], str):
            row["error_codes"] = json.loads(row["error_codes"])
    return found


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
            gauge = httpx.get(f"{base}/metrics").text
            made = await predict(client, inputs)
            assert [m["label"] for m in made] == ["FAILURE", "NON_FAILURE", "FAILURE", "FAILURE"]
            await wait_for(failures, 3)
            await wait_for(pumps, 2)
            await asyncio.sleep(0.3)  # nothing more comes
            return made, failures, pumps, gauge

    with run_server(db_url, log_path=tmp_path / "server.log") as server:
        made, failures, pumps, gauge = asyncio.run(run(server.base))
        deadline = time.monotonic() + 5  # the server hears the clients leave
        while "failcast_alert_subscriptions 0.0" not in server.get("/metrics").text:
            assert time.monotonic() < deadline, "subscriptions still counted as open"
            time.sleep(0.05)
    assert "failcast_alert_subscriptions 2.0" in gauge
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


async def _raw(base: str, messages: list[dict], subprotocols=("graphql-transport-ws",), **kw):
    """Send protocol messages with the websockets library: (messages received until it closed
    or went quiet, the close code or None)."""
    received = []
    offered = list(subprotocols) or None
    async with websockets.connect(ws_url(base), subprotocols=offered, **kw) as ws:
        try:
            for message in messages:
                await ws.send(json.dumps(message))
            while True:
                received.append(json.loads(await asyncio.wait_for(ws.recv(), 3)))
        except websockets.ConnectionClosed as closed:
            return received, closed.rcvd.code if closed.rcvd else None
        except TimeoutError:  # quiet for 3 s: still open
            return received, None


async def _refused_operation(base: str, subscribe: dict) -> tuple[list[dict], int | None]:
    """Subscribe until the operation is refused, then ping: the connection stays usable."""
    received = []
    async with websockets.connect(ws_url(base), subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps(_init()))
        received.append(json.loads(await ws.recv()))
        await ws.send(json.dumps(subscribe))
        received.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
        await ws.send(json.dumps({"type": "ping"}))
        received.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    return received, None


BYE = "bye"  # not a protocol message: the server closes with 4400 (the test need not wait)


def _init() -> dict:
    """A connection_init with a token minted now: one minted at import expired in a test
    session that ran for more than its 10 minutes before this module's tests."""
    return {"type": "connection_init", "payload": bearer(make_token("raw"))}


def _subscribe(ident: str, query: str = ALERTS, variables: dict | None = None) -> dict:
    payload = {"query": query, "variables": variables or {}}
    return {"id": ident, "type": "subscribe", "payload": payload}


def test_refusals_close_with_the_protocols_codes_and_are_audited(
    db_url, db_engine, active_model, tmp_path: Path
):
    env = {
        "FAILCAST_CORS_ORIGINS": "https://app.example.com",
        "FAILCAST_SUBSCRIPTION_INIT_TIMEOUT_SECONDS": "1",
        "FAILCAST_SUBSCRIPTION_CONNECTIONS_PER_SUBJECT": "2",
    }
    expired = token(Scope.PREDICTIONS_READ, ttl=-60)
    foreign = token(Scope.PREDICTIONS_READ, secret="another-deployment-" + "k" * 30)

    async def run(base: str) -> dict:
        got = {
            "no token": await refused_with(base, None),
            "empty payload": await refused_with(base, {}),
            "bad token": await refused_with(base, bearer("not-a-token")),
            "expired": await refused_with(base, bearer(expired)),
            "other secret": await refused_with(base, {"authorization": f"Bearer {foreign}"}),
            "no scope": await refused_with(base, bearer(token(Scope.PREDICT))),
        }
        started = time.monotonic()
        got["silent"] = await _raw(base, [])
        got["silent after"] = time.monotonic() - started
        got["no subprotocol"] = await _raw(base, [_init()], subprotocols=())
        got["legacy subprotocol"] = await _raw(base, [_init()], subprotocols=("graphql-ws",))
        got["subscribe first"] = await _raw(base, [_subscribe("1")])
        got["init twice"] = await _raw(base, [_init(), _init()])
        got["not json"] = await _raw(base, ["nope"])
        got["same id twice"] = await _raw(base, [_init(), _subscribe("1"), _subscribe("1")])
        got["query over ws"] = await _refused_operation(base, _subscribe("q", "{ me { subject } }"))
        got["bad argument"] = await _refused_operation(
            base, _subscribe("b", variables={"min": 2.0})
        )
        with pytest.raises(websockets.InvalidStatus) as refused:
            await _raw(base, [_init()], origin="https://evil.example.com")
        got["foreign origin"] = refused.value.response.status_code
        async with websockets.connect(
            ws_url(base), subprotocols=["graphql-transport-ws"], origin="https://app.example.com"
        ) as ws:
            await ws.send(json.dumps(_init()))
            got["listed origin"] = json.loads(await ws.recv())["type"]
        # the subject's cap: two connections are open, the third is closed
        mine = bearer(token(Scope.PREDICTIONS_READ, subject="capped"))
        opened = []
        for _ in range(2):
            ws = await websockets.connect(ws_url(base), subprotocols=["graphql-transport-ws"])
            await ws.send(json.dumps({"type": "connection_init", "payload": mine}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            opened.append(ws)
        got["over the cap"] = await refused_with(base, mine)
        await opened.pop().close()
        await asyncio.sleep(0.2)
        got["under the cap again"] = await _raw(
            base, [{"type": "connection_init", "payload": mine}, {"type": "ping"}, BYE]
        )
        for ws in opened:
            await ws.close()
        # a token that expires while its connection is open ends the connection
        short = {"type": "connection_init", "payload": bearer(token(Scope.PREDICTIONS_READ, ttl=2))}
        started = time.monotonic()
        got["token expires"] = await _raw(base, [short, _subscribe("e")])
        got["token expires after"] = time.monotonic() - started
        return got

    with run_server(db_url, env, tmp_path / "server.log") as server:
        got = asyncio.run(run(server.base))
        log = server.log()
    for case in ("no token", "empty payload", "bad token", "expired", "other secret", "no scope"):
        assert got[case][0] == 4403, (case, got[case], log[-2000:])
    assert "predictions:read" in got["no scope"][1]
    assert got["silent"] == ([], 4408) and 0.9 <= got["silent after"] < 3
    assert got["no subprotocol"][1] == 4406 and got["legacy subprotocol"][1] == 4406
    assert got["subscribe first"] == ([], 4401)
    assert got["init twice"] == ([{"type": "connection_ack"}], 4429)
    assert got["not json"][1] == 4400
    assert got["same id twice"] == ([{"type": "connection_ack"}], 4409)
    messages, _ = got["query over ws"]
    error = next(m for m in messages if m["type"] == "error")
    assert error["id"] == "q" and error["payload"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert {"type": "pong"} in messages  # the connection stays open after a refused operation
    messages, _ = got["bad argument"]
    (error,) = [m for m in messages if m["type"] == "error"]
    extensions = error["payload"][0]["extensions"]
    assert (extensions["code"], extensions["field"]) == ("BAD_USER_INPUT", "minProbability")
    assert got["foreign origin"] == 403
    assert got["listed origin"] == "connection_ack"
    assert got["over the cap"][0] == 4429
    assert got["under the cap again"][0][:2] == [{"type": "connection_ack"}, {"type": "pong"}]
    assert got["token expires"] == ([{"type": "connection_ack"}], 4403), log[-3000:]
    assert got["token expires after"] < 3.5, log[-3000:]
    # every refusal left its audit row, with why
    rows = audit_rows(db_engine, "http_method = 'WS'")
    failures = sorted(r["auth_failure"] for r in rows if r["auth_failure"])
    assert failures == ["bad_signature", "expired", "malformed", "missing", "missing"], failures
    codes = [c for r in rows for c in r["error_codes"]]
    assert codes.count("FORBIDDEN") == 2  # no scope; the foreign origin
    assert codes.count("REQUEST_TIMEOUT") == 1 and codes.count("RATE_LIMITED") == 1
    assert {r["http_status"] for r in rows if "RATE_LIMITED" in r["error_codes"]} == {429}
    assert {r["outcome"] for r in rows if r["auth_failure"]} == {"denied"}


def _readme_client() -> str:
    """The README's runnable subscription client, as written there."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The `failureAlerts` subscription", 1)[1].split("\n### ", 1)[0]
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "gql" in b]
    return code


def test_the_readme_client_receives_alerts(db_url, db_engine, active_model, tmp_path: Path):
    with run_server(db_url, log_path=tmp_path / "server.log") as server:
        code = _readme_client()
        code = code.replace('TOKEN = "..."', f"TOKEN = {token(Scope.PREDICTIONS_READ)!r}")
        code = code.replace("ws://127.0.0.1:8000", server.base.replace("http://", "ws://"))
        client = subprocess.Popen(
            [sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 15
            while not audit_rows(db_engine, "subscription_event = 'start'"):
                assert client.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.05)
            inputs = [
                {**FAILURE_EXAMPLE, "deviceId": "W1F0001"},
                {**FAILURE_EXAMPLE, "deviceId": "S1F0001"},
            ]
            headers = {"Authorization": f"Bearer {make_token()}"}
            body = httpx.post(
                f"{server.base}/graphql",
                json={"query": PREDICT_BATCH, "variables": {"is": inputs}},
                headers=headers,
                timeout=10,
            ).json()
            line = client.stdout.readline()
        finally:
            client.terminate()
            client.wait(10)
    printed = ast.literal_eval(line)
    assert printed["id"] == body["data"]["predictBatch"][1]["id"]  # the S1F device only
    assert printed["deviceId"] == "S1F0001"
    assert printed["modelVersion"] == {"version": active_model.version}


def test_a_server_shutdown_ends_its_subscriptions_and_records_their_end(
    db_url, db_engine, active_model, tmp_path: Path
):
    async def run(server) -> tuple[int | None, float]:
        async with websockets.connect(
            ws_url(server.base), subprotocols=["graphql-transport-ws"]
        ) as ws:
            await ws.send(json.dumps(_init()))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps(_subscribe("s")))
            # What is measured is the shutdown; the start only has to happen (CI, loaded, once
            # took more than 10 s to record it).
            deadline = time.monotonic() + 30
            while not audit_rows(db_engine, "subscription_event = 'start'"):
                assert time.monotonic() < deadline, server.log()[-3000:]
                await asyncio.sleep(0.05)
            stopping = asyncio.create_task(asyncio.to_thread(server.stop))
            try:
                await asyncio.wait_for(ws.recv(), 15)
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
            took = await stopping
            return code, took

    with run_server(db_url, log_path=tmp_path / "server.log") as server:
        code, took = asyncio.run(run(server))
    assert code == 1012  # service restart: uvicorn's close on shutdown
    assert took < 10
    (start,) = audit_rows(db_engine, "subscription_event = 'start'")
    (end,) = audit_rows(db_engine, "subscription_event = 'end'")
    assert end["subscription_id"] == start["id"] and end["outcome"] == "ok"
    assert end["received_at"] == start["received_at"] and end["duration_ms"] > 0
