"""Analytics through GraphQL: devicesAtRisk and predictionStats against recomputations in Python.

Predictions are seeded in bulk (as requests store them) from two model versions, with ties in
probability and in observation time, times on bucket boundaries and empty buckets between, and
every answer is compared with a brute-force recomputation over the seeded rows.
"""

import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient
from support import Seeded, count_statements, gql, register_version, seed_predictions

from graph.app import create_app
from graph.settings import Settings

MONDAY = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday: weeks start here
RISK = """query R($min: Float, $since: DateTime, $prefix: String, $first: Int) {
  devicesAtRisk(minProbability: $min, since: $since, deviceIdPrefix: $prefix, first: $first) {
    deviceId rank latestPrediction { id deviceId observedAt failureProbability } } }"""
STATS = """query S($filter: PredictionFilter, $bucket: StatsBucket, $time: StatsTimeField) {
  predictionStats(filter: $filter, bucket: $bucket, timeField: $time) {
    bucketStart modelVersion count predictedFailures failureRate meanProbability
    p95Probability } }"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The e2e settings with the background work slowed down: statement counts stay exact."""
    slow = dict.fromkeys(
        ("model_refresh_seconds", "audit_seal_interval_seconds", "refusal_tally_seconds",
         "heartbeat_seconds"),
        3600.0,
    )  # fmt: skip
    return settings.model_copy(update=slow)


@pytest.fixture
def second_version(db_engine, demo_artifact, active_model):
    """A second registered version (not active), to which some predictions belong."""
    return register_version(db_engine, demo_artifact, "test-2", activate=False)


# ---------------------------------------------------------------------------- devicesAtRisk


@pytest.fixture
def fleet(db_engine, active_model, second_version) -> list[Seeded]:
    """Predictions of 14 devices over 3 days; ties in probability and in observation time."""
    rng = random.Random(11)
    devices = [f"dev-{i:02d}" for i in range(10)] + ["dev-B", "dev-a", "dev_x", "devX"]
    found: list[Seeded] = []
    for n, version in enumerate([active_model.id, second_version.id, active_model.id]):
        rows = [
            (rng.choice(devices) if i % 11 else None,
             MONDAY + timedelta(hours=rng.randrange(72)), round(rng.random(), 1))
            for i in range(60)
        ]  # fmt: skip
        found += seed_predictions(db_engine, version, rows, created_at=MONDAY + timedelta(days=n))
    # Two rows of one device at its latest time: the larger id is its latest prediction.
    late = MONDAY + timedelta(days=5)
    found += seed_predictions(db_engine, active_model.id, [("dev-03", late, 0.9)] * 2)
    # Devices whose latest predictions tie in probability (ranks 1, 1, 1).
    found += seed_predictions(db_engine, active_model.id, [(d, late, 0.95) for d in devices[5:8]])
    return found


def _at_risk(
    seeded: list[Seeded], minimum: float, since: datetime | None, prefix: str | None, first: int
) -> list[tuple[str, int, str]]:
    """devicesAtRisk by brute force: (device, rank, id of the latest prediction)."""
    latest: dict[str, Seeded] = {}
    for row in seeded:
        if row.device_id is None:
            continue
        known = latest.get(row.device_id)
        if known is None or (row.observed_at, row.id) > (known.observed_at, known.id):
            latest[row.device_id] = row
    kept = [
        row for device, row in latest.items()
        if row.probability >= minimum
        and (since is None or row.observed_at >= since)
        and (prefix is None or device.startswith(prefix))
    ]  # fmt: skip
    kept.sort(key=lambda r: (-r.probability, r.device_id))
    ranks = [1 + sum(other.probability > row.probability for other in kept) for row in kept]
    return [(r.device_id, rank, str(r.id)) for r, rank in zip(kept, ranks, strict=True)][:first]


RISK_CASES = [
    (None, None, None, None),
    (0.0, None, None, 500),
    (0.0, None, None, 4),
    (0.3, MONDAY + timedelta(days=2), None, 50),
    (0.0, None, "dev-", 50),
    (0.0, None, "dev_", 50),
    (0.0, None, "dev-0", 3),
    (0.95, None, None, 1),
    (1.0, None, None, 50),
    (0.0, None, "nobody", 50),
]


