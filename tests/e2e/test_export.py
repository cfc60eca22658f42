"""GET /exports/predictions.csv: the GraphQL history's rows as CSV, streamed, audited, checked.

Predictions are seeded in bulk (as requests store them) with awkward device ids, two model
versions, two subjects and times with and without microseconds. Every export is parsed back
and compared with the GraphQL `predictions` answer for the same filter; the streaming tests run
a real uvicorn (tests/e2e/servers.py), and the database loss goes through the fault proxy.
"""

import csv
import io
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from servers import audit_rows, run_server, wait_audit_row
from servers import make_token as server_token
from starlette.testclient import TestClient
from support import Seeded, register_version, seed_predictions

from auth import Scope
from graph.app import create_app
from graph.runtime.export import COLUMNS, HEADER

PATH = "/exports/predictions.csv"
T0 = datetime(2025, 11, 1, tzinfo=UTC)  # in the past: an export holds rows made before it
AWKWARD = ["a,b", 'say "hi"', "line\nbreak", "cr\rreturn", "crlf\r\nend", "é-ü-日本", " lead",
           "trail ", "=1+2", "NA", "null", "007", '"', ","]  # fmt: skip
METRICS = ["metric1", "metric2", "metric3", "metric4", "metric5", "metric6", "metric7", "metric9"]
HISTORY = """query H($after: String, $filter: PredictionFilter) {
  predictions(first: 500, after: $after, filter: $filter, orderBy: {field: CREATED_AT, direction: ASC}) {
    pageInfo { hasNextPage endCursor }
    nodes { id createdAt observedAt deviceId label failureProbability threshold
            modelVersion { version } input { %s } } } }""" % " ".join(METRICS)


@pytest.fixture
def seeded(db_engine, active_model, demo_artifact) -> list[Seeded]:
    """Three requests' predictions: two versions, two subjects, awkward and missing device ids."""
    other = register_version(db_engine, demo_artifact, 'test-2, "quoted"', activate=False)
    probabilities = [0.1, 1e-05, 0.30000000000000004, 1.0, 0.0, 0.5, 0.25, 0.999999]
    found: list[Seeded] = []
    for n, (subject, version, threshold) in enumerate(
        [("ops", active_model.id, 0.5), ("analyst", other.id, 0.25), ("ops", other.id, 0.25)]
    ):
        devices = [*AWKWARD, None, "dev-1", "dev-2", "dev-10"]
        rows = [(device, T0 + timedelta(hours=i, microseconds=(i % 3) * 250_001),
                 probabilities[(i + n) % len(probabilities)]) for i, device in enumerate(devices)]  # fmt: skip
        made = T0 + timedelta(days=30 + n, microseconds=n * 7)
        found += seed_predictions(db_engine, version, rows, subject, made, threshold)
    return found


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _rows(body: bytes) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(body.decode(), newline=""))
    assert next(reader) == list(COLUMNS)
    return [dict(zip(COLUMNS, row, strict=True)) for row in reader]


def _graphql(client, headers, filter_: dict) -> list[dict]:
    nodes, after = [], None
    while True:
        body = client.post(
            "/graphql",
            json={"query": HISTORY, "variables": {"after": after, "filter": filter_}},
            headers=headers,
        ).json()
        assert "errors" not in body, body
        page = body["data"]["predictions"]
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


def _as_exported(node: dict) -> dict:
    """A GraphQL node as the CSV writes it: floats as numbers, a missing device id empty."""
    return {
        "id": node["id"], "createdAt": node["createdAt"], "observedAt": node["observedAt"],
        "deviceId": node["deviceId"] or "", "label": node["label"],
        "failureProbability": node["failureProbability"], "threshold": node["threshold"],
        "modelVersion": node["modelVersion"]["version"],
        **{name: node["input"][name] for name in METRICS},
    }  # fmt: skip


def _parsed(row: dict[str, str]) -> dict:
    floats = ("failureProbability", "threshold", *METRICS)
    return {key: float(value) if key in floats else value for key, value in row.items()}


FILTERS = [
    {},
    {"deviceId": "a,b"},
    {"deviceIdPrefix": "dev-1"},
    {"modelVersion": 'test-2, "quoted"'},
    {"label": "FAILURE"},
    {"label": "NON_FAILURE"},
    {"createdFrom": "2025-12-01T00:00:00Z", "createdTo": "2025-12-02T00:00:00.000007+00:00"},
    {"observedFrom": "2025-11-01T05:00:00+02:00", "observedTo": "2025-11-01T12:30:00Z"},
    {"minProbability": "0.25", "maxProbability": "0.5"},
    {"subject": "analyst"},
    {"subject": "ops", "deviceIdPrefix": "dev", "minProbability": "1e-05"},
    {"modelVersion": "no-such"},
]


