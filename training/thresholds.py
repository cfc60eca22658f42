"""Choosing the decision threshold on validation predictions (positive when proba >= threshold)."""

import numpy as np
import numpy.typing as npt

from training.errors import InsufficientDataError, InvalidOptionsError

_TOLERANCE = 1e-12  # recall is a ratio of counts; do not lose 0.7 == 7/10 to rounding


def candidate_thresholds(
    y: npt.NDArray[np.int64], proba: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Distinct scores (descending) with the precision and recall of `proba >= score`."""
    positives = int(y.sum())
    if positives == 0:
        raise InsufficientDataError("cannot choose a threshold without any failure")
    order = np.argsort(-proba, kind="stable")
    scores = proba[order]
    true_pos = np.cumsum(y[order])
    # The last row of each run of equal scores holds the counts for that threshold.
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tp = true_pos[last].astype(np.float64)
    predicted = (last + 1).astype(np.float64)
    return scores[last], tp / predicted, tp / positives


def choose_threshold(
    y: npt.NDArray[np.int64], proba: npt.NDArray[np.float64], min_recall: float | None = None
) -> float:
    """The F1-maximising threshold, or the highest one whose recall reaches `min_recall`."""
    thresholds, precision, recall = candidate_thresholds(y, proba)
    if min_recall is not None:
        if not 0.0 < min_recall <= 1.0:
            raise InvalidOptionsError("min_recall must be in (0, 1]")
        # Recall only grows as the threshold falls, so the first hit is the highest threshold.
        return float(thresholds[np.argmax(recall >= min_recall - _TOLERANCE)])
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0
    )
    # argmax takes the first maximum: on ties, the highest threshold (fewest false alarms).
    return float(thresholds[np.argmax(f1)])
