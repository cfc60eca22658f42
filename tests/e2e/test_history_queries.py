"""Prediction history through GraphQL: orderings, paging both ways, filters, counts, devices.

Predictions are seeded in bulk (as requests would store them) with known devices, observation
times, probabilities and subjects, and every answer is compared with a recomputation in Python.
"""

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from support import Seeded, count_statements, gql, seed_predictions

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PAGE = """query P($first: Int, $after: String, $last: Int, $before: String,
                 $filter: PredictionFilter, $order: PredictionOrder) {
  predictions(first: $first, after: $after, last: $last, before: $before, filter: $filter,
              orderBy: $order) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id deviceId observedAt failureProbability label subject } } } }"""
ORDERS = list(
    itertools.product(["CREATED_AT", "OBSERVED_AT", "FAILURE_PROBABILITY"], ["ASC", "DESC"])
)
KEYS = {
    "CREATED_AT": lambda s: (s.created_at, s.id),
    "OBSERVED_AT": lambda s: (s.observed_at, s.id),
    "FAILURE_PROBABILITY": lambda s: (s.probability, s.id),
}


@pytest.fixture
def seeded(db_engine, active_model) -> list[Seeded]:
    """60 predictions from 3 requests: 6 devices, ties in time and probability on purpose."""
    rng = random.Random(5)
    found: list[Seeded] = []
    for n, subject in enumerate(["ops", "analyst", "ops"]):
        rows = [
            (f"dev-{rng.randrange(6)}" if i % 9 else None, T0 + timedelta(hours=rng.randrange(30)),
             round(rng.random(), 1))
            for i in range(20)
        ]  # fmt: skip
        found += seed_predictions(
            db_engine, active_model.id, rows, subject, created_at=T0 + timedelta(days=30 + n)
        )
    return found


def _walk(client, headers, order, backward, filter_=None, size=7, between=None) -> list[str]:
    ids, cursor, pages = [], None, 0
    while True:
        variables = {"order": dict(zip(("field", "direction"), order, strict=True)),
                     "filter": filter_}  # fmt: skip
        if backward:
            variables |= {"last": size, "before": cursor}
        else:
            variables |= {"first": size, "after": cursor}
        body = gql(client, PAGE, variables, headers)
        assert "errors" not in body, body
        answer = body["data"]["predictions"]
        edges = answer["edges"]
        page = [e["node"]["id"] for e in edges]
        ids = page + ids if backward else ids + page
        info = answer["pageInfo"]
        more = info["hasPreviousPage"] if backward else info["hasNextPage"]
        cursor = info["startCursor"] if backward else info["endCursor"]
        pages += 1
        if between is not None:
            between(pages)
        if not more:
            return ids


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_paging_visits_every_row_once_in_order(client, auth_headers, seeded, order, backward):
    ids = _walk(client, auth_headers, order, backward)
    expected = sorted(seeded, key=KEYS[order[0]], reverse=order[1] == "DESC")
    assert ids == [str(s.id) for s in expected]


@pytest.mark.parametrize(
    "order", ORDERS[:2] + ORDERS[4:], ids=["ca-asc", "ca-desc", "p-asc", "p-desc"]
)
def test_paging_stays_put_while_predictions_arrive(
    client, auth_headers, db_engine, active_model, seeded, order
):
    def arrive(page: int) -> None:  # new rows land between pages, on every side of the cursor
        rows = [("new", T0 + timedelta(hours=h), p) for h, p in ((1, 0.05), (50, 0.95), (15, 0.5))]
        seed_predictions(db_engine, active_model.id, rows, "late")

    ids = _walk(client, auth_headers, order, False, between=arrive)
    assert len(ids) == len(set(ids)), "a row was visited twice"
    assert {str(s.id) for s in seeded} <= set(ids), "a row that was there all along was skipped"


FILTERS = [
    ({"deviceId": "dev-3"}, lambda s: s.device_id == "dev-3"),
    ({"deviceIdPrefix": "dev-"}, lambda s: s.device_id is not None),
    ({"deviceIdPrefix": "dev-1"}, lambda s: s.device_id == "dev-1"),
    ({"label": "FAILURE"}, lambda s: s.is_failure),
    ({"observedFrom": "2026-11-01T05:00:00Z", "observedTo": "2026-11-01T12:00:00+00:00"},
     lambda s: T0 + timedelta(hours=5) <= s.observed_at < T0 + timedelta(hours=12)),
    ({"createdFrom": "2026-12-02T00:00:00Z"}, lambda s: s.created_at >= T0 + timedelta(days=31)),
    ({"createdTo": "2026-12-02T00:00:00Z"}, lambda s: s.created_at < T0 + timedelta(days=31)),
    ({"minProbability": 0.3, "maxProbability": 0.6}, lambda s: 0.3 <= s.probability <= 0.6),
    ({"subject": "analyst"}, lambda s: s.subject == "analyst"),
    ({"subject": "analyst", "minProbability": 0.5, "deviceIdPrefix": "dev"},
     lambda s: s.subject == "analyst" and s.probability >= 0.5 and s.device_id is not None),
    ({"modelVersion": "test-1"}, lambda s: True),
    ({"modelVersion": "no-such"}, lambda s: False),
]  # fmt: skip


@pytest.mark.parametrize(("filter_", "keep"), FILTERS, ids=range(len(FILTERS)))
def test_each_filter_matches_a_recomputation(client, auth_headers, seeded, filter_, keep):
    ids = _walk(client, auth_headers, ("OBSERVED_AT", "ASC"), False, filter_)
    expected = sorted((s for s in seeded if keep(s)), key=KEYS["OBSERVED_AT"])
    assert ids == [str(s.id) for s in expected]
    body = gql(client, PAGE, {"first": 1, "filter": filter_}, auth_headers)
    assert body["data"]["predictions"]["totalCount"] == len(expected)


