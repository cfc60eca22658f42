"""History features served from what failcast stored: the same features training computes.

A logistic regression on counters plus history features (model.history) is the serving
version; its explanation lists every feature's value, so each answer shows the features it was
computed from. Each test compares them with `HistoryFeatures.of_sequences` over the sequence the
device has in the database (the definition training uses), on SQLite and PostgreSQL.
"""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient
from support import demo_fleet, gql, register_version

from graph.app import create_app
from model import DEVICE_FEATURES, ArtifactMetadata, dump_artifact, load_artifact, sha256_hex
from model.history import HistoryFeatures, history_feature_names

# All >= 0, so the log1p pipeline (compiled, with contributions) takes them.
FEATURES = (*DEVICE_FEATURES, *history_feature_names(("max3", "max7", "zero_run")))
HISTORY = HistoryFeatures(FEATURES)
BATCH = """mutation B($r: [PredictInput!]!) { predictBatch(inputs: $r) {
  deviceId observedAt failureProbability warnings
  explanation { contributions { feature value } } } }"""
START = datetime(2026, 1, 1, tzinfo=UTC)


def training_features(dataset: Any) -> np.ndarray:
    """The history features of every row of a dataset (in its row order), as training makes
    them (training.features.history_matrix: each device's rows in date order, through
    `HistoryFeatures.of_device`)."""
    from training.features import history_matrix

    return history_matrix(dataset, FEATURES)


@pytest.fixture(scope="session")
def history_artifact() -> bytes:
    """A logistic regression trained on the demo fleet's history features."""
    from training.estimators import logistic_regression

    fleet = demo_fleet()
    estimator = logistic_regression(seed=0).fit(training_features(fleet), fleet.y)
    return dump_artifact(estimator, ArtifactMetadata("logistic_regression", FEATURES, 0.5, {}))


@pytest.fixture
def history_model(db_engine, history_artifact):
    return register_version(
        db_engine,
        history_artifact,
        version="history-1",
        lifecycle=False,
        feature_names=FEATURES,
        algorithm="logistic_regression",
    )


@pytest.fixture
def history_client(settings, db_engine, history_model):
    with TestClient(create_app(settings)) as client:
        yield client


def _row(device: str | None, day: float, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 40, size=len(DEVICE_FEATURES)) * (rng.random(8) < 0.5)
    row: dict[str, Any] = {name: int(v) for name, v in zip(DEVICE_FEATURES, values, strict=True)}
    row["observedAt"] = (START + timedelta(days=day)).isoformat()
    if device is not None:
        row["deviceId"] = device
    return row


def _send(client, headers, rows) -> list[dict[str, Any]]:
    body = gql(client, BATCH, {"r": rows}, headers)
    assert "errors" not in body, body
    return body["data"]["predictBatch"]


def _features(answer: dict[str, Any]) -> np.ndarray:
    values = {c["feature"]: c["value"] for c in answer["explanation"]["contributions"]}
    return np.array([values[name] for name in FEATURES])


def _expected(rows: list[dict[str, Any]]) -> np.ndarray:
    """Features of the last row of a device's sequence, as training computes them."""
    sequence = np.array([[r[name] for name in DEVICE_FEATURES] for r in rows], dtype=float)
    return HISTORY.of_sequences([sequence])[0][-1]


def test_each_prediction_reads_the_devices_stored_history(history_client, auth_headers):
    sent: list[dict[str, Any]] = []
    for day in range(12):  # one observation a day, each its own request: history grows
        row = _row("dev-a", day, seed=day)
        [answer] = _send(history_client, auth_headers, [row])
        sent.append(row)
        np.testing.assert_array_equal(_features(answer), _expected(sent))
    assert _features(answer)[FEATURES.index("observations")] == 11


