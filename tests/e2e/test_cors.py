"""Browser apps through a real uvicorn: preflights and answers for the listed origins only.

A preflight is answered before the audit middleware (no token, no audit row); an answer to an
allowed origin carries Access-Control-Allow-Origin, Vary and the headers it may read; any other
origin gets no Access-Control-* header at all.
"""

from collections.abc import Iterator

import httpx
import pytest
from servers import PREDICT, Server, audit_rows, make_token, run_server, wait_audit_row
from starlette.testclient import TestClient
from support import ORIGINAL_EXAMPLE

from graph.app import create_app
from graph.edge.cors import CORS_PATHS
from graph.settings import Settings

APP = "https://app.example.com"
LOCAL_APP = "http://localhost:5173"
OTHER = "https://evil.example.net"
# Given in another case and with the default port: compared as browsers send the Origin.
ORIGINS_SETTING = "HTTPS://App.Example.com:443, http://localhost:5173"
CLIENT_HEADERS = ("authorization", "content-type", "x-request-id", "idempotency-key")


@pytest.fixture
def server(db_url, db_engine, active_model) -> Iterator[Server]:
    """uvicorn sharing the API with two browser apps."""
    with run_server(db_url, {"FAILCAST_CORS_ORIGINS": ORIGINS_SETTING}) as running:
        yield running


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def _preflight(server: Server, path: str, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-request-id",
    }
    return httpx.options(f"{server.base}{path}", headers=headers, timeout=5)


def _listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


def test_a_preflight_from_an_allowed_origin_is_answered_204_with_the_allow_headers(server):
    for path in sorted(CORS_PATHS):
        for origin in (APP, LOCAL_APP):
            response = _preflight(server, path, origin)
            assert response.status_code == 204, (path, origin, response.text)
            assert response.content == b""
            assert response.headers["access-control-allow-origin"] == origin
            assert _listed(response.headers["access-control-allow-methods"]) == {"get", "post"}
            allowed = _listed(response.headers["access-control-allow-headers"])
            assert set(CLIENT_HEADERS) <= allowed
            assert int(response.headers["access-control-max-age"]) > 0
            assert "origin" in _listed(response.headers["vary"])


REFUSED = [
    ("/graphql", OTHER),
    ("/graphql", "https://app.example.com.evil.example.net"),
    ("/graphql", "http://app.example.com"),  # another scheme is another origin
    ("/graphql", "https://app.example.com:8443"),  # and so is another port
    ("/graphql", "null"),
    ("/healthz", APP),  # only the API is shared
    ("/nowhere", APP),
]


def test_a_preflight_from_a_refused_origin_gets_no_allow_headers(server):
    for path, origin in REFUSED:
        response = _preflight(server, path, origin)
        assert response.status_code == 204, (path, origin)
        assert _cors_headers(response) == {}, (path, origin)


def test_preflights_need_no_token_and_leave_no_audit_row(server, db_engine):
    before = set(audit_rows(db_engine))
    for path in [*sorted(CORS_PATHS), "/healthz", "/nowhere"]:
        for origin in (APP, OTHER):
            assert _preflight(server, path, origin).status_code == 204
    # A real request afterwards: once its row is written, every earlier one would be too.
    answered = httpx.post(f"{server.base}/graphql", json={"query": "{ me { subject } }"})
    assert answered.status_code == 401
    request_id = answered.headers["x-request-id"]
    wait_audit_row(db_engine, request_id)
    assert set(audit_rows(db_engine)) - before == {request_id.replace("-", "")}


def test_an_answer_to_an_allowed_origin_is_readable_by_it(server):
    body = {"query": PREDICT, "variables": {"i": {**ORIGINAL_EXAMPLE, "deviceId": "cors-1"}}}
    headers = {"Origin": APP, "Authorization": f"Bearer {make_token('browser-app')}"}
    response = httpx.post(f"{server.base}/graphql", json=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["predict"]["label"] in ("FAILURE", "NON_FAILURE")
    assert response.headers["access-control-allow-origin"] == APP
    assert "origin" in _listed(response.headers["vary"])
    exposed = _listed(response.headers["access-control-expose-headers"])
    assert exposed == {"x-request-id", "retry-after", "www-authenticate"}
    assert "access-control-allow-credentials" not in response.headers


def test_a_refusal_to_an_allowed_origin_is_readable_too(server):
    response = httpx.post(
        f"{server.base}/graphql", json={"query": "{ me { subject } }"}, headers={"Origin": APP}
    )
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == APP
    assert "www-authenticate" in response.headers
    assert "www-authenticate" in _listed(response.headers["access-control-expose-headers"])


@pytest.mark.parametrize("origin", [OTHER, None])
def test_an_answer_to_another_origin_carries_no_cors_header(server, origin):
    headers = {"Authorization": f"Bearer {make_token('elsewhere')}"}
    if origin:
        headers["Origin"] = origin
    response = httpx.post(
        f"{server.base}/graphql", json={"query": "{ me { subject } }"}, headers=headers
    )
    assert response.status_code == 200
    assert response.json()["data"]["me"]["subject"] == "elsewhere"
    assert _cors_headers(response) == {}
    assert "origin" in _listed(response.headers["vary"])  # a cache must not mix the two


def test_other_routes_carry_no_cors_header_even_for_an_allowed_origin(server):
    response = httpx.get(f"{server.base}/healthz", headers={"Origin": APP})
    assert response.status_code == 200
    assert _cors_headers(response) == {}


# -- in process: the setting's other values ---------------------------------------------------


def _app_client(settings: Settings, **changes: object) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=changes)))


def test_without_the_setting_nothing_changes(settings, db_engine, active_model, auth_headers):
    with _app_client(settings) as client:
        preflight = client.options(
            "/graphql", headers={"Origin": APP, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 405  # the endpoint's answer, audited as before
        assert preflight.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
        answer = client.post(
            "/graphql",
            json={"query": "{ me { subject } }"},
            headers={**auth_headers, "Origin": APP},
        )
        assert answer.status_code == 200
        assert _cors_headers(answer) == {}
        assert "vary" not in answer.headers


def test_any_origin_in_development(settings, db_engine, active_model, auth_headers):
    with _app_client(settings, cors_origins=["*"]) as client:
        preflight = _preflight_in(client, "/graphql", OTHER)
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == OTHER
        answer = client.post(
            "/graphql",
            json={"query": "{ me { subject } }"},
            headers={**auth_headers, "Origin": OTHER},
        )
        assert answer.headers["access-control-allow-origin"] == OTHER


def test_an_options_request_that_is_no_preflight_reaches_the_endpoint(
    settings, db_engine, active_model
):
    with _app_client(settings, cors_origins=[APP]) as client:
        response = client.options("/graphql", headers={"Origin": APP})
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, POST"
        assert response.headers["access-control-allow-origin"] == APP


def _preflight_in(client: TestClient, path: str, origin: str) -> httpx.Response:
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    return client.options(path, headers=headers)
