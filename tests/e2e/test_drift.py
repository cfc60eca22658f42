"""drift(modelVersion, from, to) and the drift gauges, through the app on both databases.

Inputs are sent as a client would (predictBatch with observedAt); the answers are held to numpy
and scipy computed on the same inputs: PSI from the profile's bins counted in numpy, KS with
scipy's two-sample statistic and its limiting distribution.
"""

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats
from starlette.testclient import TestClient
from support import demo_fleet, gql, register_version

from auth import Scope
from graph.app import create_app
from graph.settings import Settings
from model import DEVICE_FEATURES
from model.drift import psi
from model.profile import bin_index

BATCH = "mutation B($rows: [PredictInput!]!) { predictBatch(inputs: $rows) { id } }"
DRIFT = """query D($v: String, $from: DateTime, $to: DateTime) {
  drift(modelVersion: $v, from: $from, to: $to) {
    modelVersion from to status sampleSize ksSampleSize minSampleSize
    features { feature psi ks ksPValue status } } }"""
START = (datetime.now(UTC) - timedelta(hours=12)).replace(minute=0, second=0, microsecond=0)
STEP = timedelta(seconds=30)


def fleet_rows(count: int, seed: int) -> np.ndarray:
    """Rows of the demo model's own training fleet, picked at random: no drift."""
    fleet = demo_fleet()
    return fleet.X[np.random.default_rng(seed).choice(len(fleet.X), count, replace=False)]


def send(client: TestClient, headers: dict, matrix: np.ndarray, start: datetime = START) -> None:
    """Predict from each row, observed STEP apart from `start`, through the API."""
    rows = [
        {
            **dict(zip(DEVICE_FEATURES, map(float, values), strict=True)),
            "deviceId": f"dev-{i % 40}",
            "observedAt": (start + i * STEP).isoformat(),
        }
        for i, values in enumerate(matrix)
    ]
    for at in range(0, len(rows), 1000):
        body = gql(client, BATCH, {"rows": rows[at : at + 1000]}, headers)
        assert "errors" not in body, body


def drift(client: TestClient, headers: dict, **variables: Any) -> dict:
    body = gql(client, DRIFT, variables, headers)
    assert "errors" not in body, body
    return body["data"]["drift"]


def window(rows: int) -> dict[str, str]:
    return {"from": START.isoformat(), "to": (START + rows * STEP).isoformat()}


def expected(profile: dict, matrix: np.ndarray, name: str, sample: np.ndarray) -> dict:
    """PSI (numpy bins) and KS (scipy) of one feature, as the answer must give them."""
    feature = profile["features"][name]
    column = matrix[:, DEVICE_FEATURES.index(name)]
    bins = feature["bins"]
    counts = np.bincount(bin_index(column, bins["edges"]), minlength=len(bins["shares"]))
    reference = np.asarray(feature["sample"])
    d = stats.ks_2samp(reference, sample[:, DEVICE_FEATURES.index(name)]).statistic
    n1, n2 = reference.size, sample.shape[0]
    return {"psi": psi(counts, bins["shares"]), "ks": d,
            "p": stats.kstwobign.sf(math.sqrt(n1 * n2 / (n1 + n2)) * d)}  # fmt: skip


def test_unshifted_inputs_stay_ok_and_equal_numpy_and_scipy(client, auth_headers, active_model):
    matrix = fleet_rows(600, seed=1)
    send(client, auth_headers, matrix)
    report = drift(client, auth_headers, **window(600))
    assert report["status"] == "OK" and report["modelVersion"] == "test-1"
    assert (report["sampleSize"], report["ksSampleSize"], report["minSampleSize"]) == (
        600,
        600,
        500,
    )
    assert [f["feature"] for f in report["features"]] == list(DEVICE_FEATURES)
    for found in report["features"]:
        want = expected(active_model.input_profile, matrix, found["feature"], matrix)
        assert found["psi"] == pytest.approx(want["psi"], abs=1e-12)
        assert found["ks"] == pytest.approx(want["ks"], abs=1e-12)
        assert found["ksPValue"] == pytest.approx(want["p"], rel=1e-9, abs=1e-15)
        assert found["status"] == "OK" and found["psi"] < 0.1


