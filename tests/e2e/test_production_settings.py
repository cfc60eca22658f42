"""Production mode refuses development secrets, and hides GraphiQL and introspection."""

import subprocess
import sys

import pytest
from starlette.testclient import TestClient
from support import REPO_ROOT, gql

from graph.app import create_app
from graph.settings import Settings, SettingsError

STRONG = "Zq3" + "".join(chr(65 + (i * 7) % 26) + str(i % 10) for i in range(24))


@pytest.mark.parametrize("secret", [None, "short-secret", "changeme" * 5])
def test_production_refuses_to_start_without_a_real_key(tmp_path, secret):
    settings = Settings(
        env="production", database_url=f"sqlite:///{tmp_path}/x.db", jwt_secret=secret
    )
    with pytest.raises(SettingsError):
        create_app(settings)


def test_production_refuses_the_local_development_secret(tmp_path):
    dev_file = tmp_path / "dev-secret"
    dev_file.write_text(STRONG)
    settings = Settings(
        env="production", jwt_secret_file=dev_file, database_url=f"sqlite:///{tmp_path}/x.db"
    )
    with pytest.raises(SettingsError):
        create_app(settings)


def test_cli_serve_exits_2_in_production_with_a_weak_secret(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "FAILCAST_ENV": "production",
        "FAILCAST_JWT_SECRET": "weak",
        "FAILCAST_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
    }
    done = subprocess.run(
        [sys.executable, "-m", "failcast", "serve"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "cannot start" in done.stderr


def test_production_hides_introspection_and_graphiql(db_url, db_engine):
    from datetime import timedelta

    from auth import ALL_SCOPES, mint_token

    settings = Settings(env="production", database_url=db_url, jwt_secret=STRONG)
    token = mint_token(settings.auth_config(), "a", ALL_SCOPES, timedelta(minutes=5))
    with TestClient(create_app(settings)) as client:
        page = client.get("/graphql", headers={"accept": "text/html"})
        assert "graphiql" not in page.text.lower()
        headers = {"Authorization": f"Bearer {token}"}
        body = gql(client, "{ __schema { types { name } } }", headers=headers)
        assert body.get("data") is None
        assert {e["extensions"]["code"] for e in body["errors"]} == {"GRAPHQL_VALIDATION_FAILED"}


TYPOS = [
    ("{ me { subjekt } }", None),  # a field
    ("{ predictions(frist: 5) { nodes { id } } }", None),  # an argument
    ('{ predictions(filter: {label: FAILUR}) { nodes { id } } }', None),  # an enum value
    ("query Q($f: PredictionFilter) { predictions(filter: $f) { nodes { id } } }",
     {"f": {"devicId": "x"}}),  # a variable's input field
    ("query Q($f: PredictionFilter) { predictions(filter: $f) { nodes { id } } }",
     {"f": {"label": "FAILUR"}}),  # a variable's enum value
]  # fmt: skip


@pytest.mark.parametrize(("query", "variables"), TYPOS)
def test_production_answers_never_suggest_names(db_url, db_engine, query, variables):
    from datetime import timedelta

    from auth import ALL_SCOPES, mint_token

    answers = {}
    for env in ("development", "production"):
        settings = Settings(env=env, database_url=db_url, jwt_secret=STRONG)
        token = mint_token(settings.auth_config(), "a", ALL_SCOPES, timedelta(minutes=5))
        with TestClient(create_app(settings)) as client:
            answers[env] = gql(client, query, variables, {"Authorization": f"Bearer {token}"})
    assert "Did you mean" in str(answers["development"])  # the typo is one graphql-core suggests
    assert answers["production"]["errors"] and "Did you mean" not in str(answers["production"])
    assert "did you mean" not in str(answers["production"]).lower()