@pytest.mark.parametrize("filter_", FILTERS, ids=range(len(FILTERS)))
def test_the_export_is_the_graphql_answer_for_the_same_filter(
    client, auth_headers, seeded, filter_
):
    response = client.get(f"{PATH}?{urlencode(filter_)}", headers=auth_headers)
    assert response.status_code == 200, response.text
    variables = {k: float(v) if k.endswith("Probability") else v for k, v in filter_.items()}
    expected = [_as_exported(node) for node in _graphql(client, auth_headers, variables)]
    assert [_parsed(row) for row in _rows(response.content)] == expected
    if filter_ == {}:
        assert len(expected) == len(seeded)


def test_predictions_made_after_the_export_began_are_not_in_it(
    client, auth_headers, db_engine, active_model
):
    now = datetime.now(UTC)
    made = [seed_predictions(db_engine, active_model.id, [(device, now, 0.5)], created_at=when)[0]
            for device, when in [("before", now - timedelta(seconds=1)),
                                 ("after", now + timedelta(hours=1))]]  # fmt: skip
    rows = _rows(client.get(PATH, headers=auth_headers).content)
    assert [row["id"] for row in rows] == [str(made[0].id)]
    assert len(_graphql(client, auth_headers, {})) == 2


def test_awkward_device_ids_survive_the_csv_module(client, auth_headers, seeded):
    rows = _rows(client.get(PATH, headers=auth_headers).content)
    assert [row["deviceId"] for row in rows] == [s.device_id or "" for s in seeded]
    assert {"é-ü-日本", "crlf\r\nend", 'say "hi"', "a,b"} <= {row["deviceId"] for row in rows}


def test_awkward_device_ids_and_floats_survive_pandas(client, auth_headers, seeded):
    pandas = pytest.importorskip("pandas", reason="pandas comes with the bench extra")
    body = client.get(PATH, headers=auth_headers).content
    # pandas 3 reads floats back exactly by default; before, it took float_precision="round_trip"
    exact = {} if int(pandas.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    frame = pandas.read_csv(
        io.BytesIO(body), dtype={"deviceId": str}, keep_default_na=False, **exact
    )
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame["deviceId"]) == [s.device_id or "" for s in seeded]
    assert list(frame["failureProbability"]) == [s.probability for s in seeded]
    assert list(frame["id"]) == [str(s.id) for s in seeded]


def test_an_empty_result_is_just_the_header(client, auth_headers, seeded):
    response = client.get(f"{PATH}?deviceId=nobody", headers=auth_headers)
    assert response.status_code == 200
    assert response.content == HEADER


def test_the_answer_is_a_csv_download_with_the_usual_headers(client, auth_headers, seeded):
    response = client.get(PATH, headers={**auth_headers, "X-Request-ID": "mine-1"})
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="predictions.csv"'
    assert response.headers["x-request-id"] == "mine-1"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content.endswith(b"\r\n") and b"\r\n" in response.content[:200]


def _audit_rows(engine) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM audit_event WHERE http_path = :p"),
                                  {"p": PATH})  # fmt: skip
        return [dict(row._mapping) for row in rows]


def test_an_export_leaves_one_audit_row(client, make_token, db_engine, seeded):
    headers = _headers(make_token(Scope.PREDICTIONS_READ, subject="analyst-7"))
    response = client.get(f"{PATH}?label=FAILURE", headers=headers)
    assert response.status_code == 200
    [row] = _audit_rows(db_engine)
    assert str(row["id"]).replace("-", "") == response.headers["x-request-id"].replace("-", "")
    assert (row["operation_type"], row["operation_name"]) == ("export", "predictions.csv")
    assert (row["http_method"], row["http_status"], row["outcome"]) == ("GET", 200, "ok")
    assert row["subject"] == "analyst-7"
    assert row["predictions_created"] == 0 and row["query_sha256"] is None


@pytest.fixture
def prediction_reads(client) -> Iterator[list[str]]:
    """The statements that read the prediction table, while the test runs."""
    seen: list[str] = []

    def note(conn, cursor, statement, *args) -> None:
        if "FROM prediction" in statement:
            seen.append(statement)

    runtime = client.app.state.runtime
    for engine in (runtime.engine, runtime.exports):
        sa.event.listen(engine, "before_cursor_execute", note)
    yield seen
    for engine in (runtime.engine, runtime.exports):
        sa.event.remove(engine, "before_cursor_execute", note)


