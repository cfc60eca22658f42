"""Rate limits through the app: RATE_LIMITED with Retry-After, shared across processes."""

import time

import pytest
from starlette.testclient import TestClient
from support import ORIGINAL_EXAMPLE

from auth import Scope
from graph.app import create_app

PREDICT = "mutation P($i: PredictInput!) { predict(input: $i) { id } }"


@pytest.fixture
def limited(settings):
    return settings.model_copy(
        update={"rate_limits": {"predict": (0.5, 2.0)}, "heartbeat_seconds": 0.1}
    )


def test_third_predict_is_rate_limited_with_retry_after(
    limited, active_model, db_engine, make_token
):
    headers = {"Authorization": f"Bearer {make_token(Scope.PREDICT)}"}
    with TestClient(create_app(limited)) as client:
        codes = []
        for _ in range(3):
            response = client.post(
                "/graphql",
                json={"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}},
                headers=headers,
            )
            codes.append(
                (
                    response.status_code,
                    [e["extensions"]["code"] for e in response.json().get("errors", [])],
                )
            )
        assert codes[:2] == [(200, []), (200, [])]
        assert codes[2] == (429, ["RATE_LIMITED"])
        assert int(response.headers["retry-after"]) >= 1
        rest = client.post("/predict", json=ORIGINAL_EXAMPLE, headers=headers)
        assert rest.status_code == 429 and "retry-after" in rest.headers


def test_other_subjects_are_not_limited_by_one_subject(
    limited, active_model, db_engine, make_token
):
    with TestClient(create_app(limited)) as client:
        for subject in ("a", "a", "a", "b"):
            headers = {"Authorization": f"Bearer {make_token(Scope.PREDICT, subject=subject)}"}
            last = client.post(
                "/graphql",
                json={"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}},
                headers=headers,
            )
        assert last.status_code == 200


def test_two_processes_each_enforce_half_the_rate(limited, active_model, db_engine):
    with TestClient(create_app(limited)) as first, TestClient(create_app(limited)) as second:
        deadline = time.monotonic() + 5
        limiters = [first.app.state.runtime.limiter, second.app.state.runtime.limiter]
        while time.monotonic() < deadline and any(lim.processes != 2 for lim in limiters):
            time.sleep(0.05)
        assert [lim.processes for lim in limiters] == [2, 2]
