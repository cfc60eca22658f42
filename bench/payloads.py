"""Request bodies: plausible device telemetry, as the original REST body or as GraphQL."""

import json
import random
from typing import Any

FEATURES = ("metric1", "metric2", "metric3", "metric4", "metric5", "metric6", "metric7", "metric9")

PREDICT_DOCUMENT = (
    "mutation Predict($input: PredictInput!) { predict(input: $input) "
    "{ id label failureProbability threshold modelVersion { version algorithm } } }"
)
BATCH_DOCUMENT = (
    "mutation PredictBatch($inputs: [PredictInput!]!) { predictBatch(inputs: $inputs) "
    "{ id label failureProbability } }"
)
# predictBatch's rows sent column by column, selecting the same fields of each prediction
COLUMNS_DOCUMENT = (
    "mutation PredictColumns($input: PredictColumnsInput!) { predictColumns(input: $input) "
    "{ predictionId label failureProbability } }"
)
# The same documents selecting every field of the explanation (computed and stored with it).
EXPLANATION = (
    "explanation { kind score baseValue path { feature threshold value goesLeft } "
    "contributions { feature value contribution } }"
)
EXPLAINED_PREDICT_DOCUMENT = PREDICT_DOCUMENT.replace("threshold ", f"threshold {EXPLANATION} ")
EXPLAINED_BATCH_DOCUMENT = BATCH_DOCUMENT.replace(" } }", f" {EXPLANATION} }} }}")


def _heavy_tail(rng: random.Random, zero_share: float, scale: float) -> int:
    # Most counters are zero on most days, with a long tail (as in the public dataset).
    return 0 if rng.random() < zero_share else int(rng.paretovariate(1.2) * scale)


def telemetry(rng: random.Random, index: int) -> dict[str, Any]:
    """One device-day of telemetry in the original REST body's shape (with a device id)."""
    return {
        "deviceId": f"B{index % 100_000:07d}",
        "metric1": rng.randrange(0, 244_000_000),
        "metric2": _heavy_tail(rng, 0.95, 20),
        "metric3": _heavy_tail(rng, 0.93, 5),
        "metric4": _heavy_tail(rng, 0.93, 2),
        "metric5": rng.randint(1, 98),
        "metric6": rng.randrange(0, 690_000),
        "metric7": _heavy_tail(rng, 0.99, 2),
        "metric9": _heavy_tail(rng, 0.78, 3),
    }


def rows(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` telemetry rows, the same for the same seed."""
    rng = random.Random(seed)
    return [telemetry(rng, seed * 1_000_003 + i) for i in range(count)]


def _dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


def rest_bodies(variants: int) -> list[str]:
    """Bodies of `POST /predict` (the original contract: the eight metrics, flat)."""
    return [_dumps({k: v for k, v in row.items() if k != "deviceId"}) for row in rows(variants, 1)]


def predict_bodies(variants: int, document: str = PREDICT_DOCUMENT) -> list[str]:
    """Bodies of the `predict` mutation, with the row in variables (as a client sends it)."""
    return [
        _dumps({"query": document, "variables": {"input": row}, "operationName": "Predict"})
        for row in rows(variants, 2)
    ]


def batch_bodies(variants: int, size: int, document: str = BATCH_DOCUMENT) -> list[str]:
    """Bodies of the `predictBatch` mutation with `size` rows each."""
    return [
        _dumps(
            {
                "query": document,
                "variables": {"inputs": rows(size, 100 + variant)},
                "operationName": "PredictBatch",
            }
        )
        for variant in range(variants)
    ]


def columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows laid out as `PredictColumnsInput`: one list per field, item i of each from row i."""
    return {name: [row[name] for row in rows] for name in ("deviceId", *FEATURES)}


def columns_bodies(variants: int, size: int, document: str = COLUMNS_DOCUMENT) -> list[str]:
    """Bodies of the `predictColumns` mutation: `batch_bodies`' rows, as columns."""
    return [
        _dumps(
            {
                "query": document,
                "variables": {"input": columns(rows(size, 100 + variant))},
                "operationName": "PredictColumns",
            }
        )
        for variant in range(variants)
    ]