def test_a_device_prefix_with_like_wildcards_is_taken_literally(
    client, auth_headers, db_engine, active_model
):
    rows = [(d, T0, 0.5) for d in ("a%b-1", "aXb-2", "a_b-3", "ab-4")]
    seed_predictions(db_engine, active_model.id, rows)
    for prefix, expected in (
        ("a%", ["a%b-1"]),
        ("a_", ["a_b-3"]),
        ("a", ["a%b-1", "aXb-2", "a_b-3", "ab-4"]),
    ):
        body = gql(client, PAGE, {"first": 10, "filter": {"deviceIdPrefix": prefix}}, auth_headers)
        found = sorted(e["node"]["deviceId"] for e in body["data"]["predictions"]["edges"])
        assert found == sorted(expected), prefix


@pytest.mark.parametrize(
    "variables",
    [
        {"first": 5, "after": "not-a-cursor"},
        {"first": 5, "after": "AAAAAAAAAAAAAAAAAAAAAA"},
    ],
    ids=["garbage", "unsigned"],
)
def test_a_bad_cursor_is_refused(client, auth_headers, seeded, variables):
    body = gql(client, PAGE, variables, auth_headers)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "after"


def test_a_tampered_or_foreign_cursor_is_refused(client, auth_headers, seeded):
    first = gql(client, PAGE, {"first": 2}, auth_headers)["data"]["predictions"]
    cursor = first["pageInfo"]["endCursor"]
    tampered = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    other_order = {"first": 2, "after": cursor, "order": {"field": "OBSERVED_AT"}}
    other_filter = {"first": 2, "after": cursor, "filter": {"deviceIdPrefix": "dev"}}
    for variables in ({"first": 2, "after": tampered}, other_order, other_filter):
        body = gql(client, PAGE, variables, auth_headers)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], variables
    audit = "{ auditEvents(first: 1, after: $c) { nodes { id } } }".replace("$c", f'"{cursor}"')
    assert (
        gql(client, audit, headers=auth_headers)["errors"][0]["extensions"]["code"]
        == "BAD_USER_INPUT"
    )


@pytest.mark.parametrize(
    "variables",
    [{"first": 0}, {"first": 501}, {"last": 501}, {"first": 2, "last": 2},
     {"first": 2, "before": None, "last": None, "after": None, "filter": {"observedFrom": "2026-11-01T00:00:00"}}],
    ids=["first-0", "first-501", "last-501", "both", "naive-time"],
)  # fmt: skip
def test_bad_page_arguments_are_refused(client, auth_headers, seeded, variables):
    body = gql(client, PAGE, variables, auth_headers)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]


DEVICE = """query D($id: String!, $from: DateTime, $to: DateTime) {
  device(id: $id) { id deviceId predictionCount
    latestPrediction { id observedAt }
    maxFailureProbability(from: $from, to: $to)
    timeline(first: 500, from: $from, to: $to) { totalCount nodes { id observedAt } } } }"""


def test_a_device_has_its_latest_prediction_timeline_maximum_and_count(
    client, auth_headers, seeded
):
    mine = [s for s in seeded if s.device_id == "dev-2"]
    window = {"from": "2026-11-01T03:00:00Z", "to": "2026-11-02T00:00:00Z"}
    body = gql(client, DEVICE, {"id": "dev-2", **window}, auth_headers)
    device = body["data"]["device"]
    latest = max(mine, key=lambda s: (s.observed_at, s.id))
    inside = [s for s in mine if T0 + timedelta(hours=3) <= s.observed_at < T0 + timedelta(days=1)]
    assert device["id"] == device["deviceId"] == "dev-2"
    assert device["predictionCount"] == len(mine)
    assert device["latestPrediction"]["id"] == str(latest.id)
    assert device["maxFailureProbability"] == max(s.probability for s in inside)
    timeline = device["timeline"]
    assert [n["id"] for n in timeline["nodes"]] == [
        str(s.id) for s in sorted(inside, key=KEYS["OBSERVED_AT"])
    ]
    assert timeline["totalCount"] == len(inside)
    assert gql(client, DEVICE, {"id": "nobody"}, auth_headers)["data"]["device"] is None


def test_nested_fields_are_batched_not_one_query_per_row(settings, auth_headers, seeded):
    from starlette.testclient import TestClient

    from graph.app import create_app

    # Background work (model refresh, heartbeats, sealing) also runs statements: keep it away.
    quiet = settings.model_copy(update={"model_refresh_seconds": 600, "heartbeat_seconds": 600,
                                        "audit_seal_interval_seconds": 600,
                                        "refusal_tally_seconds": 600})  # fmt: skip
    query = """query Q($n: Int) { predictions(first: $n) { nodes { id subject
      modelVersion { version } } } device(id: "dev-1") { latestPrediction { id } } }"""
    with TestClient(create_app(quiet)) as client:
        engine = client.app.state.runtime.engine
        gql(client, query, {"n": 1}, auth_headers)  # warm: the first request may refresh things
        small = count_statements(engine, lambda: gql(client, query, {"n": 2}, auth_headers))
        large = count_statements(engine, lambda: gql(client, query, {"n": 50}, auth_headers))
    assert small == large, (small, large)


def test_model_versions_and_audit_events_have_stable_ids(client, auth_headers, seeded):
    body = gql(client, "{ activeModel { id version } auditEvents(first: 1) { nodes { id requestId } } }",
               headers=auth_headers)  # fmt: skip
    assert body["data"]["activeModel"]["id"] == body["data"]["activeModel"]["version"]
    node = body["data"]["auditEvents"]["nodes"][0]
    assert node["id"] == node["requestId"]
