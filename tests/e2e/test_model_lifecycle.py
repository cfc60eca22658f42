"""Promote and roll back through the API: one transaction with the audit row, a history that
says who and why, versions refused up front when they cannot serve, scopes enforced."""

import uuid

import pytest
from support import ORIGINAL_EXAMPLE, count_rows, gql, register_version

from auth import Scope
from model import DEVICE_FEATURES, ArtifactMetadata, dump_artifact
from persistence import AuditRepository, Conflict, ModelVersionRepository, lifecycle, session_scope

ACTIVATE = """mutation A($v: String!, $r: String) {
  activateModelVersion(version: $v, reason: $r) { version isActive activatedAt }
}"""
ROLLBACK = "mutation R($r: String) { rollbackModel(reason: $r) { version isActive } }"
HISTORY = """query H($first: Int, $after: String) {
  modelActivations(first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { id activatedAt subject fromVersion toVersion reason via requestId }
  }
}"""
SERVING = "mutation P($i: PredictInput!) { predict(input: $i) { id modelVersion { version } } }"


@pytest.fixture
def second(db_engine, demo_estimator) -> str:
    """Another servable version (same tree, another threshold), registered inactive."""
    metadata = ArtifactMetadata("decision_tree", DEVICE_FEATURES, 0.6, {"max_depth": 4})
    register_version(db_engine, dump_artifact(demo_estimator, metadata), "v2", activate=False)
    return "v2"


def _headers(make_token, *scopes: Scope, subject: str = "ops-alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(*scopes, subject=subject)}"}


def _serving(client, auth_headers) -> str:
    body = gql(client, SERVING, {"i": ORIGINAL_EXAMPLE}, auth_headers)
    return str(body["data"]["predict"]["modelVersion"]["version"])


def _audit(db_engine, request_id: str):
    with session_scope(db_engine) as session:
        return AuditRepository(session).get(uuid.UUID(request_id))


def _history(client, auth_headers, first: int = 20, after: str | None = None) -> dict:
    body = gql(client, HISTORY, {"first": first, "after": after}, auth_headers)
    assert "errors" not in body, body
    return dict(body["data"]["modelActivations"])


def test_activation_switches_records_who_and_why_and_serves_at_once(
    client, auth_headers, make_token, active_model, second, db_engine
):
    headers = _headers(make_token, Scope.MODELS_WRITE)
    response = client.post(
        "/graphql",
        json={"query": ACTIVATE, "variables": {"v": second, "r": "better recall on Q3 data"}},
        headers=headers,
    )
    answered = response.json()["data"]["activateModelVersion"]
    assert answered["version"] == second and answered["isActive"]
    # This process serves it from the answer on; the registry says the same.
    assert _serving(client, auth_headers) == second
    with session_scope(db_engine) as session:
        assert ModelVersionRepository(session).active().version == second
    [latest, *_] = _history(client, auth_headers)["nodes"]
    assert latest["fromVersion"] == active_model.version and latest["toVersion"] == second
    assert (latest["subject"], latest["reason"], latest["via"]) == (
        "ops-alice",
        "better recall on Q3 data",
        "api",
    )
    assert latest["requestId"] == response.headers["x-request-id"]
    assert latest["activatedAt"] == answered["activatedAt"]
    row = _audit(db_engine, latest["requestId"])
    assert (row.operation_name, row.outcome) == ("A", "ok")


def test_rollback_goes_back_to_the_version_active_before(
    client, auth_headers, active_model, second
):
    gql(client, ACTIVATE, {"v": second}, auth_headers)
    body = gql(client, ROLLBACK, {"r": "alerts doubled"}, auth_headers)
    assert body["data"]["rollbackModel"] == {"version": active_model.version, "isActive": True}
    assert _serving(client, auth_headers) == active_model.version
    nodes = _history(client, auth_headers)["nodes"]
    assert [(n["fromVersion"], n["toVersion"]) for n in nodes[:2]] == [
        (second, active_model.version),
        (active_model.version, second),
    ]
    assert nodes[0]["reason"] == "alerts doubled"


def test_rollback_without_a_previous_version_is_a_conflict_and_changes_nothing(
    client, auth_headers, active_model, db_engine
):
    before = count_rows(db_engine, "model_activation")
    body = gql(client, ROLLBACK, {}, auth_headers)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "CONFLICT"
    assert "nothing to roll back to" in error["message"]
    assert count_rows(db_engine, "model_activation") == before


