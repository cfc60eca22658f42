"""No train/serve skew: the real data replayed through `predictBatch` in date order is scored
from the same history features, and to the same probabilities, as training computed them
(every third device of the public file, each with its whole history).

A logistic regression on the real data's counters and history features is served; an
answer's explanation lists the values of all its features, which must equal the features
training computes with `model.history` (the same definition): checked on every third batch of
1,000 rows (explanations double a batch's cost), and every answered probability equals
scikit-learn's `predict_proba` on training's features to 1e-9. On SQLite and PostgreSQL.
"""

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient
from support import REAL_DATA, gql, needs_real_data, register_version
from test_history_serving import FEATURES, training_features

from graph.app import create_app
from model import DEVICE_FEATURES, ArtifactMetadata, dump_artifact, load_artifact, sha256_hex

pytestmark = needs_real_data
BATCH = """mutation B($r: [PredictInput!]!, $explain: Boolean!) { predictBatch(inputs: $r) {
  failureProbability explanation @include(if: $explain) { contributions { feature value } } } }"""
ROWS_PER_BATCH = 1000
DEVICE_STRIDE = 3
EXPLAINED = 3  # every third batch shows its features (all of them would double the run)


@pytest.fixture(scope="module")
def trained() -> tuple[Any, np.ndarray, bytes]:
    """(dataset, training features in dataset row order, artifact) of a logistic regression
    trained on the real data with history features."""
    from training import load_dataset
    from training.estimators import logistic_regression

    everything = load_dataset(REAL_DATA)
    # Every third device, with all its rows (~41,000 rows, 388 devices, failing ones among
    # them): the whole file on both databases would add minutes to every CI run.
    kept = np.unique(everything.devices)[::DEVICE_STRIDE]
    data = everything.subset(np.flatnonzero(np.isin(everything.devices, kept)))
    features = training_features(data)
    estimator = logistic_regression(seed=0).fit(features, data.y)
    metadata = ArtifactMetadata("logistic_regression", FEATURES, 0.5, {})
    return data, features, dump_artifact(estimator, metadata)


def test_replayed_real_data_gets_the_features_and_probabilities_of_training(
    settings, db_engine, auth_headers, trained
):
    data, features, artifact = trained
    register_version(
        db_engine,
        artifact,
        version="history-real",
        lifecycle=False,
        feature_names=FEATURES,
        algorithm="logistic_regression",
    )
    fast = settings.model_copy(update={"rate_limits": {"predict": (1e9, 1e9)}})
    order = np.lexsort((data.devices, data.dates))  # date order, as a fleet reports
    served = np.full_like(features, np.nan)
    probabilities = np.empty(len(data))
    with TestClient(create_app(fast)) as client:
        for batch, start in enumerate(range(0, len(order), ROWS_PER_BATCH)):
            rows = order[start : start + ROWS_PER_BATCH]
            inputs = [_input(data, i) for i in rows.tolist()]
            explain = batch % EXPLAINED == 0
            body = gql(client, BATCH, {"r": inputs, "explain": explain}, auth_headers)
            assert "errors" not in body, body["errors"]
            for i, answer in zip(rows.tolist(), body["data"]["predictBatch"], strict=True):
                probabilities[i] = answer["failureProbability"]
                if explain:
                    values = {
                        c["feature"]: c["value"] for c in answer["explanation"]["contributions"]
                    }
                    served[i] = [values[name] for name in FEATURES]
    shown = ~np.isnan(served[:, 0])
    assert shown.sum() > len(data) // (EXPLAINED + 1)
    differ = np.argwhere(shown[:, None] & (served != features))
    if differ.size:  # name the first rows and features that differ
        shown = [
            (str(data.devices[r]), str(data.dates[r]), FEATURES[c], served[r, c], features[r, c])
            for r, c in differ[:10].tolist()
        ]
        pytest.fail(f"{len(differ)} served features differ from training's, e.g. {shown}")
    predictor = load_artifact(artifact, sha256_hex(artifact))
    expected = predictor.reference_proba(features)  # scikit-learn on training's features
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-9)


def _input(data: Any, i: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        name: int(value) for name, value in zip(DEVICE_FEATURES, data.X[i].tolist(), strict=True)
    }
    day = data.dates[i].astype("datetime64[D]").item()
    row["deviceId"] = str(data.devices[i])
    row["observedAt"] = datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat()
    return row