@pytest.mark.parametrize(("minimum", "since", "prefix", "first"), RISK_CASES)
def test_devices_at_risk_match_a_brute_force_ranking(
    client, auth_headers, fleet, minimum, since, prefix, first
):
    variables = {"min": minimum, "since": since and since.isoformat(), "prefix": prefix,
                 "first": first}  # fmt: skip
    body = gql(client, RISK, variables, auth_headers)
    assert "errors" not in body, body
    answer = body["data"]["devicesAtRisk"]
    expected = _at_risk(
        fleet, 0.5 if minimum is None else minimum, since, prefix, 50 if first is None else first
    )
    assert [(d["deviceId"], d["rank"], d["latestPrediction"]["id"]) for d in answer] == expected
    for item in answer:
        assert item["latestPrediction"]["deviceId"] == item["deviceId"]


def test_the_ranking_has_ties_and_competition_ranks(client, auth_headers, fleet):
    answer = gql(client, RISK, {"min": 0.0, "first": 500}, auth_headers)["data"]["devicesAtRisk"]
    ranks = [item["rank"] for item in answer]
    assert ranks[:3] == [1, 1, 1] and ranks[3] == 4, ranks  # the seeded tie at 0.95
    assert len(set(ranks)) < len(ranks) - 2  # other ties further down


# --------------------------------------------------------------------------- predictionStats


@pytest.fixture
def history(db_engine, active_model, second_version) -> list[tuple[Seeded, str]]:
    """Predictions over three weeks with a silent week between; times on bucket boundaries."""
    rng = random.Random(3)
    versions = {active_model.id: "test-1", second_version.id: "test-2"}
    found: list[tuple[Seeded, str]] = []
    moments = (
        [MONDAY, MONDAY + timedelta(hours=1), MONDAY + timedelta(days=1),  # boundaries
         MONDAY - timedelta(microseconds=1), MONDAY + timedelta(hours=23, minutes=59,
         seconds=59, microseconds=999_999), MONDAY + timedelta(days=6, hours=23, minutes=30)]
        + [MONDAY + timedelta(days=14, hours=h) for h in (0, 0, 5, 30)]  # after an empty week
    )  # fmt: skip
    created = [MONDAY - timedelta(days=1), MONDAY, MONDAY + timedelta(hours=7, minutes=1),
               MONDAY + timedelta(days=15)]  # fmt: skip
    for n, (version, made) in enumerate(itertools.product(versions, created)):
        rows = [
            (f"dev-{rng.randrange(4)}" if i % 7 else None,
             rng.choice(moments) + timedelta(minutes=rng.choice([0, 0, 17])),
             round(rng.random(), 1))
            for i in range(25 + 5 * n)
        ]  # fmt: skip
        subject = "analyst" if n % 3 == 0 else "ops"
        found += [
            (row, versions[version])
            for row in seed_predictions(db_engine, version, rows, subject, created_at=made)
        ]
    return found


def _bucket_of(moment: datetime, bucket: str) -> datetime:
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == "HOUR":
        return moment.replace(minute=0, second=0, microsecond=0)
    if bucket == "DAY":
        return day
    return day - timedelta(days=day.weekday())


