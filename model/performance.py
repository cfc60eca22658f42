"""Live performance of a model version: its scores against what really happened, and the rule
that says whether it fell below its training figures.

Ranking metrics are computed from counts per distinct score, read in descending order of the
score (persistence.outcomes groups the labeled predictions in SQL and streams the groups in
batches): ROC-AUC is the trapezoidal area under (false positives, true positives) as the
threshold sweeps down through the distinct scores, and PR-AUC is average precision,
sum over thresholds of (recall gained) * (precision there). Both are exactly what scikit-learn's
`roc_auc_score` and `average_precision_score` compute from the underlying rows (ties at one score
form one step), and need memory for one batch of groups, not for the rows.

The degradation rule (modelPerformance's `degraded`, `failcast evaluate`'s gate): a figure in
`COMPARED` that is more than `tolerance` (absolute) below the same figure of the version's
training test set is a finding; any finding means degraded / not passed.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

COMPARED = ("recall", "precision")  # the figures held to training's


@dataclass
class RankingSums:
    """Running sums over score groups fed in descending score order."""

    positives: int = 0
    negatives: int = 0
    _area: float = 0.0  # ROC area in units of (negatives x positives), doubled
    _precision_sum: float = 0.0  # sum of (positives gained) * precision

    def add(self, positives: npt.ArrayLike, negatives: npt.ArrayLike) -> None:
        """One batch of groups: positives and negatives at each next (lower) distinct score."""
        pos = np.asarray(positives, dtype=np.int64)
        neg = np.asarray(negatives, dtype=np.int64)
        if pos.size == 0:
            return
        tps = self.positives + np.cumsum(pos)
        fps = self.negatives + np.cumsum(neg)
        before_tp = np.concatenate([[self.positives], tps[:-1]])
        self._area += float(np.sum(neg * (tps + before_tp)))
        seen = tps + fps
        precision = np.divide(tps, seen, out=np.zeros(len(tps)), where=seen > 0)
        self._precision_sum += float(np.sum(pos * precision))
        self.positives, self.negatives = int(tps[-1]), int(fps[-1])

    @property
    def roc_auc(self) -> float | None:
        """Area under the ROC curve; None unless both classes are present."""
        if not self.positives or not self.negatives:
            return None
        return self._area / (2.0 * self.positives * self.negatives)

    @property
    def pr_auc(self) -> float | None:
        """Average precision; None unless both classes are present (as training reports it)."""
        if not self.positives or not self.negatives:
            return None
        return self._precision_sum / self.positives


def ratio(numerator: int, denominator: int) -> float | None:
    """A rate, or None (unknown) when it is over nothing."""
    return numerator / denominator if denominator else None


def threshold_figures(tp: int, fp: int, tn: int, fn: int) -> dict[str, float | None]:
    """Precision, recall, F1, FPR and FNR of a confusion matrix (None where undefined)."""
    return {
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "false_positive_rate": ratio(fp, fp + tn),
        "false_negative_rate": ratio(fn, fn + tp),
    }


def compare_with_training(
    figures: Mapping[str, Any], training: Mapping[str, Any], tolerance: float
) -> list[str]:
    """One sentence per figure of COMPARED more than `tolerance` below training's.

    A figure training does not have is not compared; a live figure that is unknown (None) while
    training's is known counts as 0 (e.g. no predicted failure at all: precision over nothing).
    """
    findings = []
    for name in COMPARED:
        reference = training.get(name)
        if not isinstance(reference, int | float):
            continue
        value = figures.get(name)
        measured = float(value) if isinstance(value, int | float) else 0.0
        if reference - measured > tolerance:
            findings.append(
                f"{name} {measured:.4f} is {reference - measured:.4f} below the training "
                f"test set's {reference:.4f} (tolerance {tolerance:g})"
            )
    return findings


def comparable(training: Mapping[str, Any]) -> bool:
    """Whether training figures hold anything the rule compares."""
    return any(isinstance(training.get(name), int | float) for name in COMPARED)
