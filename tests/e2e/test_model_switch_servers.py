"""A model switch under traffic, through two real uvicorn processes on one database.

Every prediction names the version that made it (and is stored under that version), no request
fails during the switch, and both processes serve the new version within 1 s on PostgreSQL
(LISTEN/NOTIFY: the poller is set to 30 s here, so only the notification can do it) and within
the poll interval on SQLite.
"""

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa
from servers import Server, make_token, run_server
from support import ORIGINAL_EXAMPLE, register_version

from model import DEVICE_FEATURES, ArtifactMetadata, dump_artifact
from persistence import is_sqlite

PREDICT = "mutation P($i: PredictInput!) { predict(input: $i) { id modelVersion { version } } }"
ACTIVATE = "mutation A($v: String!) { activateModelVersion(version: $v, reason: $v) { version } }"
ROLLBACK = 'mutation R { rollbackModel(reason: "back") { version } }'
POLL_S = {"postgresql": 30.0, "sqlite": 0.5}  # PostgreSQL must not need the poller
FOLLOW_S = {"postgresql": 1.0, "sqlite": 0.5 + 0.5}  # the bound; SQLite: a poll + slack


@dataclass(frozen=True)
class Answer:
    server: int
    sent: float
    answered: float
    status: int
    version: str | None
    prediction_id: str | None
    errors: object


def _drive(server: Server, index: int, stop: threading.Event, out: list[Answer]) -> None:
    headers = {"Authorization": f"Bearer {make_token()}"}
    body = {"query": PREDICT, "variables": {"i": {**ORIGINAL_EXAMPLE, "deviceId": f"d-{index}"}}}
    with httpx.Client(base_url=server.base, headers=headers, timeout=10) as client:
        while not stop.is_set():
            sent = time.monotonic()
            response = client.post("/graphql", json=body)
            data = response.json() if response.status_code == 200 else {}
            made = (data.get("data") or {}).get("predict") or {}
            version = (made.get("modelVersion") or {}).get("version")
            answered = time.monotonic()
            status, made_id, errors = response.status_code, made.get("id"), data.get("errors")
            out.append(Answer(index, sent, answered, status, version, made_id, errors))


def _stored_versions(engine, ids: list[str]) -> dict[str, str]:
    query = sa.text(
        "SELECT p.id, v.version FROM prediction p JOIN model_version v ON v.id = p.model_version_id"
    )
    wanted = set(ids)
    with engine.connect() as connection:
        return {
            str(uuid.UUID(str(row[0]))): row[1]
            for row in connection.execute(query)
            if str(uuid.UUID(str(row[0]))) in wanted
        }


def _switch(server: Server, query: str, variables: dict) -> tuple[float, float]:
    """Make a switch through one server: when it was sent, and when its answer arrived.

    The switch takes effect at its commit, between the two: requests sent before it was sent
    are answered by the old version, those sent after its answer by the new one (the lag).
    """
    sent = time.monotonic()
    response = httpx.post(
        f"{server.base}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {make_token('ops')}"},
        timeout=10,
    )
    assert "errors" not in response.json(), response.text
    return sent, time.monotonic()


def _lag(answers: list[Answer], server: int, since: float, until: float, version: str) -> float:
    """How long after `since` the server still answered a request with another version than
    `version`; and, once it had answered with `version`, it never answered a request sent
    after that with another (requests answered before `until`, when the next switch was sent)."""
    mine = [x for x in answers if x.server % 2 == server and since < x.sent and x.answered < until]
    assert len(mine) > 10, "too little traffic to judge"
    lag = max((x.sent - since for x in mine if x.version != version), default=0.0)
    first = min(x.answered for x in mine if x.version == version)
    went_back = [x for x in mine if x.sent > first and x.version != version]
    assert not went_back, f"server {server} went back: {went_back[:3]}"
    return lag


def test_both_servers_follow_a_switch_and_a_rollback_under_traffic_without_a_failed_request(
    db_url, db_engine, active_model, demo_estimator, tmp_path: Path
):
    backend = "sqlite" if is_sqlite(db_url) else "postgresql"
    metadata = ArtifactMetadata("decision_tree", DEVICE_FEATURES, 0.6, {"max_depth": 4})
    register_version(db_engine, dump_artifact(demo_estimator, metadata), "v2", activate=False)
    env = {"FAILCAST_MODEL_REFRESH_SECONDS": str(POLL_S[backend])}
    answers: list[Answer] = []
    stop = threading.Event()
    settle = FOLLOW_S[backend] + 1.5
    with (
        run_server(db_url, env, tmp_path / "a.log") as a,
        run_server(db_url, env, tmp_path / "b.log") as b,
    ):
        drivers = [
            threading.Thread(target=_drive, args=(server, i, stop, answers))
            for i, server in enumerate((a, b, a, b))
        ]
        for thread in drivers:
            thread.start()
        time.sleep(1.0)
        began = time.monotonic()
        _, activated = _switch(a, ACTIVATE, {"v": "v2"})  # through one server...
        time.sleep(settle)
        rollback_sent, rolled_back = _switch(b, ROLLBACK, {})  # ...and back through the other
        time.sleep(settle)
        stop.set()
        for thread in drivers:
            thread.join(15)
        logs = a.log()[-2000:] + b.log()[-2000:]

    failed = [x for x in answers if x.status != 200 or x.errors or x.version is None]
    assert not failed, f"{len(failed)} failed requests, e.g. {failed[:3]}\n{logs}"
    assert {x.version for x in answers if x.sent < began - 0.5} == {active_model.version}
    for server in (0, 1):  # drivers 0 and 2 hit a, 1 and 3 hit b
        for since, until, version in (
            (activated, rollback_sent, "v2"),
            (rolled_back, float("inf"), active_model.version),
        ):
            lag = _lag(answers, server, since, until, version)
            print(
                f"{backend}: server {server} served {version} {lag * 1000:.0f} ms after the switch"
            )
            assert lag <= FOLLOW_S[backend], f"server {server} lagged {lag:.2f} s behind {version}"
    ids = [x.prediction_id for x in answers if x.prediction_id]
    stored = _stored_versions(db_engine, ids)
    assert len(stored) == len(ids)
    assert all(stored[x.prediction_id] == x.version for x in answers if x.prediction_id)
