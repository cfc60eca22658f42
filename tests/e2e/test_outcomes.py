"""recordOutcome and modelPerformance through the app, on both databases.

Live metrics are held to scikit-learn recomputed on the same labeled rows, labeled in Python by
the documented rule: a prediction is covered by the outcomes of its device observed in
[its observedAt, its observedAt + horizon); failed if any covering outcome failed.
"""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from starlette.testclient import TestClient
from support import count_rows, gql, register_version, seed_predictions

from auth import Scope
from graph.app import create_app
from persistence import AuditRepository, session_scope

RECORD = """mutation R($d: String!, $f: Boolean!, $at: DateTime!) {
  recordOutcome(deviceId: $d, failed: $f, observedAt: $at) {
    id deviceId failed observedAt day labeledPredictions } }"""
PERFORMANCE = """query P($v: String, $from: DateTime, $to: DateTime) {
  modelPerformance(modelVersion: $v, from: $from, to: $to) {
    modelVersion from to labeled unlabeled labeledFailures
    truePositives falsePositives trueNegatives falseNegatives
    precision recall f1 falsePositiveRate falseNegativeRate rocAuc prAuc
    training { precision recall f1 falsePositiveRate falseNegativeRate rocAuc prAuc }
    tolerance minFailures degraded verdict findings } }"""
DAY0 = datetime(2026, 10, 1, tzinfo=UTC)


def record(client: TestClient, headers: dict, device: str, failed: bool, at: datetime) -> dict:
    body = gql(client, RECORD, {"d": device, "f": failed, "at": at.isoformat()}, headers)
    assert "errors" not in body, body
    return body["data"]["recordOutcome"]


def performance(client: TestClient, headers: dict, **variables: Any) -> dict:
    body = gql(client, PERFORMANCE, variables, headers)
    assert "errors" not in body, body
    return body["data"]["modelPerformance"]


def test_recording_again_replaces_the_days_outcome(client, auth_headers, db_engine, active_model):
    first = record(client, auth_headers, "D-1", True, DAY0 + timedelta(hours=8))
    assert first == {
        "id": "2026-10-01/D-1", "deviceId": "D-1", "failed": True,
        "observedAt": "2026-10-01T08:00:00+00:00", "day": "2026-10-01", "labeledPredictions": 0,
    }  # fmt: skip
    assert record(client, auth_headers, "D-1", True, DAY0 + timedelta(hours=8)) == first
    later = record(client, auth_headers, "D-1", False, DAY0 + timedelta(hours=20, minutes=1))
    assert later["id"] == first["id"] and not later["failed"]
    with db_engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT device_id, failed, subject FROM outcome")).all()
    assert [(r[0], bool(r[1]), r[2]) for r in rows] == [("D-1", False, "tester")]
    record(client, auth_headers, "D-1", True, DAY0 + timedelta(days=1))  # another day
    assert count_rows(db_engine, "outcome") == 2


def test_the_horizon_is_open_before_and_closed_at_the_outcome(
    client, auth_headers, db_engine, active_model
):
    at = DAY0 + timedelta(days=3, hours=6)
    tick = timedelta(microseconds=1)
    times = [
        at - timedelta(days=1),
        at - timedelta(days=1) + tick,
        at - timedelta(hours=5),
        at,
        at + tick,
    ]
    seed_predictions(db_engine, active_model.id, [("D-2", t, 0.9) for t in times])
    seed_predictions(db_engine, active_model.id, [("D-3", at, 0.9)])  # another device
    assert record(client, auth_headers, "D-2", True, at)["labeledPredictions"] == 3
    found = performance(client, auth_headers, **{"from": DAY0.isoformat()})
    assert (found["labeled"], found["unlabeled"], found["truePositives"]) == (3, 3, 3)
    long = {"outcome_horizon_days": 2}
    with TestClient(create_app(client.app.state.runtime.settings.model_copy(update=long))) as wide:
        assert record(wide, auth_headers, "D-2", True, at)["labeledPredictions"] == 4
        assert performance(wide, auth_headers)["labeled"] == 4


