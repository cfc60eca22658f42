"""PSI and the two-sample KS test (model/drift.py): by hand on fixed samples, and against scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from model.drift import (
    EPSILON,
    DriftStatus,
    kolmogorov_sf,
    ks_2samp,
    ks_statistic,
    psi,
    psi_status,
    worst,
)
from model.profile import bin_index, build_profile


def test_psi_equals_the_hand_computation():
    # live shares 0.4, 0.4, 0.2 against training's 0.5, 0.3, 0.2
    by_hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.4 - 0.3) * math.log(0.4 / 0.3) + 0.0
    assert psi([40, 40, 20], [0.5, 0.3, 0.2]) == pytest.approx(by_hand, abs=1e-15)
    assert by_hand == pytest.approx(0.0510825624, abs=1e-10)
    assert psi([5, 3, 2], [0.5, 0.3, 0.2]) == 0.0  # the same shares: no drift


def test_empty_bins_are_floored_at_epsilon():
    # a live bin left empty, and a bin training never reached filled with half the values
    value = psi([50, 0, 50], [0.5, 0.5, 0.0])
    by_hand = (EPSILON - 0.5) * math.log(EPSILON / 0.5) + (0.5 - EPSILON) * math.log(0.5 / EPSILON)
    assert value == pytest.approx(by_hand, rel=1e-12)
    assert value > 8  # far beyond ALERT, not infinite
    with pytest.raises(ValueError):
        psi([0, 0], [0.5, 0.5])
    with pytest.raises(ValueError):
        psi([1, 2, 3], [0.5, 0.5])


def test_statuses_follow_the_documented_thresholds():
    assert psi_status(0.0999, 500, 500) is DriftStatus.OK
    assert psi_status(0.1, 500, 500) is DriftStatus.WARN
    assert psi_status(0.2499, 500, 500) is DriftStatus.WARN
    assert psi_status(0.25, 500, 500) is DriftStatus.ALERT
    assert psi_status(9.0, 499, 500) is DriftStatus.INSUFFICIENT_DATA
    assert worst([DriftStatus.OK, DriftStatus.ALERT, DriftStatus.WARN]) is DriftStatus.ALERT
    assert (
        worst([DriftStatus.ALERT, DriftStatus.INSUFFICIENT_DATA]) is DriftStatus.INSUFFICIENT_DATA
    )
    assert worst([]) is DriftStatus.OK


def test_ks_statistic_equals_the_hand_computation():
    reference = np.array([1.0, 2.0, 3.0, 4.0])
    live = np.array([2.5, 3.5, 5.0])
    # ECDFs at 2 (and 2.5-): reference 2/4, live 0/3: the largest distance, 0.5
    assert ks_statistic(reference, live) == 0.5
    d, p_value = ks_2samp(reference, live)
    z = math.sqrt(4 * 3 / 7) * 0.5
    by_hand = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * z * z) for k in range(1, 50))
    assert p_value == pytest.approx(by_hand, abs=1e-12)
    assert d == stats.ks_2samp(reference, live).statistic


@pytest.mark.parametrize("seed", range(6))
def test_ks_agrees_with_scipy_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    reference = rng.lognormal(3, 1, 2000)
    live = rng.lognormal(3 + 0.05 * seed, 1, 500 + 400 * seed)
    if seed % 2:  # counters: whole numbers with many ties and zeros
        reference, live = np.floor(reference / 10), np.floor(live / 10)
        reference[:800] = 0
        live[: live.size // 3] = 0
    d, p_value = ks_2samp(reference, live)
    expected = stats.ks_2samp(reference, live, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-15)
    n1, n2 = reference.size, live.size
    limiting = stats.kstwobign.sf(math.sqrt(n1 * n2 / (n1 + n2)) * d)
    assert p_value == pytest.approx(limiting, rel=1e-9, abs=1e-15)
    # scipy's asymp now uses the finite-n distribution: within the documented 0.015
    assert abs(p_value - expected.pvalue) < 0.015


def test_kolmogorov_survival_function_matches_scipy_everywhere():
    zs = np.concatenate([np.linspace(0.0, 4.0, 801), [1.17, 1.18, 1.19, 5.0, 8.0, 30.0]])
    ours = np.array([kolmogorov_sf(z) for z in zs])
    assert np.allclose(ours, stats.kstwobign.sf(zs), rtol=1e-12, atol=1e-15)
    assert kolmogorov_sf(-1.0) == 1.0


def test_bins_counted_by_hand_give_the_psi_of_a_profile():
    rng = np.random.default_rng(11)
    training = rng.gamma(2.0, 10.0, (5000, 1))
    feature = build_profile(training, ["metric1"])["features"]["metric1"]
    edges, shares = feature["bins"]["edges"], feature["bins"]["shares"]
    same = rng.gamma(2.0, 10.0, 3000)
    shifted = same * 1.6
    counts = [np.bincount(bin_index(v, edges), minlength=len(shares)) for v in (same, shifted)]
    assert psi_status(psi(counts[0], shares), 3000, 500) is DriftStatus.OK
    assert psi_status(psi(counts[1], shares), 3000, 500) is DriftStatus.ALERT
