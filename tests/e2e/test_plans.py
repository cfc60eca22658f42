"""Compiled plans (graph/schema/plans.py) answer exactly as the GraphQL executor does.

Two apps share one database: one with plans, one without (`compiled_plans=False`). Every case is
sent to both; the bodies, statuses and the audit rows must be the same, apart from the values
that are new on every call (ids, times, request ids), whose form is checked instead. The widest
document is generated from the schema's own types, so a field added to `Prediction`, `Metrics`
or `ModelVersion` is either served by the plan or fails these tests.
"""

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient
from support import ORIGINAL_EXAMPLE

from auth import Scope
from graph.app import create_app
from graph.schema import build_schema
from graph.schema.plans import EXECUTOR_ONLY, compile_plan
from graph.settings import Settings
from persistence import AuditRepository, session_scope

ROW = {**ORIGINAL_EXAMPLE, "deviceId": "D-1"}
ROWS = [
    ROW,
    {**ORIGINAL_EXAMPLE, "metric4": 900.5, "metric2": 100000, "deviceId": None},
    {**{k: float(v) for k, v in ORIGINAL_EXAMPLE.items()}, "metric7": 80},
    {**ORIGINAL_EXAMPLE, "observedAt": "2026-11-28T09:30:00+02:00"},
]

FULL = """mutation Full($rows: [PredictInput!]!) { predictBatch(inputs: $rows) {
  __typename key: id id createdAt deviceId label failureProbability threshold
  input { __typename metric1 metric2 metric3 metric4 metric5 metric6 metric7 metric9 } } }"""
ALIASED = """mutation A($rows: [PredictInput!]!) {
  scored: predictBatch(inputs: $rows) { p: failureProbability label m: input { metric9 x: metric1 } } }"""
SINGLE = """mutation S($one: PredictInput!) {
  predict(input: $one) { id label failureProbability threshold deviceId input { metric1 metric7 } } }"""
ANONYMOUS = "mutation($one: PredictInput!) { predict(input: $one) { label } }"
MULTI = """query Q { me { subject } }
mutation M($rows: [PredictInput!]!) { predictBatch(inputs: $rows) { label deviceId } }"""
MODEL = (
    "mutation V($one: PredictInput!) { predict(input: $one) { label modelVersion { version } } }"
)


def _selection(type_: Any, depth: int = 0) -> str:
    """Every field of an object type, recursively: the widest selection the schema allows."""
    from graphql import GraphQLObjectType, get_named_type

    parts = ["__typename"]
    for name, field in type_.fields.items():
        if f"{type_.name}.{name}" in EXECUTOR_ONLY:
            continue  # a plan declines these: the EVALUATIONS case below
        inner = get_named_type(field.type)
        if isinstance(inner, GraphQLObjectType):
            parts.append(f"{name} {{ {_selection(inner, depth + 1)} }}")
        else:
            parts.append(name)
    return " ".join(parts)


_PREDICTION = build_schema()._schema.type_map["Prediction"]
VERSIONED = (
    "mutation W($rows: [PredictInput!]!) { predictBatch(inputs: $rows) { "
    + _selection(_PREDICTION)
    + " again: modelVersion { v: version } } }"
)
PLANNED = [(FULL, None), (ALIASED, None), (SINGLE, None), (ANONYMOUS, None), (MULTI, "M")]
PLANNED += [(MODEL, None), (VERSIONED, None)]

FRAGMENT = """mutation F($rows: [PredictInput!]!) { predictBatch(inputs: $rows) { ...P } }
fragment P on Prediction { label failureProbability }"""
IN_FRAGMENT = """mutation G($one: PredictInput!) { predict(input: $one) { modelVersion { ...V } } }
fragment V on ModelVersion { version }"""
DIRECTIVE = """mutation D($one: PredictInput!, $x: Boolean!) {
  predict(input: $one) { label deviceId @include(if: $x) } }"""
LITERAL = (
    "mutation L { predict(input: {metric1: 1, metric2: 0, metric3: 0, metric4: 0, metric5: 1,"
    " metric6: 5, metric7: 0, metric9: 0}) { label } }"
)
TWO = "mutation T($one: PredictInput!) { a: predict(input: $one) { label } b: predict(input: $one) { id } }"
EVALUATIONS = """mutation E($one: PredictInput!) {
  predict(input: $one) { label modelVersion { version evaluations { passed } } } }"""
