"""A real uvicorn whose PostgreSQL goes away: it answers 503 fast, never 500, and recovers alone.

The database is taken away by a TCP proxy on loopback (tests/faultproxy.py) between the server
and PostgreSQL, never by touching the PostgreSQL cluster, which other sessions share.
"""

import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from servers import PREDICT, Load, Server, make_token, missing_from_store, run_server
from support import ORIGINAL_EXAMPLE

FAST_S = 5.0  # an answer during an outage comes within this, never after a pool or TCP hang
RECOVERY_S = 10.0  # once the database is back, the server serves again within this
OUTAGE_S = 2.0
ENV = {"FAILCAST_MODEL_REFRESH_SECONDS": "0.2", "FAILCAST_LOG_LEVEL": "warning"}

ME = "{ me { subject } }"
HISTORY = "{ predictions(first: 5) { nodes { id } } }"
MODELS = "{ modelVersions { version } }"
ACTIVE = "{ activeModel { version } }"
BATCH = "mutation B($is: [PredictInput!]!) { predictBatch(inputs: $is) { id } }"
OPERATIONS = {
    "predict": ("/graphql", {"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}}),
    "predictBatch": ("/graphql", {"query": BATCH, "variables": {"is": [ORIGINAL_EXAMPLE] * 3}}),
    "predictions": ("/graphql", {"query": HISTORY}),
    "modelVersions": ("/graphql", {"query": MODELS}),
    "activeModel": ("/graphql", {"query": ACTIVE}),
    "me": ("/graphql", {"query": ME}),
    "REST /predict": ("/predict", ORIGINAL_EXAMPLE),
}


def _post(server: Server, path: str, body: dict, token: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(
        f"{server.base}{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(FAST_S * 3, connect=2),
    )
    return response, time.monotonic() - started


def _assert_unavailable(response: httpx.Response, elapsed: float, what: str) -> None:
    assert elapsed < FAST_S, f"{what} took {elapsed:.2f} s"
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    body = response.json()
    assert body["data"] is None, f"{what} returned data: {response.text}"
    assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE", response.text
    assert response.headers.get("retry-after"), f"{what}: no Retry-After"
    assert response.headers.get("x-request-id"), f"{what}: no X-Request-ID"


def test_server_started_without_its_database_answers_503_then_recovers_without_restart(
    proxy, proxied_url, db_engine, active_model, tmp_path: Path
):
    proxy.start(accepting=False)
    token = make_token("no-db")
    with run_server(proxied_url, ENV, tmp_path / "uvicorn.log", ready=False) as server:
        started = time.monotonic()
        ready = server.get("/readyz")
        ready_s = time.monotonic() - started
        assert ready_s < FAST_S
        assert ready.status_code == 503, ready.text
        problems = " ".join(ready.json()["problems"])
        assert "database" in problems and "model" in problems, problems
        timings = {}
        for name, (path, body) in OPERATIONS.items():
            response, timings[name] = _post(server, path, body, token)
            _assert_unavailable(response, timings[name], name)

        proxy.accept()
        back = time.monotonic()
        server.wait_status("/readyz", 200, RECOVERY_S)
        recovered_s = time.monotonic() - back
        response, _ = _post(server, *OPERATIONS["predict"], token)
        assert response.status_code == 200, response.text
        prediction = response.json()["data"]["predict"]
    print(f"\n/readyz {ready_s:.3f} s; 503s {timings}; ready again {recovered_s:.2f} s after")
    with db_engine.connect() as connection:
        stored = connection.execute(
            sa.text("SELECT audit_event_id FROM prediction WHERE id = :id"),
            {"id": prediction["id"]},
        ).scalar_one()
    assert str(stored) == response.headers["x-request-id"]


def test_database_lost_during_traffic_gives_fast_503s_then_the_server_recovers_by_itself(
    proxy, proxied_url, db_engine, active_model, tmp_path: Path
):
    proxy.start()
    log_path = tmp_path / "uvicorn.log"
    with run_server(proxied_url, ENV, log_path) as server:
        timeout = httpx.Timeout(FAST_S * 3, connect=2)
        with Load(server.base, workers=8, prefix="outage", timeout=timeout) as load:
            load.wait_ok(40)
            outage_at = time.monotonic()
            sockets_cut = proxy.outage()
            time.sleep(OUTAGE_S)
            proxy.accept()
            back_at = time.monotonic()
            recovered_at = _first_ok_started_after(load, back_at, RECOVERY_S)
            time.sleep(0.5)  # traffic after the recovery
            outcomes = load.stop()
        ready = server.get("/readyz")
        log = server.log()
    assert sockets_cut > 0, "no database connection was open when the outage began"
    answers = {(o.status, o.code, o.error) for o in outcomes if not o.ok}
    unexpected = [
        o for o in outcomes if not o.ok and (o.status, o.code) != (503, "SERVICE_UNAVAILABLE")
    ]
    assert not unexpected, f"answers other than 200 or 503: {answers}\n{unexpected[:3]}\n{log}"
    slowest = max(o.elapsed for o in outcomes)
    assert slowest < FAST_S, f"a request took {slowest:.2f} s\n{log}"
    during = [o for o in outcomes if outage_at <= o.started < back_at]
    assert any(o.status == 503 for o in during), "the outage went unnoticed"
    assert recovered_at is not None, f"no prediction within {RECOVERY_S} s of the return\n{log}"
    after = [o for o in outcomes if o.started >= recovered_at]
    relapses = [o for o in after if not o.ok]
    assert not relapses, f"failures after recovery: {relapses[:3]}"
    assert ready.status_code == 200, ready.text
    assert missing_from_store(outcomes, db_engine) == []
    n_503 = sum(o.status == 503 for o in outcomes)
    print(
        f"\n{len(outcomes)} requests, {sum(o.ok for o in outcomes)} ok, {n_503} 503;"
        f" slowest {slowest:.3f} s; first prediction {recovered_at - back_at:.2f} s after return"
    )


def _first_ok_started_after(load: Load, since: float, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = [o.started for o in load.snapshot() if o.ok and o.started >= since]
        if started:
            return min(started)
        time.sleep(0.05)
    return None


def test_database_that_stops_answering_gives_503s_within_seconds_not_hangs(
    proxy, proxied_url, db_engine, active_model, tmp_path: Path
):
    proxy.start()
    with run_server(proxied_url, ENV, tmp_path / "uvicorn.log") as server:
        timeout = httpx.Timeout(FAST_S + 1, connect=2)
        with Load(server.base, workers=4, prefix="stall", timeout=timeout) as load:
            load.wait_ok(20)
            stalled_at = time.monotonic()
            proxy.stall()
            ready, ready_s = _timed_get(server, "/readyz")
            time.sleep(max(0.0, FAST_S + 1.5 - (time.monotonic() - stalled_at)))
            proxy.accept()
            back_at = time.monotonic()
            recovered_at = _first_ok_started_after(load, back_at, RECOVERY_S)
            outcomes = load.stop()
    assert ready_s < FAST_S and ready.status_code == 503, (ready_s, ready.text)
    during = [o for o in outcomes if o.started < back_at and o.finished > stalled_at]
    hung = [o for o in during if o.status is None or o.elapsed >= FAST_S]
    assert not hung, f"{len(hung)} of {len(during)} requests hung: {hung[0].error}"
    assert all((o.status, o.code) == (503, "SERVICE_UNAVAILABLE") for o in during if not o.ok)
    assert recovered_at is not None, f"no prediction within {RECOVERY_S} s of the return"
    assert missing_from_store(outcomes, db_engine) == []


def _timed_get(server: Server, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = server.get(path, timeout=FAST_S * 2)
    return response, time.monotonic() - started