def test_shifted_inputs_reach_alert(client, auth_headers, active_model):
    matrix = fleet_rows(600, seed=2) * 3.0  # every counter three times what training saw
    send(client, auth_headers, matrix)
    report = drift(client, auth_headers, v="test-1", **window(600))
    assert report["status"] == "ALERT"
    status = {f["feature"]: f["status"] for f in report["features"]}
    assert status["metric1"] == status["metric5"] == status["metric6"] == "ALERT"
    assert status["metric2"] == "OK"  # 95% zeros: a zero times three is still zero
    for found in report["features"]:
        want = expected(active_model.input_profile, matrix, found["feature"], matrix)
        assert found["psi"] == pytest.approx(want["psi"], abs=1e-12)


def test_too_few_predictions_are_insufficient_data_with_the_sample_size(
    client, auth_headers, active_model
):
    matrix = fleet_rows(120, seed=3) * 3.0
    send(client, auth_headers, matrix)
    report = drift(client, auth_headers, **window(120))
    assert report["status"] == "INSUFFICIENT_DATA" and report["sampleSize"] == 120
    assert {f["status"] for f in report["features"]} == {"INSUFFICIENT_DATA"}
    assert all(f["psi"] is not None for f in report["features"])  # still measured, and shown
    empty = drift(
        client, auth_headers, **{"from": "2001-01-01T00:00:00Z", "to": "2001-01-02T00:00:00Z"}
    )
    assert empty["sampleSize"] == 0 and empty["status"] == "INSUFFICIENT_DATA"
    assert all(f["psi"] is None and f["ks"] is None for f in empty["features"])


def test_the_default_window_is_the_trailing_day_of_the_active_version(
    client, auth_headers, active_model
):
    send(client, auth_headers, fleet_rows(30, seed=4), start=datetime.now(UTC) - timedelta(hours=2))
    send(
        client, auth_headers, fleet_rows(20, seed=5), start=datetime.now(UTC) - timedelta(hours=30)
    )
    report = drift(client, auth_headers)
    assert report["modelVersion"] == "test-1" and report["sampleSize"] == 30
    span = datetime.fromisoformat(report["to"]) - datetime.fromisoformat(report["from"])
    assert span == timedelta(hours=24)


@pytest.fixture
def sampled(settings: Settings, db_engine: Any, active_model: Any) -> Iterator[TestClient]:
    """A client whose KS reads at most 200 rows of a window."""
    with TestClient(create_app(settings.model_copy(update={"drift_sample": 200}))) as client:
        yield client


