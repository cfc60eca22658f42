"""Webhooks through a real uvicorn and a real receiver on loopback: signed as the README says,
retried with backoff until delivered once, dead letters, the allow-list (no open relay: other
hosts and redirects to them refused), and durable across a restart."""

import itertools
import time
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
from alertclient import FAILURE_EXAMPLE
from servers import SECRET, make_token, run_server
from support import ORIGINAL_EXAMPLE, readme_verify
from webhookreceiver import receiving

from auth import AuthConfig, Scope, mint_token

CREATE = """mutation C($url: String!, $min: Float, $prefix: String) {
  createWebhook(url: $url, minProbability: $min, deviceIdPrefix: $prefix) {
    webhook { id url minProbability deviceIdPrefix } secret } }"""
DELIVERIES = """query D($id: ID!) { webhookDeliveries(webhookId: $id, first: 50) {
  totalCount nodes { id predictionId status attempts lastStatusCode lastError deliveredAt
                     nextAttemptAt } } }"""
PREDICT = "mutation B($is: [PredictInput!]!) { predictBatch(inputs: $is) { id label deviceId } }"
FAST = {
    "FAILCAST_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1,*.example.com",
    "FAILCAST_WEBHOOK_MAX_ATTEMPTS": "6",
    "FAILCAST_WEBHOOK_RETRY_BASE_SECONDS": "0.05",
    "FAILCAST_WEBHOOK_POLL_SECONDS": "0.1",
}


def gql(base: str, query: str, variables: dict | None = None, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token or make_token('ops')}"}
    response = httpx.post(
        f"{base}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=10,
    )
    return response.json()


def create(base: str, url: str, **variables) -> tuple[str, str]:
    body = gql(base, CREATE, {"url": url, **variables})
    assert "errors" not in body, body
    made = body["data"]["createWebhook"]
    return made["webhook"]["id"], made["secret"]


def deliveries(base: str, webhook: str) -> list[dict]:
    body = gql(base, DELIVERIES, {"id": webhook})
    assert "errors" not in body, body
    return body["data"]["webhookDeliveries"]["nodes"]


def settled(base: str, *hooks: str, timeout: float = 20.0) -> dict[str, list[dict]]:
    """Each webhook's deliveries once none is pending."""
    deadline = time.monotonic() + timeout
    while True:
        found = {hook: deliveries(base, hook) for hook in hooks}
        if all(d["status"] != "PENDING" for rows in found.values() for d in rows):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def behaviour(path: str, delivery: str, seen: int) -> tuple[int, dict[str, str]]:
    if path == "/flaky":
        return (500 if seen < 5 else 204), {}
    if path == "/down":
        return 503, {}
    if path == "/redirect-away":  # localhost is not on the allow-list, though it is loopback
        return 307, {"location": f"http://localhost:{PORT[0]}/captured"}
    if path == "/redirect-ok":
        return 308, {"location": "/ok"}
    return 200, {}


PORT = [0]


def test_deliveries_are_signed_retried_once_delivered_and_dead_lettered(
    db_url, db_engine, active_model, tmp_path: Path
):
    verify = readme_verify()
    with receiving(behaviour) as receiver, run_server(db_url, FAST, tmp_path / "s.log") as server:
        PORT[0] = receiver.port
        flaky, flaky_secret = create(server.base, f"{receiver.base}/flaky")
        down, _ = create(server.base, f"{receiver.base}/down", min=0.0, prefix="x-")
        away, _ = create(server.base, f"{receiver.base}/redirect-away", min=0.0, prefix="x-")
        ok, ok_secret = create(server.base, f"{receiver.base}/redirect-ok", min=0.0, prefix="x-")
        inputs = [{**FAILURE_EXAMPLE, "deviceId": "x-1"}, {**ORIGINAL_EXAMPLE, "deviceId": "x-2"}]
        body = gql(server.base, PREDICT, {"is": inputs})
        made = body["data"]["predictBatch"]
        assert [m["label"] for m in made] == ["FAILURE", "NON_FAILURE"], body
        found = settled(server.base, flaky, down, away, ok)
        listed = gql(server.base, "{ webhooks { id url } }")["data"]["webhooks"]
        metrics = server.get("/metrics").text
        log = server.log()
    failure, other = made[0]["id"], made[1]["id"]
    # the flaky receiver failed five times, then took the FAILURE prediction: once
    (delivery,) = found[flaky]
    assert delivery["predictionId"] == failure  # the NON_FAILURE one does not match
    assert (delivery["status"], delivery["attempts"], delivery["lastStatusCode"]) == (
        "DELIVERED",
        6,
        204,
    ), log[-2000:]
    posts = receiver.to("/flaky")
    assert [p.status for p in posts] == [500] * 5 + [204]
    assert {p.headers["failcast-delivery"] for p in posts} == {delivery["id"]}
    assert len({p.body for p in posts}) == 1  # the same bytes every time
    for post in posts:
        assert verify(flaky_secret, post.headers["failcast-signature"], post.body)
        assert not verify(flaky_secret, post.headers["failcast-signature"], post.body + b" ")
        assert not verify("whsec_another", post.headers["failcast-signature"], post.body)
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert gaps[-1] > gaps[0]  # backing off
    sent = orjson.loads(posts[0].body)
    assert sent["deliveryId"] == delivery["id"] and sent["webhookId"] == flaky
    assert sent["prediction"]["id"] == failure and sent["prediction"]["label"] == "FAILURE"
    assert sent["prediction"]["deviceId"] == "x-1"
    assert sent["prediction"]["modelVersion"] == active_model.version
    assert posts[0].headers["content-type"] == "application/json"
    # a receiver that never takes them: dead after FAILCAST_WEBHOOK_MAX_ATTEMPTS
    assert sorted(d["predictionId"] for d in found[down]) == sorted([failure, other])
    for dead in found[down]:
        assert (dead["status"], dead["attempts"], dead["lastStatusCode"]) == ("DEAD", 6, 503)
        assert dead["nextAttemptAt"] is None
        assert "503" in dead["lastError"]
    assert len(receiver.to("/down")) == 12
    # a redirect to a host not on the list is not followed: nothing reached it
    assert receiver.to("/captured") == []
    for refused in found[away]:
        assert refused["status"] == "DEAD" and "redirect" in refused["lastError"]
        assert "not on FAILCAST_WEBHOOK_ALLOWED_HOSTS" in refused["lastError"]
    # a 308 to an allowed target is followed, signed with the webhook's secret
    assert {d["status"] for d in found[ok]} == {"DELIVERED"}
    followed = receiver.to("/ok")
    assert len(followed) == 2
    assert all(verify(ok_secret, p.headers["failcast-signature"], p.body) for p in followed)
    assert [w["id"] for w in listed] == [flaky, down, away, ok]
    for outcome, count in (("delivered", 3), ("retried", 5 + 10 + 10), ("dead", 4)):
        assert f'failcast_webhook_attempts_total{{outcome="{outcome}"}} {count}.0' in metrics
    assert "secret" not in str(listed)


