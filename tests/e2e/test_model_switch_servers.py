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
POLL_S = {"postgresql": 30.0, "sqlite": 0.5}  # PostgreSQL must not need the poller
FOLLOW_S = {"postgresql": 1.0, "sqlite": 0.5 + 0.5}  # the bound; SQLite: a poll + slack


@dataclass(frozen=True)
class Answer:
    server: int
    sent: float
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
            out.append(
                Answer(
                    index, sent, response.status_code, version, made.get("id"), data.get("errors")
                )
            )


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


def test_both_servers_follow_a_switch_under_traffic_without_a_failed_request(
    db_url, db_engine, active_model, demo_estimator, tmp_path: Path
):
    backend = "sqlite" if is_sqlite(db_url) else "postgresql"
    metadata = ArtifactMetadata("decision_tree", DEVICE_FEATURES, 0.6, {"max_depth": 4})
    register_version(db_engine, dump_artifact(demo_estimator, metadata), "v2", activate=False)
    env = {"FAILCAST_MODEL_REFRESH_SECONDS": str(POLL_S[backend])}
    answers: list[Answer] = []
    stop = threading.Event()
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
        switch = httpx.post(
            f"{a.base}/graphql",
            json={"query": ACTIVATE, "variables": {"v": "v2"}},
            headers={"Authorization": f"Bearer {make_token('ops')}"},
            timeout=10,
        )
        switched = time.monotonic()
        assert switch.json()["data"]["activateModelVersion"]["version"] == "v2", switch.text
        time.sleep(FOLLOW_S[backend] + 1.5)
        stop.set()
        for thread in drivers:
            thread.join(15)
        logs = a.log()[-2000:] + b.log()[-2000:]

    failed = [x for x in answers if x.status != 200 or x.errors or x.version is None]
    assert not failed, f"{len(failed)} failed requests, e.g. {failed[:3]}\n{logs}"
    for server in (0, 1):  # drivers 0 and 2 hit a, 1 and 3 hit b
        mine = sorted((x for x in answers if x.server % 2 == server), key=lambda x: x.sent)
        assert {x.version for x in mine if x.sent < switched - 0.5} == {active_model.version}
        old_after = [x.sent - switched for x in mine if x.version != "v2" and x.sent > switched]
        lag = max(old_after, default=0.0)
        print(f"{backend}: server {server} last answered the old version {lag * 1000:.0f} ms on")
        assert lag <= FOLLOW_S[backend], f"server {server} served the old version {lag:.2f} s on"
        first_new = next(i for i, x in enumerate(mine) if x.version == "v2")
        assert {x.version for x in mine[first_new:]} == {"v2"}, "a server went back"
        assert sum(x.sent > switched for x in mine) > 10
    ids = [x.prediction_id for x in answers if x.prediction_id]
    stored = _stored_versions(db_engine, ids)
    assert len(stored) == len(ids)
    assert all(stored[x.prediction_id] == x.version for x in answers if x.prediction_id)