def test_ks_reads_a_bounded_sample_spread_evenly_over_the_window(
    sampled, auth_headers, active_model
):
    matrix = fleet_rows(700, seed=6)
    send(sampled, auth_headers, matrix)
    report = drift(sampled, auth_headers, **window(700))
    assert report["sampleSize"] == 700 and report["ksSampleSize"] == 200
    # Row k (1-based, by observation time) is kept when floor(k*200/700) steps up.
    kept = [k - 1 for k in range(1, 701) if (k * 200) // 700 - ((k - 1) * 200) // 700 == 1]
    assert len(kept) == 200 and kept[0] == 3 and kept[-1] == 699
    sample = matrix[kept]
    for found in report["features"]:
        want = expected(active_model.input_profile, matrix, found["feature"], sample)
        assert found["psi"] == pytest.approx(want["psi"], abs=1e-12)  # PSI counts every row
        assert found["ks"] == pytest.approx(want["ks"], abs=1e-12)


def test_refusals_name_what_is_wrong(client, auth_headers, make_token, db_engine, demo_artifact):
    register_version(db_engine, demo_artifact, "old-1", activate=False, lifecycle=False)
    cases = [
        ({"v": "old-1"}, "BAD_USER_INPUT", "no input profile"),
        ({"v": "nope"}, "NOT_FOUND", "no model version 'nope'"),
        (
            {"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"},
            "BAD_USER_INPUT",
            "before",
        ),
        ({"from": "2026-11-02T00:00:00"}, "BAD_USER_INPUT", "UTC offset"),
    ]
    for variables, code, words in cases:
        error = gql(client, DRIFT, variables, auth_headers)["errors"][0]
        assert error["extensions"]["code"] == code and words in error["message"], error
    cheap = "{ drift { status features { feature status } } }"
    answer = client.post("/graphql", json={"query": cheap}, headers=auth_headers).json()
    assert answer["extensions"]["cost"]["requested"] == 1 + 8  # the report, its 8 features
    reader = {"Authorization": f"Bearer {make_token(Scope.PREDICTIONS_READ)}"}
    error = gql(client, DRIFT, {}, reader)["errors"][0]
    assert error["extensions"]["code"] == "FORBIDDEN"


def test_no_active_version_is_not_found(settings, db_engine, auth_headers, demo_artifact):
    register_version(db_engine, demo_artifact, "idle-1", activate=False)
    with TestClient(create_app(settings)) as client:
        error = gql(client, DRIFT, {}, auth_headers)["errors"][0]
    assert (
        error["extensions"]["code"] == "NOT_FOUND"
        and error["extensions"]["field"] == "modelVersion"
    )


def _gauges(client: TestClient) -> dict[str, float]:
    found = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("failcast_drift_"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_the_active_versions_drift_is_a_prometheus_gauge(
    settings, db_engine, active_model, auth_headers
):
    quick = settings.model_copy(update={"drift_refresh_seconds": 0.2})
    with TestClient(create_app(quick)) as client:
        send(
            client,
            auth_headers,
            fleet_rows(600, seed=7) * 3.0,
            datetime.now(UTC) - timedelta(hours=6),
        )
        report = drift(client, auth_headers)
        deadline = time.monotonic() + 10
        while 'failcast_drift_sample_size{model_version="test-1"}' not in (g := _gauges(client)):
            assert time.monotonic() < deadline, g
            time.sleep(0.1)
        while g['failcast_drift_sample_size{model_version="test-1"}'] != 600:
            assert time.monotonic() < deadline, g
            time.sleep(0.1)
            g = _gauges(client)
    assert g['failcast_drift_status{model_version="test-1"}'] == 2.0  # ALERT
    for feature in report["features"]:
        labels = f'{{feature="{feature["feature"]}",model_version="test-1"}}'
        assert g[f"failcast_drift_psi{labels}"] == pytest.approx(feature["psi"], rel=1e-9)
        assert g[f"failcast_drift_ks_statistic{labels}"] == pytest.approx(feature["ks"], rel=1e-9)
        code = {"OK": 0.0, "WARN": 1.0, "ALERT": 2.0}[feature["status"]]
        assert g[f"failcast_drift_feature_status{labels}"] == code
    assert g["failcast_drift_refreshed_timestamp_seconds"] > time.time() - 60


def test_the_gauges_read_only_the_latest_drift_gauge_rows_predictions(
    settings, db_engine, active_model, auth_headers
):
    """However busy the server, the gauges' refresh reads a bounded number of predictions: the
    latest FAILCAST_DRIFT_GAUGE_ROWS of the window, i.e. the window from the N-th latest one's
    observation time (the analysts' `drift` over that window gives the same figures)."""
    quick = settings.model_copy(update={"drift_refresh_seconds": 0.2, "drift_gauge_rows": 500})
    start = datetime.now(UTC) - timedelta(hours=6)
    matrix = np.vstack([fleet_rows(100, seed=3) * 9.0, fleet_rows(500, seed=4)])
    size = 'failcast_drift_sample_size{model_version="test-1"}'
    with TestClient(create_app(quick)) as client:
        send(client, auth_headers, matrix, start)
        latest = drift(client, auth_headers, **{"from": (start + 100 * STEP).isoformat()})
        whole = drift(client, auth_headers, **{"from": start.isoformat()})
        deadline = time.monotonic() + 10
        while (g := _gauges(client)).get(size) != 500:
            assert time.monotonic() < deadline, g
            time.sleep(0.1)
    assert latest["sampleSize"] == 500 and whole["sampleSize"] == 600
    for feature in latest["features"]:
        labels = f'{{feature="{feature["feature"]}",model_version="test-1"}}'
        assert g[f"failcast_drift_psi{labels}"] == pytest.approx(feature["psi"], rel=1e-9)
        assert g[f"failcast_drift_ks_statistic{labels}"] == pytest.approx(feature["ks"], rel=1e-9)
    # The 100 oldest rows, far out of range, weigh on the whole window's figures, not the gauges'.
    assert [f["psi"] for f in latest["features"]] != [f["psi"] for f in whole["features"]]


def test_the_gauges_need_at_least_the_minimum_sample():
    with pytest.raises(ValidationError, match="FAILCAST_DRIFT_GAUGE_ROWS"):
        Settings(drift_gauge_rows=499, drift_min_sample=500)
    assert Settings(drift_gauge_rows=500, drift_min_sample=500).drift_gauge_rows == 500