NOT_PLANNED = [(FRAGMENT, None), (IN_FRAGMENT, None), (DIRECTIVE, None), (LITERAL, None)]
NOT_PLANNED += [(EVALUATIONS, None), (TWO, None)]
NOT_PLANNED += [(MULTI, "Q"), (MULTI, None)]  # a query; no operation chosen

BAD_BATCHES = [
    [ROW, {**ROW, "metric3": -1}],  # the use case refuses it: the plan answers
    [{**ROW, "deviceId": "\x07"}],
    [{**ROW, "deviceId": "d" * 65}],
    [{**ROW, "metric5": 10**40}],  # finite, beyond float32
    [{**ROW, "metric5": 1e308}],
    [ROW] * 1001,
    [],  # the executor answers the rest
    [{**ROW, "metric1": "5"}],
    [{**ROW, "metric1": True}],
    [{**ROW, "metric1": None}],
    [{k: v for k, v in ROW.items() if k != "metric9"}],
    [{**ROW, "metric8": 0}],
    [{**ROW, "deviceId": 7}],
    [[ROW]],
    ROW,  # one object where a list is declared: coerced to a list of one
    "rows",
    None,
]
BAD_SINGLES = [{**ROW, "metric2": -0.5}, {**ROW, "metric2": "1"}, [ROW], None, {}]
BAD_SINGLES += [
    {**ROW, "observedAt": "2026-11-28T09:30:00"},  # no offset: the use case refuses it
    {**ROW, "observedAt": "1999-01-01T00:00:00Z"},
    {**ROW, "observedAt": "yesterday"},  # the executor's coercion error
    {**ROW, "observedAt": 5},
]


@pytest.fixture
def pair(settings: Settings, db_engine: Engine, active_model: Any) -> Iterator[tuple[Any, Any]]:
    """(client with plans, client without), on the same database and model."""
    # Two live apps share the deployment's rate: make it one neither can reach.
    roomy = settings.model_copy(update={"rate_limits": {"predict": (1e6, 1e6)}})
    without = roomy.model_copy(update={"compiled_plans": False})
    with TestClient(create_app(roomy)) as planned, TestClient(create_app(without)) as plain:
        yield planned, plain


def _post(client: TestClient, query: str, variables: Any, name: str | None, headers: dict) -> Any:
    payload = {"query": query, "variables": variables, "operationName": name}
    return client.post("/graphql", json=payload, headers=headers)


_FRESH = {"id", "key", "createdAt", "observedAt", "requestId", "predictionId", "ids"}


def _normal(value: Any, key: str | None = None) -> Any:
    """The body with every per-call value replaced by its kind, after checking its form."""
    if isinstance(value, dict):
        return {k: _normal(v, k) for k, v in value.items()}
    if isinstance(value, list):  # a column of per-call values keeps its key
        return [_normal(v, key if key in _FRESH else None) for v in value]
    if key in _FRESH and isinstance(value, str):
        if key in ("createdAt", "observedAt"):
            assert datetime.fromisoformat(value).tzinfo is not None
        elif value == "test-1":
            return value  # a model version's id is its name: stable, compared as it is
        else:
            uuid.UUID(value)
        return f"<{key}>"
    return value


AUDIT_FIELDS = (
    "http_status", "operation_type", "operation_name", "query_sha256", "outcome", "error_codes",
    "predictions_created", "subject",
)  # fmt: skip


def _audit(engine: Engine, request_id: str) -> dict[str, Any]:
    with session_scope(engine) as session:
        event = AuditRepository(session).get(uuid.UUID(request_id))
        assert event is not None, f"no audit row for request {request_id}"
        return {name: getattr(event, name) for name in AUDIT_FIELDS}


def _answer(
    client: TestClient, engine: Engine, query: str, variables: Any, name: Any, headers: dict
):
    """(status, normalised body, audit row) of one request."""
    response = _post(client, query, variables, name, headers)
    audit = _audit(engine, response.headers["x-request-id"])
    return response.status_code, _normal(response.json()), audit


def _both(pair: Any, engine: Engine, query: str, variables: Any, name: str | None, headers: dict):
    return [_answer(client, engine, query, variables, name, headers) for client in pair]


def _plan(app: Any, query: str, name: str | None) -> Any:
    executor = app.state.executor
    prepared = executor.documents.prepare(query)
    try:
        operation = prepared.operation(name)
    except Exception:
        return None
    return compile_plan(executor.graphql_schema, prepared.document, operation.node)


def test_plans_serve_the_usual_shapes_and_decline_the_rest(pair):
    app = pair[0].app
    missing = [query for query, name in PLANNED if _plan(app, query, name) is None]
    assert missing == [], "graph/schema/plans.py declines a document it should serve"
    assert all(_plan(app, query, name) is None for query, name in NOT_PLANNED)
    assert not pair[1].app.state.executor.plans_enabled  # switched off


