"""predictColumns through the HTTP app: predictBatch's answers, storage and audit, column by
column; its refusals (lengths, the batch limit, a bad value, the scope) audited, nothing stored.

Real rows of the public dataset (devices and days) are sent both ways on SQLite and PostgreSQL,
through the compiled plans and through the GraphQL executor; tests/e2e/test_plans.py holds the
two paths of predictColumns to the same answers for every shape and refusal.
"""

import csv
import gzip
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient
from support import REAL_DATA, count_rows, needs_real_data

from auth import Scope
from graph.app import create_app
from graph.settings import Settings
from model import DEVICE_FEATURES

EXPLANATION = (
    "explanation { kind score baseValue path { feature threshold value goesLeft } "
    "contributions { feature value contribution } }"
)
FIELDS = f"createdAt observedAt deviceId label failureProbability threshold warnings {EXPLANATION}"
BATCH = f"""mutation B($inputs: [PredictInput!]!) {{ predictBatch(inputs: $inputs) {{
  id {FIELDS} input {{ {" ".join(DEVICE_FEATURES)} }} modelVersion {{ version }} subject }} }}"""
COLUMNS = f"""mutation C($input: PredictColumnsInput!) {{ predictColumns(input: $input) {{
  requestId predictionId {FIELDS} input {{ {" ".join(DEVICE_FEATURES)} }}
  modelVersion {{ version }} subject }} }}"""
SHARED = ("createdAt", "threshold", "modelVersion", "subject")  # given once, not per row
AUDITED = (
    "subject", "http_method", "http_path", "http_status", "operation_type", "outcome",
    "error_codes", "predictions_created", "idempotency_key", "replay_of",
)  # fmt: skip


def real_rows(count: int, skip: int = 0) -> list[dict[str, Any]]:
    """Rows of the public dataset as PredictInput values: device, day and counters."""
    rows: list[dict[str, Any]] = []
    with gzip.open(REAL_DATA, "rt", encoding="latin-1") as handle:
        for index, line in enumerate(csv.DictReader(handle)):
            if index < skip:
                continue
            row: dict[str, Any] = {name: float(line[name]) for name in DEVICE_FEATURES}
            row["deviceId"] = line["device"]
            row["observedAt"] = f"{line['date']}T00:00:00Z"
            rows.append(row)
            if len(rows) == count:
                break
    return rows


def columns_of(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows laid out as PredictColumnsInput: one list per field any row gives."""
    names = ("deviceId", "observedAt", *DEVICE_FEATURES)
    return {n: [row.get(n) for row in rows] for n in names if any(n in row for row in rows)}


def rows_of(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """A predictColumns answer as predictBatch's: one object per row."""
    per_row = [key for key in payload if key not in SHARED and key != "requestId"]
    count = len(payload["predictionId"])
    rows = []
    for i in range(count):
        row = {key: payload[key][i] for key in per_row if key != "input"}
        row["id"] = row.pop("predictionId")
        row["input"] = {name: values[i] for name, values in payload["input"].items()}
        rows.append({**row, **{key: payload[key] for key in SHARED}})
    return rows


def _post(client: TestClient, query: str, variables: dict, headers: dict) -> Any:
    return client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)


def _stored(engine: Engine, request_id: str) -> list[dict[str, Any]]:
    """The prediction rows one request stored, in row order (ids are made in row order)."""
    from sqlmodel import select

    from persistence import Prediction, session_scope

    with session_scope(engine) as session:
        found = select(Prediction).where(Prediction.audit_event_id == uuid.UUID(request_id))
        rows = session.exec(found.order_by(Prediction.id)).all()
        return [row.model_dump(exclude={"audit_event_id"}) for row in rows]


def _audit(engine: Engine, request_id: str) -> dict[str, Any]:
    from persistence import AuditRepository, session_scope

    with session_scope(engine) as session:
        event = AuditRepository(session).get(uuid.UUID(request_id))
        assert event is not None, f"no audit row for {request_id}"
        return {name: getattr(event, name) for name in AUDITED}


@pytest.fixture(params=[True, False], ids=["plan", "executor"])
def any_client(request, settings: Settings, db_engine, active_model):
    """The app answering through its compiled plans, or through the GraphQL executor."""
    with TestClient(create_app(settings.model_copy(update={"compiled_plans": request.param}))) as c:
        yield c