def _stats(
    rows: list[tuple[Seeded, str]], bucket: str, time: str, keep: Callable[[Seeded], bool]
) -> list[tuple]:
    """predictionStats recomputed: (start, version, count, failures, rate, mean, p95)."""
    groups: dict[tuple[datetime, str], list[Seeded]] = defaultdict(list)
    for row, version in rows:
        if keep(row):
            moment = row.observed_at if time == "OBSERVED_AT" else row.created_at
            groups[_bucket_of(moment, bucket), version].append(row)
    out = []
    for (start, version), members in sorted(groups.items()):
        values = sorted(m.probability for m in members)
        n, failures = len(values), sum(m.is_failure for m in members)
        p95 = values[(95 * n + 99) // 100 - 1]  # nearest rank: ceil(0.95 n), 1-based
        out.append((start, version, n, failures, failures / n, sum(values) / n, p95))
    return out


def _answer(body: dict) -> list[tuple]:
    assert "errors" not in body, body
    return [
        (datetime.fromisoformat(r["bucketStart"]), r["modelVersion"], r["count"],
         r["predictedFailures"], r["failureRate"], r["meanProbability"], r["p95Probability"])
        for r in body["data"]["predictionStats"]
    ]  # fmt: skip


def _same(found: list[tuple], expected: list[tuple]) -> None:
    assert [r[:4] + r[6:] for r in found] == [r[:4] + r[6:] for r in expected]
    floats = [value for r in expected for value in r[4:6]]  # the rate and the mean
    assert [value for r in found for value in r[4:6]] == pytest.approx(floats, rel=1e-12)


@pytest.mark.parametrize("time", ["OBSERVED_AT", "CREATED_AT"])
@pytest.mark.parametrize("bucket", ["HOUR", "DAY", "WEEK"])
def test_stats_match_a_recomputation(client, auth_headers, history, bucket, time):
    body = gql(client, STATS, {"bucket": bucket, "time": time}, auth_headers)
    expected = _stats(history, bucket, time, lambda row: True)
    _same(_answer(body), expected)
    assert len({r[1] for r in expected}) == 2 and len(expected) > 2


def test_stats_default_to_days_by_observation_time(client, auth_headers, history):
    body = gql(client, "{ predictionStats { bucketStart modelVersion count } }", None, auth_headers)
    expected = _stats(history, "DAY", "OBSERVED_AT", lambda row: True)
    found = [(datetime.fromisoformat(r["bucketStart"]), r["modelVersion"], r["count"])
             for r in body["data"]["predictionStats"]]  # fmt: skip
    assert found == [r[:3] for r in expected]


def test_buckets_without_predictions_are_left_out(client, auth_headers, history):
    body = gql(client, STATS, {"bucket": "WEEK"}, auth_headers)
    starts = sorted({r[0] for r in _answer(body)})
    week = timedelta(days=7)
    assert starts == [MONDAY - week, MONDAY, MONDAY + 2 * week]  # the week between is empty


def test_a_row_on_a_boundary_starts_its_bucket(client, auth_headers, db_engine, active_model):
    rows = [("b", MONDAY, 0.5), ("b", MONDAY - timedelta(microseconds=1), 0.5),
            ("b", MONDAY + timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999), 0.5)]  # fmt: skip
    seed_predictions(db_engine, active_model.id, rows)
    body = gql(client, STATS, {"bucket": "DAY"}, auth_headers)
    found = [(r[0], r[2]) for r in _answer(body)]
    assert found == [(MONDAY - timedelta(days=1), 1), (MONDAY, 2)]


FILTERS = [
    ({"deviceIdPrefix": "dev-1"}, lambda s: s.device_id == "dev-1"),
    ({"label": "FAILURE"}, lambda s: s.is_failure),
    ({"minProbability": 0.3, "maxProbability": 0.7}, lambda s: 0.3 <= s.probability <= 0.7),
    ({"modelVersion": "test-2"}, None),
    ({"subject": "analyst"}, lambda s: s.subject == "analyst"),
    # Ranges that cut buckets in two, on both time fields.
    ({"observedFrom": "2026-11-02T05:17:00Z", "observedTo": "2026-11-16T05:00:00+00:00"},
     lambda s: datetime(2026, 11, 2, 5, 17, tzinfo=UTC) <= s.observed_at
     < datetime(2026, 11, 16, 5, tzinfo=UTC)),
    ({"createdFrom": "2026-11-02T03:00:00Z", "createdTo": "2026-11-17T00:00:00Z"},
     lambda s: datetime(2026, 11, 2, 3, tzinfo=UTC) <= s.created_at
     < datetime(2026, 11, 17, tzinfo=UTC)),
    ({"observedFrom": "2026-11-02T00:00:00+01:00", "createdTo": "2026-11-02T07:01:00Z",
      "deviceIdPrefix": "dev"},
     lambda s: s.observed_at >= datetime(2026, 11, 1, 23, tzinfo=UTC)
     and s.created_at < datetime(2026, 11, 2, 7, 1, tzinfo=UTC) and s.device_id is not None),
    ({"deviceId": "nobody"}, lambda s: False),
]  # fmt: skip


@pytest.mark.parametrize(("filter_", "keep"), FILTERS, ids=range(len(FILTERS)))
@pytest.mark.parametrize("time", ["OBSERVED_AT", "CREATED_AT"])
def test_the_whole_filter_applies(client, auth_headers, history, filter_, keep, time):
    if keep is None:  # the filter on a version: rows of that version
        rows = [(row, version) for row, version in history if version == "test-2"]
        keep = lambda s: True  # noqa: E731
    else:
        rows = history
    for bucket in ("HOUR", "WEEK"):
        body = gql(client, STATS, {"filter": filter_, "bucket": bucket, "time": time}, auth_headers)
        _same(_answer(body), _stats(rows, bucket, time, keep))