def test_recording_needs_the_outcomes_scope_and_good_input(
    client, auth_headers, make_token, db_engine, active_model
):
    reader = {"Authorization": f"Bearer {make_token(Scope.MODELS_READ, Scope.PREDICT)}"}
    variables = {"d": "D-4", "f": True, "at": DAY0.isoformat()}
    refused = client.post(
        "/graphql", json={"query": RECORD, "variables": variables}, headers=reader
    )
    body = refused.json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN" and body["data"] is None
    with session_scope(db_engine) as session:  # audited like every request
        event = AuditRepository(session).get(uuid.UUID(refused.headers["x-request-id"]))
        assert event is not None
        assert (event.outcome, event.error_codes, event.operation_name) == (
            "denied",
            ["FORBIDDEN"],
            "R",
        )
    writer = {"Authorization": f"Bearer {make_token(Scope.OUTCOMES_WRITE)}"}
    bad = [
        ({"d": "", "f": True, "at": DAY0.isoformat()}, "deviceId"),
        ({"d": "x" * 65, "f": True, "at": DAY0.isoformat()}, "deviceId"),
        ({"d": "D\x07", "f": True, "at": DAY0.isoformat()}, "deviceId"),
        ({"d": "D-4", "f": True, "at": "2026-10-01T00:00:00"}, "observedAt"),
        ({"d": "D-4", "f": True, "at": "1999-12-31T00:00:00Z"}, "observedAt"),
        (
            {"d": "D-4", "f": True, "at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
            "observedAt",
        ),
    ]
    for variables, field in bad:
        error = gql(client, RECORD, variables, writer)["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (variables, error)
        assert error["extensions"].get("field") == field or "control" in error["message"]
    # One failing field: the whole mutation stores nothing, the good outcome included.
    both = """mutation { a: recordOutcome(deviceId: "D-5", failed: true, observedAt: "2026-10-01T00:00:00Z") { day }
      b: recordOutcome(deviceId: "", failed: true, observedAt: "2026-10-01T00:00:00Z") { day } }"""
    assert gql(client, both, None, writer)["data"] is None
    assert record(client, writer, "D-6", False, DAY0)["deviceId"] == "D-6"
    assert count_rows(db_engine, "outcome") == 1


def _labels(
    predictions: list[tuple[str, datetime, float]],
    outcomes: list[tuple[str, bool, datetime]],
    days: int,
):
    """The documented labeling rule, in Python: None for unlabeled."""
    found = []
    for device, at, _ in predictions:
        covering = [
            failed
            for d, failed, seen in outcomes
            if d == device and seen - timedelta(days=days) < at <= seen
        ]
        found.append(None if not covering else int(any(covering)))
    return found


@pytest.fixture
def history(
    client: TestClient, auth_headers: dict, db_engine: Any, active_model: Any
) -> Iterator[dict]:
    """40 devices x 6 days of predictions (probabilities on a coarse grid: ties), outcomes
    recorded for most device-days; some devices fail."""
    rng = np.random.default_rng(12)
    predictions = []
    for device in range(40):
        fails = device % 4 == 0
        for day in range(6):
            for hour in (0, 9, 17):
                at = DAY0 + timedelta(days=day, hours=hour, minutes=device)
                base = 0.55 if fails else 0.3
                p = float(np.clip(np.round(base + rng.normal(0, 0.25), 1), 0.0, 1.0))
                predictions.append((f"dev-{device:02d}", at, p))
    seed_predictions(db_engine, active_model.id, predictions)
    outcomes = []
    for device in range(36):  # the last four devices are never labeled
        for day in range(1, 7):
            failed = device % 4 == 0 and day in (4, 5)
            seen = DAY0 + timedelta(days=day, minutes=device)  # covers the day before it
            outcomes.append((f"dev-{device:02d}", failed, seen))
            record(client, auth_headers, f"dev-{device:02d}", failed, seen)
    yield {"predictions": predictions, "outcomes": outcomes}


def test_live_metrics_equal_scikit_learn_on_the_same_labeled_rows(client, auth_headers, history):
    found = performance(client, auth_headers, v="test-1")
    labels = _labels(history["predictions"], history["outcomes"], 1)
    kept = [i for i, label in enumerate(labels) if label is not None]
    y = np.array([labels[i] for i in kept])
    p = np.array([history["predictions"][i][2] for i in kept])
    predicted = (p >= 0.5).astype(int)
    assert found["labeled"] == len(kept) and found["unlabeled"] == len(labels) - len(kept)
    assert found["labeledFailures"] == y.sum() > 10
    assert found["truePositives"] == int(((predicted == 1) & (y == 1)).sum())
    assert found["falsePositives"] == int(((predicted == 1) & (y == 0)).sum())
    assert found["trueNegatives"] == int(((predicted == 0) & (y == 0)).sum())
    assert found["falseNegatives"] == int(((predicted == 0) & (y == 1)).sum())
    assert found["precision"] == pytest.approx(precision_score(y, predicted), abs=1e-12)
    assert found["recall"] == pytest.approx(recall_score(y, predicted), abs=1e-12)
    assert found["f1"] == pytest.approx(f1_score(y, predicted), abs=1e-12)
    assert found["rocAuc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert found["prAuc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    fp, tn = found["falsePositives"], found["trueNegatives"]
    assert found["falsePositiveRate"] == pytest.approx(fp / (fp + tn), abs=1e-12)
    assert found["training"]["prAuc"] == 0.5 and found["training"]["recall"] is None
    assert found["degraded"] is None and "no training test-set" in found["verdict"]
    # A window: the first two days only.
    two = performance(
        client,
        auth_headers,
        **{"from": DAY0.isoformat(), "to": (DAY0 + timedelta(days=2)).isoformat()},
    )
    inside = [i for i in kept if history["predictions"][i][1] < DAY0 + timedelta(days=2)]
    assert two["labeled"] == len(inside)


def _version(
    db_engine: Any, demo_artifact: bytes, name: str, recall: float, precision: float
) -> None:
    metrics = {"test": {"recall": recall, "precision": precision, "pr_auc": 0.4, "roc_auc": 0.8}}
    register_version(db_engine, demo_artifact, name, activate=False, metrics=metrics)


def _copy_predictions(db_engine: Any, history: dict, name: str) -> None:
    with db_engine.connect() as connection:
        version_id = connection.execute(
            sa.text("SELECT id FROM model_version WHERE version = :v"), {"v": name}
        ).scalar_one()
    seed_predictions(db_engine, version_id, history["predictions"])


def test_degraded_is_true_false_or_unknown_with_its_reason(
    client, auth_headers, db_engine, demo_artifact, history
):
    live = performance(client, auth_headers)
    recall, precision = live["recall"], live["precision"]
    _version(db_engine, demo_artifact, "fine-1", recall + 0.05, precision + 0.09)
    _version(db_engine, demo_artifact, "worse-1", recall + 0.2, precision)
    for name in ("fine-1", "worse-1"):
        _copy_predictions(db_engine, history, name)
    fine = performance(client, auth_headers, v="fine-1")
    assert (fine["recall"], fine["precision"]) == (recall, precision)
    assert fine["degraded"] is False and fine["findings"] == [] and "within 0.1" in fine["verdict"]
    worse = performance(client, auth_headers, v="worse-1")
    assert worse["degraded"] is True and len(worse["findings"]) == 1
    assert worse["findings"][0].startswith("recall") and worse["verdict"] == worse["findings"][0]
    assert worse["training"]["recall"] == pytest.approx(recall + 0.2)
    strict = client.app.state.runtime.settings.model_copy(update={"performance_min_failures": 1000})
    with TestClient(create_app(strict)) as cautious:
        unsure = performance(cautious, auth_headers, v="worse-1")
    assert unsure["degraded"] is None and unsure["minFailures"] == 1000
    assert (
        unsure["verdict"]
        == f"{live['labeledFailures']} labeled failures; at least 1000 are needed to judge"
    )


def test_performance_refusals(client, auth_headers, make_token, active_model):
    error = gql(client, PERFORMANCE, {"v": "nope"}, auth_headers)["errors"][0]
    assert error["extensions"]["code"] == "NOT_FOUND"
    writer = {"Authorization": f"Bearer {make_token(Scope.OUTCOMES_WRITE)}"}
    assert gql(client, PERFORMANCE, {}, writer)["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    empty = performance(client, auth_headers)
    assert empty["labeled"] == empty["unlabeled"] == 0 and empty["precision"] is None
    assert empty["rocAuc"] is None and empty["from"] is None
