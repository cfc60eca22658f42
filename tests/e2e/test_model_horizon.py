"""`ModelVersion.horizonDays` through the API, on both databases: the registry's queries, and
a predict answer (a compiled plan serves ModelVersion fields as plain attributes)."""

from starlette.testclient import TestClient
from support import ORIGINAL_EXAMPLE, gql, register_version

from graph.app import create_app

VERSIONS = "{ modelVersions { version horizonDays } activeModel { version horizonDays } }"
ONE = 'query { modelVersion(version: "week-1") { horizonDays } }'
PREDICT = """mutation P($input: PredictInput!) { predict(input: $input) {
  modelVersion { version horizonDays } } }"""


def test_each_version_shows_its_horizon(settings, db_engine, demo_artifact, auth_headers):
    register_version(db_engine, demo_artifact, "day-1", activate=False)
    register_version(db_engine, demo_artifact, "week-1", horizon_days=7)
    with TestClient(create_app(settings)) as client:
        body = gql(client, VERSIONS, None, auth_headers)
        assert "errors" not in body, body
        versions = {v["version"]: v["horizonDays"] for v in body["data"]["modelVersions"]}
        assert versions == {"day-1": 1, "week-1": 7}
        assert body["data"]["activeModel"] == {"version": "week-1", "horizonDays": 7}
        assert gql(client, ONE, None, auth_headers)["data"]["modelVersion"] == {"horizonDays": 7}
        answer = gql(client, PREDICT, {"input": ORIGINAL_EXAMPLE}, auth_headers)
        assert "errors" not in answer, answer
        assert answer["data"]["predict"]["modelVersion"] == {"version": "week-1", "horizonDays": 7}