def test_planned_answers_never_reach_the_executor(pair, auth_headers, monkeypatch):
    executor = pair[0].app.state.executor

    async def executor_called(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the executor ran for a planned document")

    monkeypatch.setattr(executor, "_execute", executor_called)
    response = _post(pair[0], FULL, {"rows": ROWS}, None, auth_headers)
    assert response.status_code == 200 and len(response.json()["data"]["predictBatch"]) == len(ROWS)


def _variables(query: str, value: Any) -> dict[str, Any]:
    name = "rows" if "$rows" in query else "one"
    extra = {"x": True} if "$x" in query else {}
    return {name: value, **extra}


@pytest.mark.parametrize(("query", "name"), PLANNED + NOT_PLANNED[:6])
def test_same_answers_for_good_input(pair, db_engine, auth_headers, query, name):
    value = ROWS if "$rows" in query else ROW
    planned, plain = _both(pair, db_engine, query, _variables(query, value), name, auth_headers)
    assert planned == plain
    assert planned[0] == 200 and "errors" not in planned[1] and planned[2]["outcome"] == "ok"


@pytest.mark.parametrize("rows", BAD_BATCHES, ids=range(len(BAD_BATCHES)))
def test_same_answers_for_bad_batches(pair, db_engine, auth_headers, rows):
    for query, name in [(FULL, None), (MULTI, "M")]:
        planned, plain = _both(pair, db_engine, query, {"rows": rows}, name, auth_headers)
        assert planned == plain
        if rows is not ROW:  # a single object is a valid list of one
            assert planned[1]["data"] is None and planned[2]["predictions_created"] == 0


@pytest.mark.parametrize("row", BAD_SINGLES, ids=range(len(BAD_SINGLES)))
def test_same_answers_for_bad_single_inputs(pair, db_engine, auth_headers, row):
    planned, plain = _both(pair, db_engine, SINGLE, {"one": row}, None, auth_headers)
    assert planned == plain
    assert planned[1]["data"] is None and planned[2]["outcome"] == "invalid"


def test_same_answers_without_a_token_or_the_scope(pair, db_engine, make_token):
    reader = {"Authorization": f"Bearer {make_token(Scope.PREDICTIONS_READ)}"}
    for headers, code in [({}, "UNAUTHENTICATED"), (reader, "FORBIDDEN")]:
        for query in (FULL, SINGLE):
            value = ROWS if query is FULL else ROW
            planned, plain = _both(pair, db_engine, query, _variables(query, value), None, headers)
            assert planned == plain
            assert [e["extensions"]["code"] for e in planned[1]["errors"]] == [code]


def test_same_answers_when_rate_limited(settings, db_engine, active_model, auth_headers):
    tight = settings.model_copy(update={"rate_limits": {"predict": (0.001, 5.0)}})
    runs = []
    for plans in (True, False):  # one app at a time: each then has the whole rate
        with TestClient(create_app(tight.model_copy(update={"compiled_plans": plans}))) as client:
            runs.append(
                [
                    _answer(client, db_engine, FULL, {"rows": rows}, None, auth_headers)
                    for rows in (ROWS, ROWS, ROWS[:1])  # 3 + 3 > 5: the second is refused
                ]
            )
    assert runs[0] == runs[1]
    assert [status for status, _, _ in runs[0]] == [200, 429, 200]


def test_same_answers_with_no_model_to_serve(settings, db_engine, auth_headers):
    without = settings.model_copy(update={"compiled_plans": False})
    with TestClient(create_app(settings)) as planned, TestClient(create_app(without)) as plain:
        answer = _both((planned, plain), db_engine, FULL, {"rows": ROWS}, None, auth_headers)
    assert answer[0] == answer[1]
    assert answer[0][1]["errors"][0]["extensions"]["code"] == "MODEL_UNAVAILABLE"


def test_same_answers_when_the_operation_outlives_its_time_limit(
    settings, db_engine, active_model, auth_headers
):
    hasty = settings.model_copy(update={"request_timeout_seconds": 1e-6})
    without = hasty.model_copy(update={"compiled_plans": False})
    with TestClient(create_app(hasty)) as planned, TestClient(create_app(without)) as plain:
        answer = _both((planned, plain), db_engine, FULL, {"rows": ROWS}, None, auth_headers)
    assert answer[0] == answer[1]
    assert answer[0][1]["errors"][0]["extensions"]["code"] == "TIMEOUT"
    assert answer[0][2]["predictions_created"] == 0


# predictColumns: the same two paths, the same comparisons.
def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows laid out as PredictColumnsInput: one list per field any row gives."""
    names = ["deviceId", "observedAt", *(k for k in ORIGINAL_EXAMPLE)]
    given = [name for name in names if any(name in row for row in rows)]
    return {name: [row.get(name) for row in rows] for name in given}


COLS = _columns(ROWS)
PLAIN_COLS = {k: v for k, v in COLS.items() if k not in ("deviceId", "observedAt")}
_PAYLOAD = build_schema()._schema.type_map["PredictColumnsPayload"]
COLUMNS_WIDE = (
    "mutation K($cols: PredictColumnsInput!) { predictColumns(input: $cols) { "
    + _selection(_PAYLOAD)
    + " again: modelVersion { v: version } p: failureProbability } }"
)
COLUMNS_NARROW = """mutation N($cols: PredictColumnsInput!) {
  scored: predictColumns(input: $cols) { failureProbability label ids: predictionId } }"""
COLUMNS_MULTI = """query Q { me { subject } }
mutation M($cols: PredictColumnsInput!) { predictColumns(input: $cols) { deviceId label } }"""
COLUMNS_PLANNED = [(COLUMNS_WIDE, None), (COLUMNS_NARROW, None), (COLUMNS_MULTI, "M")]
COLUMNS_NOT_PLANNED = [
    (
        """mutation F($cols: PredictColumnsInput!) { predictColumns(input: $cols) { ...P } }
fragment P on PredictColumnsPayload { label failureProbability }""",
        None,
    ),
    (
        """mutation D($cols: PredictColumnsInput!, $x: Boolean!) {
  predictColumns(input: $cols) { label deviceId @include(if: $x) } }""",
        None,
    ),
    (
        "mutation L { predictColumns(input: {metric1: [1], metric2: [0], metric3: [0], "
        "metric4: [0], metric5: [1], metric6: [5], metric7: [0], metric9: [0]}) { label } }",
        None,
    ),
    (
        """mutation E($cols: PredictColumnsInput!) {
  predictColumns(input: $cols) { label modelVersion { version evaluations { passed } } } }""",
        None,
    ),
    (
        """mutation T($cols: PredictColumnsInput!) {
  a: predictColumns(input: $cols) { label } b: predictColumns(input: $cols) { label } }""",
        None,
    ),
]
BAD_COLUMNS = [
    {**COLS, "metric3": COLS["metric3"][:-1]},  # lengths differ: the use case refuses them
    {**COLS, "deviceId": [*COLS["deviceId"], "D-9"]},
    {k: v * 251 for k, v in COLS.items()},  # 1,004 rows
    {k: [] for k in PLAIN_COLS},
    {**COLS, "metric3": [0, -1, 0, 0]},
    {**COLS, "deviceId": ["D-1", "\x07", None, None]},
    {**COLS, "deviceId": ["D-1", "d" * 65, None, None]},
    {**COLS, "metric5": [6, 10**40, 6, 6]},  # finite, beyond float32
    {**COLS, "metric5": [6, 6, 1e308, 6]},
    {**COLS, "observedAt": [None, "2026-11-28T09:30:00", None, None]},  # no offset
    {**COLS, "observedAt": [None, "1999-01-01T00:00:00Z", None, None]},
    {**COLS, "metric1": [1, "5", 2, 3]},  # the executor answers the rest
    {**COLS, "metric1": [1, True, 2, 3]},
    {**COLS, "metric1": [1, None, 2, 3]},
    {k: v for k, v in COLS.items() if k != "metric9"},
    {**COLS, "metric8": [0, 0, 0, 0]},
    {**COLS, "deviceId": [7, None, None, None]},
    {**COLS, "observedAt": [None, "yesterday", None, None]},
    {**COLS, "observedAt": [None, 5, None, None]},
    [COLS],
    "cols",
    None,
]


def test_columns_plans_serve_the_usual_shapes_and_decline_the_rest(pair):
    app = pair[0].app
    assert [q for q, name in COLUMNS_PLANNED if _plan(app, q, name) is None] == []
    assert all(_plan(app, query, name) is None for query, name in COLUMNS_NOT_PLANNED)


def test_planned_columns_never_reach_the_executor(pair, auth_headers, monkeypatch):
    async def executor_called(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the executor ran for a planned document")

    monkeypatch.setattr(pair[0].app.state.executor, "_execute", executor_called)
    response = _post(pair[0], COLUMNS_WIDE, {"cols": COLS}, None, auth_headers)
    assert response.status_code == 200
    assert len(response.json()["data"]["predictColumns"]["predictionId"]) == len(ROWS)


@pytest.mark.parametrize(
    ("query", "name"), COLUMNS_PLANNED + COLUMNS_NOT_PLANNED[:2] + COLUMNS_NOT_PLANNED[3:]
)
@pytest.mark.parametrize("columns", [COLS, PLAIN_COLS], ids=["all-lists", "counters-only"])
def test_same_column_answers_for_good_input(pair, db_engine, auth_headers, query, name, columns):
    variables = {"cols": columns, **({"x": True} if "$x" in query else {})}
    planned, plain = _both(pair, db_engine, query, variables, name, auth_headers)
    assert planned == plain
    assert planned[0] == 200 and "errors" not in planned[1] and planned[2]["outcome"] == "ok"
    assert planned[2]["predictions_created"] == len(ROWS) * (2 if " b: " in query else 1)


def test_same_column_answers_for_a_column_sent_as_one_value(pair, db_engine, auth_headers):
    one = {k: v[0] for k, v in PLAIN_COLS.items()}  # GraphQL coerces a value to a list of one
    planned, plain = _both(pair, db_engine, COLUMNS_WIDE, {"cols": one}, None, auth_headers)
    assert planned == plain and planned[2]["predictions_created"] == 1


@pytest.mark.parametrize("columns", BAD_COLUMNS, ids=range(len(BAD_COLUMNS)))
def test_same_answers_for_bad_columns(pair, db_engine, auth_headers, columns):
    for query, name in [(COLUMNS_WIDE, None), (COLUMNS_MULTI, "M")]:
        planned, plain = _both(pair, db_engine, query, {"cols": columns}, name, auth_headers)
        assert planned == plain
        assert planned[1]["data"] is None and planned[2]["predictions_created"] == 0
        assert planned[2]["outcome"] == "invalid"


def test_same_column_answers_without_a_token_or_the_scope(pair, db_engine, make_token):
    reader = {"Authorization": f"Bearer {make_token(Scope.PREDICTIONS_READ)}"}
    for headers, code in [({}, "UNAUTHENTICATED"), (reader, "FORBIDDEN")]:
        planned, plain = _both(pair, db_engine, COLUMNS_WIDE, {"cols": COLS}, None, headers)
        assert planned == plain
        assert [e["extensions"]["code"] for e in planned[1]["errors"]] == [code]
        assert planned[2]["outcome"] == "denied" and planned[2]["predictions_created"] == 0


def test_same_column_answers_when_rate_limited(settings, db_engine, active_model, auth_headers):
    tight = settings.model_copy(update={"rate_limits": {"predict": (0.001, 5.0)}})
    three = {k: v[:3] for k, v in COLS.items()}
    runs = []
    for plans in (True, False):  # one app at a time: each then has the whole rate
        with TestClient(create_app(tight.model_copy(update={"compiled_plans": plans}))) as client:
            runs.append(
                [
                    _answer(client, db_engine, COLUMNS_WIDE, {"cols": c}, None, auth_headers)
                    for c in (three, three, {k: v[:1] for k, v in COLS.items()})
                ]  # a row costs one: 3 + 3 > 5, so the second is refused
            )
    assert runs[0] == runs[1]
    assert [status for status, _, _ in runs[0]] == [200, 429, 200]


def _column_pair_answer(config: Settings, engine: Engine, headers: dict) -> list[Any]:
    without = config.model_copy(update={"compiled_plans": False})
    with TestClient(create_app(config)) as planned, TestClient(create_app(without)) as plain:
        return _both((planned, plain), engine, COLUMNS_WIDE, {"cols": COLS}, None, headers)


def test_same_column_answers_with_no_model_to_serve(settings, db_engine, auth_headers):
    answer = _column_pair_answer(settings, db_engine, auth_headers)
    assert answer[0] == answer[1]
    assert answer[0][1]["errors"][0]["extensions"]["code"] == "MODEL_UNAVAILABLE"


def test_same_column_answers_when_the_operation_outlives_its_time_limit(
    settings, db_engine, active_model, auth_headers
):
    hasty = settings.model_copy(update={"request_timeout_seconds": 1e-6})
    answer = _column_pair_answer(hasty, db_engine, auth_headers)
    assert answer[0] == answer[1]
    assert answer[0][1]["errors"][0]["extensions"]["code"] == "TIMEOUT"
    assert answer[0][2]["predictions_created"] == 0
