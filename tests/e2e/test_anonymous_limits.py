"""Requests without a valid token: a low rate per client address, refusals beyond it counted.

Beyond the limit a request is answered 429 at once and counted per address and minute in
`refusal_tally` instead of leaving an audit row of its own, so a flood cannot grow the database
at its own pace. Health probes are exempt; requests with a valid token never count.
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from starlette.testclient import TestClient
from support import count_rows

from graph.app import create_app
from graph.edge.identity import ClientAddresses
from graph.runtime.tally import OTHER_ADDRESSES, RefusalTally

ME = {"query": "{ me { subject } }"}


def _tallies(engine) -> list[tuple[str, str, int]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT client_addr, reason, count FROM refusal_tally"))
        return sorted((r[0], r[1], r[2]) for r in rows)


def test_anonymous_requests_past_their_burst_are_refused_and_counted_not_audited(
    settings, db_engine, active_model, auth_headers
):
    tight = settings.model_copy(update={"anonymous_rate_limit": (0.001, 5.0)})
    with TestClient(create_app(tight)) as client:
        statuses = [client.post("/graphql", json=ME).status_code for _ in range(8)]
        statuses += [
            client.post("/graphql", json=ME, headers={"Authorization": "Bearer x.y.z"}).status_code
        ]
        flood = client.post("/graphql", json=ME)
        healthy = [client.get("/healthz").status_code for _ in range(10)]
        served = client.post("/graphql", json=ME, headers=auth_headers)
        client.app.state.runtime.tally.flush(db_engine)
    assert statuses == [401] * 5 + [429] * 4
    assert flood.status_code == 429 and flood.headers["retry-after"] == "1"
    assert flood.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert healthy == [200] * 10 and served.status_code == 200
    assert count_rows(db_engine, "audit_event") == 5 + 1  # the 401s and the served request
    assert _tallies(db_engine) == [("testclient", "anonymous_rate_limit", 5)]


def test_tallies_are_written_when_the_server_stops(settings, db_engine, active_model):
    tight = settings.model_copy(update={"anonymous_rate_limit": (0.001, 1.0)})
    with TestClient(create_app(tight)) as client:
        for _ in range(4):
            client.get("/nowhere")
    assert _tallies(db_engine) == [("testclient", "anonymous_rate_limit", 3)]


def test_a_tally_keeps_a_bounded_number_of_addresses_per_minute():
    tally = RefusalTally(max_addresses=3)
    now = datetime(2026, 11, 29, 12, 0, 30, tzinfo=UTC)
    for i in range(10):
        tally.count(f"10.0.0.{i}", "anonymous_rate_limit", now)
    rows = {(r.client_addr, r.count) for r in tally.take()}
    assert rows == {("10.0.0.0", 1), ("10.0.0.1", 1), ("10.0.0.2", 1), (OTHER_ADDRESSES, 7)}
    assert tally.take() == []


def _scope(peer: str, forwarded: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"client": (peer, 1234), "headers": headers}


def test_the_client_address_is_the_peer_unless_the_peer_is_a_trusted_proxy():
    none_trusted = ClientAddresses([])
    assert none_trusted.of(_scope("203.0.113.9", "198.51.100.1")) == "203.0.113.9"
    proxies = ClientAddresses(["10.0.0.0/8", "127.0.0.1"])
    assert proxies.of(_scope("10.1.2.3", "198.51.100.1")) == "198.51.100.1"
    # a client cannot pick its address: only the hop the trusted proxy saw counts
    assert proxies.of(_scope("10.1.2.3", "1.2.3.4, 198.51.100.1")) == "198.51.100.1"
    assert proxies.of(_scope("10.1.2.3", "198.51.100.1, 10.9.9.9")) == "198.51.100.1"
    assert proxies.of(_scope("203.0.113.9", "198.51.100.1")) == "203.0.113.9"  # not a proxy
    assert proxies.of(_scope("10.1.2.3", "not-an-ip")) == "10.1.2.3"
    assert proxies.of(_scope("10.1.2.3")) == "10.1.2.3"