def test_p95_is_the_nearest_rank_value(client, auth_headers, db_engine, active_model):
    def p95_of(values: list[float]) -> float:
        seed_predictions(db_engine, active_model.id, [("p", MONDAY, v) for v in values])
        body = gql(client, STATS, {"filter": {"deviceId": "p"}}, auth_headers)
        with db_engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM prediction WHERE device_id = 'p'"))
        return body["data"]["predictionStats"][0]["p95Probability"]

    twenty = [i / 100 for i in range(1, 21)]
    assert p95_of(twenty) == 0.19  # ceil(0.95 * 20) = 19: the 19th smallest
    assert p95_of([*twenty, 0.21]) == 0.2  # ceil(0.95 * 21) = 20: the 20th smallest
    assert p95_of([0.7]) == 0.7
    assert p95_of([0.1] * 95 + [0.9] * 5) == 0.1  # rank 95 of 100
    assert p95_of([0.1] * 94 + [0.9] * 6) == 0.9
    assert p95_of([0.2, 0.2, 0.4, 0.4, 0.4]) == 0.4


# ---------------------------------------------------------------------------- refusals, cost


@pytest.mark.parametrize(
    ("query", "variables", "field"),
    [
        (RISK, {"first": 0}, "first"),
        (RISK, {"first": 501}, "first"),
        (RISK, {"min": 1.5}, "minProbability"),
        (RISK, {"since": "2026-11-02T00:00:00"}, "since"),
        (STATS, {"filter": {"observedFrom": "2026-11-02T00:00:00"}}, "filter.observedFrom"),
        (STATS, {"filter": {"createdTo": "2026-11-02T00:00:00"}}, "filter.createdTo"),
    ],
    ids=["first-0", "first-501", "probability", "naive-since", "naive-observed", "naive-created"],
)
def test_bad_arguments_are_refused(client, auth_headers, fleet, query, variables, field):
    body = gql(client, query, variables, auth_headers)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == field


@pytest.fixture
def small_stats_app(settings: Settings, db_engine, active_model) -> Iterator[TestClient]:
    """An app answering at most 3 rows of statistics."""
    limited = settings.model_copy(update={"max_stats_rows": 3})
    with TestClient(create_app(limited)) as test_client:
        yield test_client


def test_too_many_rows_of_statistics_are_refused(
    small_stats_app, auth_headers, db_engine, active_model
):
    rows = [("d", MONDAY + timedelta(days=d), 0.5) for d in range(4)]
    seed_predictions(db_engine, active_model.id, rows)
    at_limit = gql(small_stats_app, STATS, {"bucket": "DAY", "filter": {"observedTo": "2026-11-05T00:00:00Z"}}, auth_headers)  # fmt: skip
    assert len(at_limit["data"]["predictionStats"]) == 3
    body = gql(small_stats_app, STATS, {"bucket": "DAY"}, auth_headers)
    error = body["errors"][0]
    assert (
        error["extensions"]["code"] == "BAD_USER_INPUT" and error["extensions"]["field"] == "filter"
    )
    assert "narrow the filter" in error["message"] and "larger bucket" in error["message"]
    assert len(_answer(gql(small_stats_app, STATS, {"bucket": "WEEK"}, auth_headers))) == 1


def test_the_cost_counts_the_bounds_of_both_lists(client, auth_headers, fleet):
    stats = client.post(
        "/graphql", json={"query": "{ predictionStats { count } }"}, headers=auth_headers
    )
    assert stats.json()["extensions"]["cost"]["requested"] == 5000  # FAILCAST_MAX_STATS_ROWS
    risk = "{ devicesAtRisk(first: 10) { rank latestPrediction { id modelVersion { version } } } }"
    answer = client.post("/graphql", json={"query": risk}, headers=auth_headers).json()
    assert answer["extensions"]["cost"]["requested"] == 10 * 3  # item, prediction, version
    three = (
        "{ a: predictionStats { count } b: predictionStats { count } c: predictionStats { count } }"
    )
    refused = client.post("/graphql", json={"query": three}, headers=auth_headers).json()
    assert refused["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"


def test_nested_fields_of_devices_at_risk_are_batched(client, auth_headers, fleet):
    engine = client.app.state.runtime.engine
    query = """query Q($n: Int) { devicesAtRisk(minProbability: 0, first: $n) {
      latestPrediction { modelVersion { version } subject } } }"""
    answers = []
    counts = [
        count_statements(
            engine, lambda n=n: answers.append(gql(client, query, {"n": n}, auth_headers))
        )
        for n in (1, 2, 14)
    ]
    assert [len(a["data"]["devicesAtRisk"]) for a in answers] == [1, 2, 14]
    versions = {i["latestPrediction"]["modelVersion"]["version"] for i in answers[-1]["data"]["devicesAtRisk"]}  # fmt: skip
    assert versions == {"test-1", "test-2"}
    assert counts[0] == counts[1] == counts[2], counts
