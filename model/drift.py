"""Input drift: how far live inputs moved from a version's training profile (model.profile).

Two measures per feature, both plain numpy (serving never imports scipy):

- **Population stability index** over the profile's PSI bins: with `e` the training share of a
  bin and `a` the live share, PSI = sum over bins of (a - e) * ln(a / e). A bin empty on either
  side would make the term infinite, so both shares are floored at `EPSILON` (1e-4, i.e. one row
  in 10,000) before the sum; a bin the training data never reached (share 0) that live inputs
  fill still scores high, as it should. The live counts come from SQL (persistence.drift), never
  from rows loaded into memory. Status by the usual rule of thumb: PSI < 0.1 `OK`, 0.1 to 0.25
  `WARN`, >= 0.25 `ALERT`; below a minimum sample `INSUFFICIENT_DATA` (PSI over a few hundred
  rows raises false alarms), whatever the PSI.
- **Two-sample Kolmogorov-Smirnov**: D = the largest distance between the empirical CDFs of the
  profile's reference sample and a bounded sample of the window, evaluated at every value of
  both (ties handled as scipy does). Its p-value is the asymptotic (limiting) Kolmogorov
  distribution at sqrt(n1 n2 / (n1 + n2)) * D: Q(z) = 2 * sum_k (-1)^(k-1) exp(-2 k^2 z^2),
  which is scipy's `kstwobign.sf`; for small z the equivalent theta-function series
  1 - sqrt(2 pi)/z * sum_k exp(-(2k-1)^2 pi^2 / (8 z^2)) is summed instead, as it converges
  where the first does not. scipy's `ks_2samp(method="asymp")` now uses the finite-n
  distribution of round(n1 n2 / (n1 + n2)); with the sample sizes used here (a window of at
  least 500 against a 2,000-value reference) the two differ by less than 0.015
  (tests/unit/test_drift_statistics.py checks both).
"""

import math
from collections.abc import Sequence
from enum import StrEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
EPSILON = 1e-4  # the floor of a bin's share (live or training) in the PSI sum
WARN_PSI = 0.1
ALERT_PSI = 0.25
_TERMS = 100  # terms of either series: far more than float64 needs (they fall as exp(-k^2))
_SWITCH = 1.18  # z below which the small-z series is summed (both are exact to 1e-16 there)


class DriftStatus(StrEnum):
    """How far a feature (or a whole window) drifted; ordered from calm to worst."""

    OK = "OK"
    WARN = "WARN"
    ALERT = "ALERT"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


# Worst first when combining features: too little data says nothing about the others.
_SEVERITY = {
    DriftStatus.OK: 0,
    DriftStatus.WARN: 1,
    DriftStatus.ALERT: 2,
    DriftStatus.INSUFFICIENT_DATA: 3,
}
# The gauge value of each status (failcast_drift_status): alert rules read `>= 2`.
GAUGE_VALUE = {
    DriftStatus.OK: 0.0,
    DriftStatus.WARN: 1.0,
    DriftStatus.ALERT: 2.0,
    DriftStatus.INSUFFICIENT_DATA: -1.0,
}


def psi(live_counts: Sequence[int], training_shares: Sequence[float]) -> float:
    """The population stability index of live bin counts against training bin shares."""
    counts = np.asarray(live_counts, dtype=np.float64)
    expected = np.asarray(training_shares, dtype=np.float64)
    if counts.shape != expected.shape:
        raise ValueError("live counts and training shares need one value per bin")
    total = counts.sum()
    if total <= 0:
        raise ValueError("PSI needs at least one live value")
    actual = np.maximum(counts / total, EPSILON)
    expected = np.maximum(expected, EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_status(value: float, sample_size: int, min_sample: int) -> DriftStatus:
    """The status of one feature's PSI over `sample_size` live values."""
    if sample_size < min_sample:
        return DriftStatus.INSUFFICIENT_DATA
    if value >= ALERT_PSI:
        return DriftStatus.ALERT
    return DriftStatus.WARN if value >= WARN_PSI else DriftStatus.OK


def worst(statuses: Sequence[DriftStatus]) -> DriftStatus:
    """The overall status of several features: the worst of them (OK for none)."""
    return max(statuses, key=_SEVERITY.__getitem__, default=DriftStatus.OK)


def ks_statistic(reference: FloatArray, live: FloatArray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic D (the largest ECDF distance)."""
    first = np.sort(np.asarray(reference, dtype=np.float64))
    second = np.sort(np.asarray(live, dtype=np.float64))
    if first.size == 0 or second.size == 0:
        raise ValueError("the KS statistic needs two non-empty samples")
    every = np.concatenate([first, second])
    cdf1 = np.searchsorted(first, every, side="right") / first.size
    cdf2 = np.searchsorted(second, every, side="right") / second.size
    return float(np.max(np.abs(cdf1 - cdf2)))


def kolmogorov_sf(z: float) -> float:
    """P(K > z) for the Kolmogorov distribution (scipy's `kstwobign.sf`)."""
    if z <= 0.0:
        return 1.0
    k = np.arange(1, _TERMS + 1, dtype=np.float64)
    if z < _SWITCH:
        odd = 2.0 * k - 1.0
        cdf = math.sqrt(2.0 * math.pi) / z * np.sum(np.exp(-(odd**2) * math.pi**2 / (8 * z * z)))
        return float(min(max(1.0 - cdf, 0.0), 1.0))
    signs = np.where(k % 2 == 1, 1.0, -1.0)
    return float(min(max(2.0 * np.sum(signs * np.exp(-2.0 * k * k * z * z)), 0.0), 1.0))


def ks_2samp(reference: FloatArray, live: FloatArray) -> tuple[float, float]:
    """(D, asymptotic p-value) of the two-sample Kolmogorov-Smirnov test (two-sided)."""
    d = ks_statistic(reference, live)
    n1, n2 = float(np.size(reference)), float(np.size(live))
    return d, kolmogorov_sf(math.sqrt(n1 * n2 / (n1 + n2)) * d)
