"""Golden sets: inputs and the probabilities a version gave them at registration.

Stored with the version (`model_version.golden_set`, plain JSON):

    {"format": 1, "feature_names": [...], "inputs": [[...], ...], "probabilities": [...]}

The probabilities are scikit-learn's own (`predict_proba` of the fitted estimator) at
registration; a serving process re-scores the inputs with the evaluator it will serve with and
refuses the version when any probability differs by more than TOLERANCE. That catches an
artifact, an evaluator or a numerical library that no longer computes what was validated,
before the version answers a single request.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from model.errors import GoldenSetMismatch
from model.predictor import Predictor

FloatArray = npt.NDArray[np.float64]
GOLDEN_FORMAT = 1
GOLDEN_ROWS = 64
GOLDEN_SEED = 20261129
TOLERANCE = 1e-9


def pick_golden_rows(
    matrix: FloatArray, labels: npt.NDArray[Any], rows: int = GOLDEN_ROWS
) -> FloatArray:
    """Up to `rows` rows of `matrix`: every failure first (up to a quarter), then a fixed-seed
    sample of the rest, so that the positive side of the model is scored too."""
    rng = np.random.default_rng(GOLDEN_SEED)
    positives = np.flatnonzero(labels == 1)
    negatives = np.flatnonzero(labels != 1)
    take_pos = min(len(positives), rows // 4)
    pos = rng.choice(positives, size=take_pos, replace=False) if take_pos else positives[:0]
    take_neg = min(len(negatives), rows - take_pos)
    neg = rng.choice(negatives, size=take_neg, replace=False) if take_neg else negatives[:0]
    return np.asarray(matrix[np.sort(np.concatenate([pos, neg]))], dtype=np.float64)


def build_golden_set(
    feature_names: Sequence[str], inputs: FloatArray, probabilities: FloatArray
) -> dict[str, Any]:
    """The JSON of a golden set: `inputs` columns are `feature_names`."""
    if inputs.ndim != 2 or inputs.shape != (len(probabilities), len(feature_names)):
        raise ValueError("a golden set needs one probability per input row of every feature")
    return {
        "format": GOLDEN_FORMAT,
        "feature_names": list(feature_names),
        "inputs": inputs.tolist(),
        "probabilities": [float(p) for p in probabilities],
    }


def check_golden_set(predictor: Predictor, golden: Mapping[str, Any]) -> None:
    """Re-score the golden inputs; GoldenSetMismatch if any probability moved beyond TOLERANCE."""
    try:
        names = list(golden["feature_names"])
        inputs = np.asarray(golden["inputs"], dtype=np.float64)
        expected = np.asarray(golden["probabilities"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise GoldenSetMismatch(f"golden set unreadable: {exc}") from exc
    if names != list(predictor.feature_names) or inputs.shape != (len(expected), len(names)):
        raise GoldenSetMismatch("golden set does not match the model's features")
    if len(expected) == 0:
        return
    got = predictor.predict_proba(inputs)
    diff = np.abs(got - expected)
    worst = int(np.argmax(diff))
    if not diff[worst] <= TOLERANCE:  # also catches NaN
        raise GoldenSetMismatch(
            f"golden set row {worst} scores {float(got[worst])!r} where "
            f"{float(expected[worst])!r} was recorded at registration "
            f"(differs by {diff[worst]:.3g}, tolerance {TOLERANCE:g})"
        )