def test_probabilities_equal_the_model_on_training_features(
    history_client, auth_headers, history_artifact
):
    predictor = load_artifact(history_artifact, sha256_hex(history_artifact))
    rows = [_row("dev-p", day, seed=100 + day) for day in range(20)]
    answers = [_send(history_client, auth_headers, [row])[0] for row in rows]
    sequence = np.array([[r[n] for n in DEVICE_FEATURES] for r in rows], dtype=float)
    expected = predictor.reference_proba(HISTORY.of_sequences([sequence])[0])  # scikit-learn
    got = np.array([a["failureProbability"] for a in answers])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_no_device_or_no_history_is_a_first_observation_with_a_warning(
    history_client, auth_headers
):
    first, anonymous = _send(
        history_client, auth_headers, [_row("dev-new", 0, 1), _row(None, 0, 2)]
    )
    for answer, row in ((first, _row("dev-new", 0, 1)), (anonymous, _row(None, 0, 2))):
        np.testing.assert_array_equal(_features(answer), _expected([row]))
    assert any("history missing" in w and "dev-new" in w for w in first["warnings"])
    assert any("history missing: no deviceId" in w for w in anonymous["warnings"])
    [second] = _send(history_client, auth_headers, [_row("dev-new", 1, 3)])
    assert not any("history missing" in w for w in second["warnings"])


def test_a_device_with_gaps_counts_observations_not_days(history_client, auth_headers):
    days = [0, 1, 9, 10, 40, 41, 42, 90]
    rows = [_row("dev-gaps", d, seed=200 + d) for d in days]
    for i, row in enumerate(rows):
        [answer] = _send(history_client, auth_headers, [row])
        np.testing.assert_array_equal(_features(answer), _expected(rows[: i + 1]))


def test_an_out_of_order_arrival_sees_only_what_came_before_it(history_client, auth_headers):
    rows = {d: _row("dev-late", d, seed=300 + d) for d in range(15)}
    for day in [*range(0, 7), *range(8, 15)]:  # day 7 is late
        _send(history_client, auth_headers, [rows[day]])
    [late] = _send(history_client, auth_headers, [rows[7]])
    np.testing.assert_array_equal(_features(late), _expected([rows[d] for d in range(8)]))
    # the next observation has the late one in its history, in its place
    nxt = _row("dev-late", 15, seed=315)
    [answer] = _send(history_client, auth_headers, [nxt])
    np.testing.assert_array_equal(_features(answer), _expected([*rows.values(), nxt]))


def test_the_same_observation_again_is_scored_alike(history_client, auth_headers):
    rows = [_row("dev-dup", d, seed=400 + d) for d in range(5)]
    answers = [_send(history_client, auth_headers, [r])[0] for r in rows]
    [again] = _send(history_client, auth_headers, [rows[-1]])  # a retry of the last
    assert again["failureProbability"] == answers[-1]["failureProbability"]
    nxt = _row("dev-dup", 5, seed=405)
    [answer] = _send(history_client, auth_headers, [nxt])  # counted once in the history
    np.testing.assert_array_equal(_features(answer), _expected([*rows, nxt]))