INVALID = [
    ("nope=1", "nope"),
    ("deviceId=a&deviceId=b", "deviceId"),
    ("deviceId=", "deviceId"),
    ("deviceId=" + "x" * 65, "deviceId"),
    ("deviceId=a%00b", "deviceId"),
    ("deviceIdPrefix=%1B%5B31m", "deviceIdPrefix"),
    ("modelVersion=v%7F", "modelVersion"),
    ("modelVersion=" + "v" * 256, "modelVersion"),
    ("subject=a%0Ab", "subject"),
    ("subject=%C2%85", "subject"),
    ("label=failure", "label"),
    ("createdFrom=2026-11-29T08:00:00", "createdFrom"),
    ("createdTo=yesterday", "createdTo"),
    ("observedFrom=2026-11-29T08:00:00+02:00", "observedFrom"),
    ("observedTo=2026-13-01T00:00:00Z", "observedTo"),
    ("minProbability=abc", "minProbability"),
    ("minProbability=nan", "minProbability"),
    ("minProbability=1_0", "minProbability"),
    ("minProbability=%200.5", "minProbability"),
    ("maxProbability=1.5", "maxProbability"),
    ("maxProbability=-0.1", "maxProbability"),
    ("label=FAILURE&n%0Ape=1", "n\npe"),
]