@needs_real_data
def test_columns_answer_store_and_audit_what_predict_batch_does(
    any_client, auth_headers, db_engine
):
    rows = real_rows(300)
    batch = _post(any_client, BATCH, {"inputs": rows}, auth_headers)
    columns = _post(any_client, COLUMNS, {"input": columns_of(rows)}, auth_headers)
    assert batch.status_code == columns.status_code == 200
    by_rows, by_columns = batch.json()["data"]["predictBatch"], columns.json()["data"]
    payload = by_columns["predictColumns"]
    assert payload["requestId"] == columns.headers["x-request-id"]
    answered = rows_of(payload)
    assert len(answered) == len(by_rows) == 300
    assert len({row["label"] for row in answered}) == 2  # both classes among the rows
    for mine, theirs in zip(answered, by_rows, strict=True):
        assert {**mine, "id": None, "createdAt": None} == {**theirs, "id": None, "createdAt": None}
    # stored: every column of every row equal, apart from the ids and the request's time
    stored = _stored(db_engine, columns.headers["x-request-id"])
    assert [str(row["id"]) for row in stored] == payload["predictionId"]
    fresh = ("id", "created_at")
    assert [{k: v for k, v in row.items() if k not in fresh} for row in stored] == [
        {k: v for k, v in row.items() if k not in fresh}
        for row in _stored(db_engine, batch.headers["x-request-id"])
    ]
    assert all(row["explanation"] is not None for row in stored)  # selected: stored with it
    assert _audit(db_engine, columns.headers["x-request-id"]) == _audit(
        db_engine, batch.headers["x-request-id"]
    )
    assert count_rows(db_engine, "prediction") == 600


def test_a_column_answer_selecting_no_explanation_stores_none(client, auth_headers, db_engine):
    rows = [{**{n: float(i + 1) for n in DEVICE_FEATURES}, "deviceId": f"d-{i}"} for i in range(5)]
    document = "mutation($c: PredictColumnsInput!) { predictColumns(input: $c) { label } }"
    response = _post(client, document, {"c": columns_of(rows)}, auth_headers)
    assert (
        response.status_code == 200 and len(response.json()["data"]["predictColumns"]["label"]) == 5
    )
    stored = _stored(db_engine, response.headers["x-request-id"])
    assert [row["device_id"] for row in stored] == [f"d-{i}" for i in range(5)]
    assert all(row["explanation"] is None for row in stored)


def _refused(client: TestClient, engine: Engine, columns: Any, headers: dict) -> tuple[dict, dict]:
    """(the error, the audit row) of a refused request; nothing may be stored."""
    response = _post(client, COLUMNS, {"input": columns}, headers)
    body = response.json()
    assert body["data"] is None and len(body["errors"]) == 1, body
    audit = _audit(engine, response.headers["x-request-id"])
    assert audit["predictions_created"] == 0 and count_rows(engine, "prediction") == 0
    return body["errors"][0], audit


ROWS = [{**{n: float(i * 3 + j) for j, n in enumerate(DEVICE_FEATURES)}, "deviceId": f"m-{i}"}
        for i in range(20)]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"metric3": [1.0] * 19}, "input.metric3"),
        ({"deviceId": [f"m-{i}" for i in range(21)]}, "input.deviceId"),
        ({"observedAt": ["2026-11-01T00:00:00Z"]}, "input.observedAt"),
    ],
)
def test_lists_of_different_lengths_are_refused_and_audited(
    any_client, auth_headers, db_engine, change, field
):
    error, audit = _refused(any_client, db_engine, {**columns_of(ROWS), **change}, auth_headers)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == field
    assert "every list must hold one value per row" in error["message"]
    assert audit["outcome"] == "invalid" and audit["error_codes"] == ["BAD_USER_INPUT"]
    assert audit["http_status"] == 200


def test_more_rows_than_the_batch_limit_are_refused_and_audited(
    settings, db_engine, active_model, auth_headers
):
    small = settings.model_copy(update={"max_batch_size": 15})
    for plans in (True, False):
        with TestClient(create_app(small.model_copy(update={"compiled_plans": plans}))) as client:
            error, audit = _refused(client, db_engine, columns_of(ROWS), auth_headers)
            assert error["extensions"] == {
                "field": "input.deviceId",  # the first list over the limit
                "code": "BAD_USER_INPUT",
                "requestId": error["extensions"]["requestId"],
            }
            assert error["message"] == "input.deviceId must hold 1..15 values (one per row), got 20"
            assert audit["outcome"] == "invalid"
            error, _ = _refused(client, db_engine, {n: [] for n in DEVICE_FEATURES}, auth_headers)
            assert error["message"].endswith("got 0")
            fits = _post(client, COLUMNS, {"input": columns_of(ROWS[:15])}, auth_headers)
            assert len(fits.json()["data"]["predictColumns"]["predictionId"]) == 15
            with db_engine.begin() as connection:
                connection.execute(sa.text("DELETE FROM prediction"))


