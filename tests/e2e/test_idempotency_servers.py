"""Idempotency-Key across real server processes on one database: a retry may land anywhere."""

import signal
import threading
from pathlib import Path

import httpx
import sqlalchemy as sa
from servers import PREDICT, make_token, run_server
from support import ORIGINAL_EXAMPLE, count_rows

BODY = {"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}}


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token('line-7')}", "Idempotency-Key": key}


def test_a_retry_after_the_server_was_killed_gets_the_committed_answer(
    db_url, db_engine, active_model, tmp_path: Path
):
    with run_server(db_url, log_path=tmp_path / "a.log") as first:
        answered = httpx.post(f"{first.base}/graphql", json=BODY, headers=_headers("k"), timeout=10)
        first.stop(signal.SIGKILL)  # the client never saw the answer, say; the commit happened
    with run_server(db_url, log_path=tmp_path / "b.log") as second:
        retried = httpx.post(f"{second.base}/graphql", json=BODY, headers=_headers("k"), timeout=10)
    assert answered.status_code == retried.status_code == 200
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.content == answered.content  # the same prediction id
    assert count_rows(db_engine, "prediction") == 1


def test_the_same_key_sent_to_two_servers_at_once_stores_one_prediction(
    db_url, db_engine, active_model, tmp_path: Path
):
    with (
        run_server(db_url, log_path=tmp_path / "a.log") as a,
        run_server(db_url, log_path=tmp_path / "b.log") as b,
    ):
        for round_ in range(5):
            key = f"race-{round_}"
            answers: dict[str, httpx.Response] = {}
            start = threading.Barrier(2)

            def send(server, name: str, key: str = key, start=start, answers=answers) -> None:
                start.wait()
                answers[name] = httpx.post(
                    f"{server.base}/graphql", json=BODY, headers=_headers(key), timeout=15
                )

            threads = [threading.Thread(target=send, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            statuses = sorted(r.status_code for r in answers.values())
            # Both answered: one ran; the other replayed it, or (it ran too and lost at COMMIT)
            # was told to retry, storing nothing.
            assert statuses in ([200, 200], [200, 409]), [r.text for r in answers.values()]
            for response in answers.values():
                if response.status_code == 409:
                    error = response.json()["errors"][0]
                    assert error["extensions"]["code"] == "IDEMPOTENCY_KEY_IN_USE"
                    assert response.headers["retry-after"]
            retry = httpx.post(f"{a.base}/graphql", json=BODY, headers=_headers(key), timeout=10)
            assert retry.headers["idempotent-replayed"] == "true"
            ran = [r for r in answers.values() if "idempotent-replayed" not in r.headers]
            assert retry.content in [r.content for r in ran if r.status_code == 200]
    assert count_rows(db_engine, "prediction") == 5
    with db_engine.connect() as connection:
        kept = connection.execute(sa.text("SELECT count(*) FROM idempotency_key")).scalar()
        # Every attempt is audited: per round the one that ran, the other (a replay or a 409),
        # and the retry (a replay).
        rows = connection.execute(
            sa.text("SELECT replay_of IS NOT NULL, http_status FROM audit_event")
        ).all()
    assert kept == 5 and len(rows) == 15
    assert sum(1 for replay, status in rows if replay or status == 409) == 10