@pytest.mark.parametrize(("query", "field"), INVALID, ids=[q for q, _ in INVALID])
def test_each_parameter_is_checked_before_any_query_runs(
    client, auth_headers, db_engine, prediction_reads, query, field
):
    response = client.get(f"{PATH}?{query}", headers=auth_headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == field
    assert prediction_reads == []
    [row] = _audit_rows(db_engine)
    assert (row["http_status"], row["outcome"]) == (400, "invalid")


def test_a_plus_sent_unencoded_is_explained(client, auth_headers):
    response = client.get(f"{PATH}?createdFrom=2026-11-29T08:00:00+02:00", headers=auth_headers)
    assert "%2B" in response.json()["errors"][0]["message"]
    ok = client.get(f"{PATH}?createdFrom=2026-11-29T08:00:00%2B02:00", headers=auth_headers)
    assert ok.status_code == 200


def test_no_token_is_401_and_reads_nothing(client, db_engine, prediction_reads):
    response = client.get(PATH)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert response.headers["www-authenticate"] == 'Bearer realm="failcast"'
    bad = client.get(PATH, headers=_headers("not-a-token"))
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
    assert prediction_reads == []
    assert [r["outcome"] for r in _audit_rows(db_engine)] == ["denied", "denied"]


def test_a_token_without_predictions_read_is_403(client, make_token, prediction_reads):
    headers = _headers(make_token(Scope.PREDICT, Scope.MODELS_READ))
    response = client.get(PATH, headers=headers)
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert prediction_reads == []


def test_head_and_post_are_refused(client, auth_headers, prediction_reads):
    head = client.head(PATH, headers=auth_headers)
    assert head.status_code == 405 and head.headers["allow"] == "GET"
    assert client.post(PATH, headers=auth_headers).status_code == 405
    assert prediction_reads == []


def test_an_export_of_several_batches_is_charged_once_to_the_rate_limit(
    settings, db_engine, active_model, make_token
):
    rows = [(f"bulk-{i}", T0, 0.5) for i in range(12_000)]  # three batches
    seed_predictions(db_engine, active_model.id, rows)
    limited = settings.model_copy(update={"rate_limits": {"predictions:read": (0.001, 2.0)}})
    headers = _headers(make_token(Scope.PREDICTIONS_READ))
    with TestClient(create_app(limited)) as client:
        answers = [client.get(PATH, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [len(_rows(a.content)) for a in answers[:2]] == [12_000, 12_000]
    assert answers[2].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert answers[2].headers["retry-after"]


REFUSE_EXPORT_ROWS = {
    "sqlite": [
        """CREATE TRIGGER refuse_export_rows BEFORE INSERT ON audit_event
           WHEN NEW.operation_type = 'export' AND NEW.http_status = 200
           BEGIN SELECT RAISE(ABORT, 'refused by the test'); END""",
    ],
    "postgresql": [
        """CREATE FUNCTION refuse_export_rows() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.operation_type = 'export' AND NEW.http_status = 200 THEN
               RAISE EXCEPTION 'refused by the test';
             END IF;
             RETURN NEW;
           END $$""",
        """CREATE TRIGGER refuse_export_rows BEFORE INSERT ON audit_event
           FOR EACH ROW EXECUTE FUNCTION refuse_export_rows()""",
    ],
}


@pytest.fixture
def export_rows_refused(db_engine) -> Iterator[None]:
    """The database refuses the audit row of an export answered 200 (other rows go in)."""
    with db_engine.begin() as connection:
        for statement in REFUSE_EXPORT_ROWS[db_engine.dialect.name]:
            connection.execute(sa.text(statement))
    yield
    with db_engine.begin() as connection:
        connection.execute(sa.text("DROP TRIGGER refuse_export_rows ON audit_event")
                           if db_engine.dialect.name == "postgresql"
                           else sa.text("DROP TRIGGER refuse_export_rows"))  # fmt: skip
        if db_engine.dialect.name == "postgresql":
            connection.execute(sa.text("DROP FUNCTION refuse_export_rows()"))


def test_when_the_audit_row_cannot_be_committed_nothing_is_streamed(
    client, auth_headers, seeded, db_engine, export_rows_refused
):
    response = client.get(PATH, headers=auth_headers)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert error["extensions"]["stored"] is False
    assert response.headers["retry-after"]
    assert HEADER not in response.content
    assert all(row["http_status"] != 200 for row in _audit_rows(db_engine))


# -- through a real uvicorn -------------------------------------------------------------------

SERVER_ENV = {"FAILCAST_MODEL_REFRESH_SECONDS": "0.2", "FAILCAST_LOG_LEVEL": "warning"}


def _seed_many(engine, version_id: int, count: int, prefix: str) -> list[Seeded]:
    found: list[Seeded] = []
    for start in range(0, count, 10_000):
        rows = [(f"{prefix}-{i}", T0 + timedelta(seconds=i), (i % 1000) / 1000)
                for i in range(start, min(count, start + 10_000))]  # fmt: skip
        found += seed_predictions(
            engine, version_id, rows, created_at=T0 + timedelta(seconds=start)
        )
    return found


def test_twenty_thousand_rows_arrive_whole_and_audited_before_the_first_byte(
    db_url, db_engine, active_model, tmp_path: Path
):
    seeded = _seed_many(db_engine, active_model.id, 20_000, "whole")
    headers = _headers(server_token("exporter"))
    with (
        run_server(db_url, SERVER_ENV, tmp_path / "uvicorn.log") as server,
        httpx.stream("GET", server.base + PATH, headers=headers, timeout=30) as response,
    ):
        # The headers are here: the audit row must be committed already.
        request_id = response.headers["x-request-id"].replace("-", "")
        found = audit_rows(db_engine).get(request_id)
        body = response.read()
    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"
    assert found is not None, "the answer started before its audit row was committed"
    assert (found["http_status"], found["operation_type"], found["subject"]) == (
        200, "export", "exporter",
    )  # fmt: skip
    rows = _rows(body)
    assert [row["id"] for row in rows] == [str(s.id) for s in seeded]
    assert rows[-1]["deviceId"] == "whole-19999"


LOST_ROWS = 100_000  # ~20 MB: far more than the socket buffers and the batch read ahead hold


def test_a_database_lost_midway_ends_in_a_truncated_transfer(
    pg_url, proxy, db_engine, active_model, tmp_path: Path
):
    _seed_many(db_engine, active_model.id, LOST_ROWS, "lost")
    proxy.start()
    proxied = sa.make_url(pg_url).set(host="127.0.0.1", port=proxy.port)
    log_path = tmp_path / "uvicorn.log"
    # A small receive buffer: once the client stops reading, the server soon waits to send.
    small = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)])
    headers = _headers(server_token("exporter"))
    received = b""
    with run_server(proxied.render_as_string(False), SERVER_ENV, log_path) as server:
        with (
            httpx.Client(transport=small, timeout=30) as client,
            client.stream("GET", server.base + PATH, headers=headers) as response,
        ):
            assert response.status_code == 200
            chunks = response.iter_raw()
            received += next(chunks)
            time.sleep(0.5)  # the server fills the buffers and waits
            proxy.outage()
            with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
                for chunk in chunks:
                    received += chunk
        request_id = response.headers["x-request-id"]
        time.sleep(0.2)
        log = server.log()
    lines = received.count(b"\r\n")
    print(f"\n{lines:,} of {LOST_ROWS:,} rows arrived before the transfer was cut")
    assert HEADER in received and 0 < lines < LOST_ROWS, lines
    assert f"streamed answer broken off [request {request_id}]" in log, log[-3000:]
    row = wait_audit_row(db_engine, request_id)
    assert (row["http_status"], row["outcome"]) == (200, "ok")
