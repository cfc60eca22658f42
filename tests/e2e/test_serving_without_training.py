"""A serving process never imports the training stack, so `pip install .` (no train extra) serves.

The artifact is trained here, in the test process (which has scikit-learn); a fresh Python
process then imports `graph.app`, builds the app, serves one `predict` and reports which of the
training stack's modules it ended up holding.
"""

import json
import subprocess
import sys

import pytest
from support import ORIGINAL_EXAMPLE, REPO_ROOT, TRAINING_STACK

from persistence import is_sqlite

PREDICT = "mutation P($i: PredictInput!) { predict(input: $i) { id label failureProbability } }"

SERVE_ONE_PREDICT = """
import json, sys
from starlette.testclient import TestClient
from graph.app import create_app
from graph.settings import Settings

given = json.loads(sys.argv[1])
settings = Settings(database_url=given["url"], jwt_secret=given["secret"])
with TestClient(create_app(settings)) as client:
    response = client.post(
        "/graphql",
        json={"query": given["query"], "variables": given["variables"]},
        headers={"Authorization": "Bearer " + given["token"]},
    )
stack = set(given["stack"])
held = sorted({name.split(".")[0] for name in sys.modules} & stack)
print(json.dumps({"status": response.status_code, "body": response.json(), "held": held}))
"""


@pytest.fixture
def sqlite_url(db_url: str) -> str:
    """What a process imports does not depend on the backend: one (the cheaper) is enough."""
    if not is_sqlite(db_url):
        pytest.skip("the serving imports are backend-independent; run once, on SQLite")
    return db_url


def _serve_in_fresh_process(given: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SERVE_ONE_PREDICT, json.dumps(given)],
        env={"PATH": "/usr/bin:/bin"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_served_prediction_never_imports_the_training_stack(
    sqlite_url, settings, db_engine, active_model, make_token
):
    given = {
        "url": sqlite_url,
        "secret": settings.jwt_secret,
        "token": make_token(),
        "query": PREDICT,
        "variables": {"i": ORIGINAL_EXAMPLE},
        "stack": TRAINING_STACK,
    }
    served = _serve_in_fresh_process(given)
    assert served["status"] == 200
    assert "errors" not in served["body"], served["body"]
    assert served["body"]["data"]["predict"]["label"] == "NON_FAILURE"
    assert served["held"] == []