def test_targets_outside_the_allow_list_are_refused_at_creation(
    db_url, db_engine, active_model, tmp_path: Path
):
    env = {
        "FAILCAST_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1,*.example.com",
        # every refusal below is a request counted against webhooks:write (5/s, burst 10)
        "FAILCAST_RATE_LIMITS": '{"webhooks:write": [100, 100]}',
    }
    refused_urls = [
        "http://10.0.0.5/hook",  # another host
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://localhost/hook",  # loopback by name: not the listed address
        "https://example.com/hook",  # the wildcard covers hosts below it, not itself
        "https://hooks.example.com.evil.net/hook",
        "http://hooks.example.com/hook",  # http:// only for hosts listed explicitly
        "https://user:pw@127.0.0.1/hook",
        "ftp://127.0.0.1/hook",
        "not a url",
        "https://127.0.0.1:99999/hook",
    ]
    with run_server(db_url, env, tmp_path / "s.log") as server:
        answers = [gql(server.base, CREATE, {"url": url}) for url in refused_urls]
        created, secret = create(server.base, "https://hooks.example.com/failcast", prefix="n-")
        again = gql(server.base, "{ webhooks { id url deviceIdPrefix } }")
        read_only = mint_token(
            AuthConfig(secret=SECRET), "reader", [Scope.WEBHOOKS_READ], timedelta(minutes=5)
        )
        forbidden = gql(server.base, CREATE, {"url": "https://a.example.com/"}, read_only)
        listed_by_reader = gql(server.base, "{ webhooks { id } }", token=read_only)
        deleted = gql(
            server.base, "mutation($id: ID!) { deleteWebhook(id: $id) { id } }", {"id": created}
        )
        gone = gql(
            server.base, "mutation($id: ID!) { deleteWebhook(id: $id) { id } }", {"id": created}
        )
        bad_filter = gql(server.base, CREATE, {"url": "https://a.example.com/", "min": 1.5})
    for url, answer in zip(refused_urls, answers, strict=True):
        (error,) = answer["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (url, answer)
        assert error["extensions"]["field"] == "url", (url, answer)
        assert answer["data"] is None
    assert "not on FAILCAST_WEBHOOK_ALLOWED_HOSTS" in answers[0]["errors"][0]["message"]
    assert "http://" in answers[5]["errors"][0]["message"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert again["data"]["webhooks"] == [
        {"id": created, "url": "https://hooks.example.com/failcast", "deviceIdPrefix": "n-"}
    ]
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert listed_by_reader["data"]["webhooks"] == [{"id": created}]
    assert deleted["data"]["deleteWebhook"]["id"] == created
    assert gone["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert gone["errors"][0]["extensions"]["field"] == "id"
    assert bad_filter["errors"][0]["extensions"]["field"] == "minProbability"


def test_a_pending_delivery_survives_a_restart_and_is_sent_once(
    db_url, db_engine, active_model, tmp_path: Path
):
    accepting = [False]

    def later(path: str, delivery: str, seen: int) -> tuple[int, dict[str, str]]:
        return (200 if accepting[0] else 503), {}

    env = {**FAST, "FAILCAST_WEBHOOK_RETRY_BASE_SECONDS": "2", "FAILCAST_WEBHOOK_MAX_ATTEMPTS": "8"}
    with receiving(later) as receiver:
        with run_server(db_url, env, tmp_path / "a.log") as first:
            hook, _ = create(first.base, f"{receiver.base}/hook")
            made = gql(first.base, PREDICT, {"is": [{**FAILURE_EXAMPLE, "deviceId": "r-1"}]})
            receiver.wait(lambda: len(receiver.to("/hook")) >= 1)
        accepting[0] = True  # the receiver is back; the server that stored it is gone
        with run_server(db_url, env, tmp_path / "b.log") as second:
            (delivery,) = settled(second.base, hook)[hook]
            time.sleep(0.5)
    assert delivery["status"] == "DELIVERED"
    assert delivery["predictionId"] == made["data"]["predictBatch"][0]["id"]
    statuses = [r.status for r in receiver.to("/hook")]
    assert statuses.count(200) == 1 and statuses[-1] == 200
    assert delivery["attempts"] == len(statuses)