def test_the_default_limit_is_predict_batchs(client, auth_headers, db_engine):
    rows = [ROWS[i % 20] for i in range(1001)]
    error, _ = _refused(client, db_engine, columns_of(rows), auth_headers)
    assert error["extensions"]["field"] == "input.deviceId" and "1..1000" in error["message"]
    whole = _post(client, COLUMNS, {"input": columns_of(rows[:1000])}, auth_headers)
    assert len(whole.json()["data"]["predictColumns"]["failureProbability"]) == 1000


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"metric4": (17, -1.0)}, "input.metric4.17", "input.metric4.17 must be >= 0"),
        ({"metric6": (3, 1e39)}, "input.metric6.3", "input.metric6.3 must be <= 3.402823e+38"),
        ({"deviceId": (9, "x" * 65)}, "input.deviceId.9", "deviceId must be 1..64 characters"),
        (
            {"observedAt": (4, "2026-11-01T08:00:00")},
            "input.observedAt.4",
            "observedAt needs a UTC offset (e.g. 2026-11-29T08:00:00Z)",
        ),
    ],
)
def test_a_bad_value_in_one_column_is_named_by_row_audited_and_nothing_stored(
    any_client, auth_headers, db_engine, change, field, message
):
    columns = columns_of(ROWS)
    for name, (row, value) in change.items():
        values = columns.get(name, [None] * len(ROWS))
        columns[name] = [value if i == row else v for i, v in enumerate(values)]
    error, audit = _refused(any_client, db_engine, columns, auth_headers)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert (error["extensions"]["field"], error["message"]) == (field, message)
    assert error["path"] == ["predictColumns"]
    assert audit["outcome"] == "invalid" and audit["error_codes"] == ["BAD_USER_INPUT"]
    # predictBatch refuses the same row with the same rule, naming it as a row of its list
    rows = [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]
    batch = _post(any_client, BATCH, {"inputs": rows}, auth_headers).json()["errors"][0]
    name, row = field.split(".")[1:]
    assert batch["extensions"]["field"] == f"inputs.{row}.{name}"


def test_a_value_of_the_wrong_type_is_a_coercion_error(any_client, auth_headers, db_engine):
    columns = {**columns_of(ROWS), "metric2": ["many", *[0.0] * 19]}
    error, audit = _refused(any_client, db_engine, columns, auth_headers)
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "metric2" in error["message"]
    assert audit["outcome"] == "invalid"


@pytest.mark.parametrize(
    ("scopes", "status", "code", "outcome"),
    [
        (None, 401, "UNAUTHENTICATED", "denied"),
        ((Scope.PREDICTIONS_READ, Scope.MODELS_READ), 200, "FORBIDDEN", "denied"),
    ],
)
def test_the_predict_scope_is_needed(
    any_client, make_token, db_engine, scopes, status, code, outcome
):
    headers = {} if scopes is None else {"Authorization": f"Bearer {make_token(*scopes)}"}
    response = _post(any_client, COLUMNS, {"input": columns_of(ROWS)}, headers)
    assert response.status_code == status
    body = response.json()
    assert body["data"] is None and [e["extensions"]["code"] for e in body["errors"]] == [code]
    audit = _audit(db_engine, response.headers["x-request-id"])
    assert audit["outcome"] == outcome and count_rows(db_engine, "prediction") == 0
    granted = {"Authorization": f"Bearer {make_token(Scope.PREDICT)}"}
    served = _post(any_client, COLUMNS, {"input": columns_of(ROWS)}, granted)
    assert len(served.json()["data"]["predictColumns"]["label"]) == len(ROWS)


def test_an_idempotency_key_replays_the_first_answer(any_client, auth_headers, db_engine):
    headers = {**auth_headers, "Idempotency-Key": "fleet/2026-11-30"}
    first = _post(any_client, COLUMNS, {"input": columns_of(ROWS)}, headers)
    again = _post(any_client, COLUMNS, {"input": columns_of(ROWS)}, headers)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert count_rows(db_engine, "prediction") == len(ROWS)
    replay = _audit(db_engine, again.headers["x-request-id"])
    assert replay["replay_of"] == uuid.UUID(first.headers["x-request-id"])
    assert replay["predictions_created"] == 0
    other = _post(any_client, COLUMNS, {"input": columns_of(ROWS[:3])}, headers)
    assert other.status_code == 422
    assert other.json()["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
