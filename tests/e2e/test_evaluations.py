"""ModelVersion.evaluations: the stored runs of `failcast evaluate`, newest first, batched."""

from datetime import UTC, datetime, timedelta

from starlette.testclient import TestClient
from support import count_statements, gql, register_version

from auth import Scope
from graph.app import create_app
from persistence import ModelEvaluation, session_scope
from persistence.evaluations import add_evaluation

QUERY = """query E($n: Int) { modelVersions { version
  evaluations(first: $n) { id evaluatedAt dataSource dataSha256 dataRows dataFailures
    sameDataAsTraining metrics tolerance passed findings hostname } } }"""


def _run(engine, version_id: int, minutes: int, passed: bool) -> None:
    row = ModelEvaluation(
        model_version_id=version_id,
        evaluated_at=datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=minutes),
        data_source=f"run-{minutes}.csv",
        data_sha256="ab" * 32,
        data_rows=100 + minutes,
        data_failures=3,
        same_data_as_training=False,
        metrics={"recall": 0.5, "precision": 0.25},
        tolerance=0.1,
        passed=passed,
        findings=[] if passed else ["recall 0.5000 is 0.2000 below the training test set's 0.7000"],
        hostname="ci",
    )
    with session_scope(engine) as session:
        add_evaluation(session, row)


def test_evaluations_are_listed_newest_first_and_batched(
    settings, db_engine, demo_artifact, auth_headers, make_token
):
    first = register_version(db_engine, demo_artifact, "v-1")
    second = register_version(db_engine, demo_artifact, "v-2", activate=False)
    for minutes, passed in ((1, True), (2, False), (3, True)):
        _run(db_engine, first.id, minutes, passed)
    _run(db_engine, second.id, 9, False)
    quiet = settings.model_copy(update={"model_refresh_seconds": 600, "heartbeat_seconds": 600,
                                        "audit_seal_interval_seconds": 600,
                                        "refusal_tally_seconds": 600})  # fmt: skip
    with TestClient(create_app(quiet)) as client:
        body = gql(client, QUERY, {"n": 2}, auth_headers)
        versions = {v["version"]: v["evaluations"] for v in body["data"]["modelVersions"]}
        assert [r["dataSource"] for r in versions["v-1"]] == ["run-3.csv", "run-2.csv"]
        assert [r["dataSource"] for r in versions["v-2"]] == ["run-9.csv"]
        failed = versions["v-1"][1]
        assert failed["passed"] is False and failed["findings"][0].startswith("recall 0.5000")
        assert failed["metrics"] == {"recall": 0.5, "precision": 0.25} and failed["dataRows"] == 102
        assert failed["evaluatedAt"] == "2026-11-01T00:02:00+00:00" and failed["hostname"] == "ci"
        everything = gql(client, QUERY, {}, auth_headers)["data"]["modelVersions"]
        assert sum(len(v["evaluations"]) for v in everything) == 4  # default: up to 20 each
        # One query for the evaluations of every version on the page.
        engine = client.app.state.runtime.engine
        one = '{ modelVersion(version: "v-1") { evaluations { id } } }'
        single = count_statements(engine, lambda: gql(client, one, None, auth_headers))
        both = count_statements(engine, lambda: gql(client, QUERY, {"n": 5}, auth_headers))
        assert both == single, (both, single)
        error = gql(client, QUERY, {"n": 0}, auth_headers)["errors"][0]
        assert (
            error["extensions"]["code"] == "BAD_USER_INPUT"
            and error["extensions"]["field"] == "first"
        )
        reader = {"Authorization": f"Bearer {make_token(Scope.PREDICTIONS_READ)}"}
        assert gql(client, QUERY, {}, reader)["errors"][0]["extensions"]["code"] == "FORBIDDEN"