def test_activating_the_active_version_changes_and_records_nothing(
    client, auth_headers, active_model, db_engine
):
    before = count_rows(db_engine, "model_activation")
    body = gql(client, ACTIVATE, {"v": active_model.version}, auth_headers)
    assert body["data"]["activateModelVersion"]["isActive"]
    assert count_rows(db_engine, "model_activation") == before


def test_an_unknown_version_is_not_found_and_audited_as_invalid(client, auth_headers, db_engine):
    before = count_rows(db_engine, "model_activation")
    response = client.post(
        "/graphql", json={"query": ACTIVATE, "variables": {"v": "no-such"}}, headers=auth_headers
    )
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "NOT_FOUND" and error["extensions"]["field"] == "version"
    assert count_rows(db_engine, "model_activation") == before
    row = _audit(db_engine, response.headers["x-request-id"])
    assert (row.outcome, row.error_codes) == ("invalid", ["NOT_FOUND"])


def test_a_version_that_cannot_serve_is_refused_before_the_switch(
    client, auth_headers, active_model, second, db_engine
):
    with session_scope(db_engine) as session:
        row = ModelVersionRepository(session).get(second)
        golden = dict(row.golden_set)
        golden["probabilities"] = [p + 0.01 for p in golden["probabilities"]]
        row.golden_set = golden
        session.add(row)
    body = gql(client, ACTIVATE, {"v": second}, auth_headers)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "CONFLICT"
    assert "cannot be served: golden set row" in error["message"]
    assert _serving(client, auth_headers) == active_model.version
    with session_scope(db_engine) as session:
        assert ModelVersionRepository(session).active().version == active_model.version


@pytest.mark.parametrize(
    ("reason", "message", "field"),
    [
        ("x" * 1001, "1..1000 characters", "reason"),
        ("   ", "1..1000 characters", "reason"),
        # refused in every variable before any query runs, naming the variable
        ("line one\nline two", "control characters", "r"),
    ],
    ids=["too-long", "blank", "control-character"],
)
def test_a_bad_reason_is_refused(client, auth_headers, second, reason, message, field):
    body = gql(client, ACTIVATE, {"v": second, "r": reason}, auth_headers)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and message in error["message"]
    assert error["extensions"]["field"] == field


def test_switching_needs_models_write_and_the_history_models_read(
    client, make_token, second, db_engine
):
    reader = _headers(make_token, Scope.MODELS_READ, Scope.PREDICT)
    for query, variables in ((ACTIVATE, {"v": second}), (ROLLBACK, {})):
        [error] = gql(client, query, variables, reader)["errors"]
        assert error["extensions"]["code"] == "FORBIDDEN"
    writer = _headers(make_token, Scope.MODELS_WRITE)
    [error] = gql(client, HISTORY, {}, writer)["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert _history(client, reader)["totalCount"] >= 1


def test_the_history_pages_newest_first(client, auth_headers, active_model, second):
    for version in (second, active_model.version, second):
        gql(client, ACTIVATE, {"v": version}, auth_headers)
    first = _history(client, auth_headers, first=2)
    assert first["totalCount"] == 4 and first["pageInfo"]["hasNextPage"]
    rest = _history(client, auth_headers, first=2, after=first["pageInfo"]["endCursor"])
    assert not rest["pageInfo"]["hasNextPage"]
    nodes = first["nodes"] + rest["nodes"]
    assert [int(n["id"]) for n in nodes] == sorted((int(n["id"]) for n in nodes), reverse=True)
    # The oldest: the registration of the first version (through the repository, as the CLI).
    assert (nodes[-1]["fromVersion"], nodes[-1]["toVersion"], nodes[-1]["via"]) == (
        None,
        active_model.version,
        "cli",
    )


def test_a_switch_decided_on_a_stale_view_is_a_conflict(db_engine, active_model, second):
    with session_scope(db_engine) as session:
        target = ModelVersionRepository(session).get(second).id
    stale = lifecycle.Activation(target, from_version_id=None, via="api")
    with pytest.raises(Conflict), db_engine.begin() as connection:
        stale.apply(connection)
    with session_scope(db_engine) as session:
        assert ModelVersionRepository(session).active().version == active_model.version