def test_a_batch_of_several_devices_and_days_equals_one_row_at_a_time(history_client, auth_headers):
    rows = [_row(f"dev-b{d % 3}", d // 3, seed=500 + d) for d in range(30)]
    shuffled = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    answers = _send(history_client, auth_headers, shuffled)
    for row, answer in zip(shuffled, answers, strict=True):
        device_rows = [r for r in rows if r["deviceId"] == row["deviceId"]]
        upto = [r for r in device_rows if r["observedAt"] <= row["observedAt"]]
        np.testing.assert_array_equal(_features(answer), _expected(upto))


def _wait_until_held(histories, device: str, row: dict[str, Any]) -> None:
    """PostgreSQL: until the announcement of another server's block has added `row` to the
    device's cached tail (a few ms)."""
    moment = datetime.fromisoformat(row["observedAt"])
    deadline = time.monotonic() + 5
    while moment not in histories._tails[device].times:
        assert time.monotonic() < deadline, "the announcement never arrived"
        time.sleep(0.01)


def test_a_second_server_sees_what_the_first_stored(
    settings, db_engine, history_model, auth_headers
):
    with (
        TestClient(create_app(settings)) as first,
        TestClient(create_app(settings)) as second,
    ):
        rows = [_row("dev-two", d, seed=600 + d) for d in range(6)]
        for row in rows[:3]:
            _send(first, auth_headers, [row])
        _send(second, auth_headers, [rows[3]])  # the first server holds dev-two's history
        histories = first.app.state.runtime.histories
        reads = histories.reads
        if not histories.sqlite:  # the announcement carries the row: the cache takes it
            _wait_until_held(histories, "dev-two", rows[3])
        [answer] = _send(first, auth_headers, [rows[4]])
        np.testing.assert_array_equal(_features(answer), _expected(rows[:5]))
        # SQLite: the look at what was stored since, then the read of the device another
        # process changed; PostgreSQL: nothing to read, the device stayed cached.
        assert histories.reads - reads == (2 if histories.sqlite else 0)


def test_requests_that_come_together_share_one_look(history_client, db_engine, auth_headers):
    """SQLite: requests that reach their windows in the same turn of the event loop wait for
    one look at what others committed (it begins after each of them came, so it sees every
    commit made before), and each still sees what another server stored; a request cancelled
    while it waits leaves the look to the others."""
    import asyncio
    import uuid

    from graph.runtime.histories import DeviceHistories

    if db_engine.dialect.name != "sqlite":
        pytest.skip("SQLite's look at others' commits; PostgreSQL hears announcements instead")
    histories = DeviceHistories(db_engine)  # another process's cache: the app's rows are others'
    rows = {d: [_row(d, day, seed=1100 + 10 * i + day) for day in range(5)]
            for i, d in enumerate(("dev-la", "dev-lb"))}  # fmt: skip

    def window(device: str, day: int) -> Any:
        row = rows[device][day]
        matrix = np.array([[float(row[n]) for n in DEVICE_FEATURES]])
        moment = datetime.fromisoformat(row["observedAt"])
        return histories.windows(HISTORY, matrix, [device], [moment], uuid.uuid4())

    async def together(*asks: tuple[str, int]) -> list[Any]:
        return await asyncio.gather(*(window(device, day) for device, day in asks))

    for device in rows:  # stored by the app, then held by this cache
        _send(history_client, auth_headers, rows[device][:3])
        asyncio.run(together((device, 3)))
    _send(history_client, auth_headers, [rows["dev-la"][3]])  # another server's commit
    reads = histories.reads
    found = asyncio.run(together(("dev-lb", 4), ("dev-la", 4), ("dev-lb", 4)))
    # one look for the three, then the one read of the device the other server changed
    assert histories.reads - reads == 2
    day3 = [float(rows["dev-la"][3][n]) for n in DEVICE_FEATURES]
    np.testing.assert_array_equal(found[1][0][0, -2], day3)

    async def one_cancelled() -> list[Any]:
        first = asyncio.ensure_future(window("dev-lb", 4))
        rest = asyncio.gather(window("dev-lb", 4), window("dev-la", 4))
        await asyncio.sleep(0)  # all three wait for the look
        first.cancel()
        return await rest

    reads = histories.reads
    assert len(asyncio.run(one_cancelled())) == 2
    assert histories.reads - reads == 1  # the look, nothing changed since
    histories.close()


def test_a_large_block_of_another_server_is_added_from_one_read(
    settings, db_engine, history_model, auth_headers
):
    with (
        TestClient(create_app(settings)) as first,
        TestClient(create_app(settings)) as second,
    ):
        histories = first.app.state.runtime.histories
        if histories.sqlite:
            pytest.skip("PostgreSQL's announcements; SQLite reads what was committed instead")
        devices = [f"dev-big{i:03d}" for i in range(300)]
        days = [
            [_row(d, day, seed=1000 + 10 * i + day) for day in range(3)]
            for i, d in enumerate(devices)
        ]
        _send(first, auth_headers, [rows[0] for rows in days])
        # 300 observations are more than a notification carries: the first server reads them
        _send(second, auth_headers, [rows[1] for rows in days])
        _wait_until_held(histories, devices[-1], days[-1][1])
        reads = histories.reads
        answers = _send(first, auth_headers, [rows[2] for rows in days])
        assert histories.reads == reads  # every device's window came from the cache
        for rows, answer in zip(days, answers, strict=True):
            np.testing.assert_array_equal(_features(answer), _expected(rows))


def test_cached_devices_need_no_read_of_their_history(history_client, auth_headers):
    histories = history_client.app.state.runtime.histories
    rows = [_row(f"dev-c{i}", 0, seed=700 + i) for i in range(50)]
    _send(history_client, auth_headers, rows)
    reads = histories.reads
    _send(history_client, auth_headers, [_row(f"dev-c{i}", 1, seed=800 + i) for i in range(50)])
    # PostgreSQL: none; SQLite: the one look at what others stored since
    assert histories.reads - reads == (1 if histories.sqlite else 0)


def test_stored_predictions_are_explained_with_their_history(history_client, auth_headers):
    rows = [_row("dev-x", d, seed=900 + d) for d in range(6)]
    plain = "mutation B($r: [PredictInput!]!) { predictBatch(inputs: $r) { id } }"
    for row in rows:  # no explanation asked: none stored, computed when read
        assert "errors" not in gql(history_client, plain, {"r": [row]}, auth_headers)
    query = """query { predictions(first: 10, filter: {deviceId: "dev-x"},
      orderBy: {field: OBSERVED_AT, direction: ASC}) { edges { node {
      explanation { contributions { feature value } } } } } }"""
    body = gql(history_client, query, None, auth_headers)
    assert "errors" not in body, body
    explained = [e["node"] for e in body["data"]["predictions"]["edges"]]
    assert len(explained) == len(rows)
    for i, read in enumerate(explained):
        np.testing.assert_array_equal(_features(read), _expected(rows[: i + 1]))


COLUMNS = """mutation C($c: PredictColumnsInput!) { predictColumns(input: $c) {
  deviceId observedAt failureProbability warnings
  explanation { contributions { feature value } } } }"""


def _send_columns(client, headers, rows) -> list[dict[str, Any]]:
    """predictColumns with the rows laid out as lists; its answer as one object per row."""
    names = ("deviceId", "observedAt", *DEVICE_FEATURES)
    columns = {n: [row.get(n) for row in rows] for n in names}
    body = gql(client, COLUMNS, {"c": columns}, headers)
    assert "errors" not in body, body
    payload = body["data"]["predictColumns"]
    return [{key: values[i] for key, values in payload.items()} for i in range(len(rows))]


@pytest.mark.parametrize("plans", [True, False], ids=["plan", "executor"])
def test_history_features_through_columns_equal_predict_batchs(
    settings, db_engine, history_model, auth_headers, plans
):
    """The same telemetry for twin devices (b-*: predictBatch, c-*: predictColumns), request
    after request: each device's history, stored and within the request, gives the same
    features, probabilities and warnings."""
    app = create_app(settings.model_copy(update={"compiled_plans": plans}))
    rng = np.random.default_rng(11)
    with TestClient(app) as client:
        for request in range(4):  # history grows over requests, and within each
            days = [(f"{k}", request * 3 + d) for k in range(6) for d in range(3)]
            order = rng.permutation(len(days))
            rows = [
                _row(f"x-{days[i][0]}", days[i][1], seed=1000 + 40 * request + i) for i in order
            ]
            rows.append(_row(None, request, seed=2000 + request))  # no device: no history
            twins = [{**r, "deviceId": r["deviceId"].replace("x-", "b-")} if r.get("deviceId")
                     else r for r in rows]  # fmt: skip
            batch = _send(client, auth_headers, twins)
            columns = _send_columns(
                client,
                auth_headers,
                [{**r, "deviceId": r["deviceId"].replace("x-", "c-")} if r.get("deviceId") else r
                 for r in rows],
            )  # fmt: skip
            for by_row, by_column in zip(batch, columns, strict=True):
                np.testing.assert_array_equal(_features(by_column), _features(by_row))
                assert by_column["failureProbability"] == by_row["failureProbability"]
                assert by_column["observedAt"] == by_row["observedAt"]
                assert [w.replace("c-", "b-") for w in by_column["warnings"]] == by_row["warnings"]
        seen = [_features(answer)[FEATURES.index("observations")] for answer in columns]
        assert max(seen) >= 11  # the last request's rows read nine to eleven earlier ones
        assert any("history missing" in w for w in columns[-1]["warnings"])
