"""History features (model.history): each row's features from its window of earlier rows."""

import numpy as np
import pytest

from model import DEVICE_FEATURES
from model.history import ZERO_RUN_CAP, HistoryFeatures, history_feature_names

ALL = (*DEVICE_FEATURES, *history_feature_names())


def _sequence(rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 50, size=(rows, len(DEVICE_FEATURES))).astype(np.float64)
    values[rng.random(values.shape) < 0.6] = 0.0  # mostly zeros, like the real counters
    return values


def _column(features: HistoryFeatures, computed: np.ndarray, name: str) -> np.ndarray:
    return computed[:, features.feature_names.index(name)]


def test_each_feature_matches_its_definition_row_by_row() -> None:
    features = HistoryFeatures(ALL)
    seq = _sequence(40)
    computed = features.of_sequences([seq])[0]
    m = DEVICE_FEATURES.index("metric2")
    for t in range(seq.shape[0]):
        row = computed[t]
        get = dict(zip(features.feature_names, row.tolist(), strict=True))
        assert get["metric2"] == seq[t, m]
        assert get["metric2_delta"] == (0.0 if t == 0 else seq[t, m] - seq[t - 1, m])
        for w in (3, 7, 14):
            recent = seq[max(0, t - w + 1) : t + 1, m]
            assert get[f"metric2_max{w}"] == recent.max()
            assert get[f"metric2_mean{w}"] == pytest.approx(recent.mean(), rel=1e-15)
        nonzero = [k for k in range(t + 1) if seq[k, m] != 0]
        expected_run = min(t - nonzero[-1], ZERO_RUN_CAP) if nonzero else ZERO_RUN_CAP
        assert get["metric2_zero_run"] == expected_run
        assert get["observations"] == t


def test_a_single_observation_is_a_first_observation() -> None:
    features = HistoryFeatures(ALL)
    row = _sequence(1)
    computed = dict(zip(ALL, features.of_sequences([row])[0][0].tolist(), strict=True))
    assert computed["observations"] == 0
    assert all(computed[f"{m}_delta"] == 0 for m in DEVICE_FEATURES)
    for m in DEVICE_FEATURES:
        value = row[0, DEVICE_FEATURES.index(m)]
        assert computed[f"{m}_max7"] == computed[f"{m}_mean14"] == value
        assert computed[f"{m}_zero_run"] == (0 if value else ZERO_RUN_CAP)


def test_serving_windows_from_a_tail_give_the_same_bits_as_the_whole_sequence() -> None:
    # What serving does: the device's latest `depth` rows, then the new rows.
    features = HistoryFeatures(ALL)
    seq = _sequence(120, seed=3)
    whole = features.of_sequences([seq])[0]
    for cut in (1, 5, 31, 90, 119):
        tail = seq[max(0, cut - features.depth) : cut]
        windows = features.windows_of_sequence(np.vstack([tail, seq[cut:]]), earlier=len(tail))
        counts = np.arange(cut, seq.shape[0], dtype=np.float64)
        assert np.array_equal(features.compute(windows, counts), whole[cut:])


@pytest.mark.parametrize(
    "kinds",
    [None, ("delta", "max7", "zero_run"), ("mean3", "mean14")],
    ids=["all", "served", "means"],
)
def test_one_row_is_computed_in_python_to_the_bits_of_a_batch(
    kinds: tuple[str, ...] | None,
) -> None:
    # A single window takes a plain-Python path (numpy's per-call cost exceeds the work): the
    # same operations in the same order, so the same bits as the same window in a batch.
    names = ALL if kinds is None else (*DEVICE_FEATURES, *history_feature_names(kinds))
    features = HistoryFeatures(names)
    rng = np.random.default_rng(12)
    rows, depth = 2_000, features.depth
    windows = rng.integers(0, 5, size=(rows, depth + 1, len(DEVICE_FEATURES))) * rng.random(
        (rows, depth + 1, len(DEVICE_FEATURES))
    )
    windows[rng.random(windows.shape) < 0.5] = 0.0  # zeros and ties, as in the counters
    windows[:, :, 3] = 1e300 * rng.random((rows, depth + 1))  # large values: rounding shows
    for i, missing in enumerate(rng.integers(0, depth + 1, size=rows)):
        windows[i, :missing, :] = np.nan  # a young device: fewer earlier observations
    counts = rng.integers(0, 400, size=rows).astype(np.float64)
    batch = features.compute(windows, counts)
    ones = np.vstack([features.compute(windows[i : i + 1], counts[i : i + 1]) for i in range(rows)])
    assert ones.tobytes() == batch.tobytes()


def test_depth_is_what_the_features_read() -> None:
    assert HistoryFeatures(DEVICE_FEATURES).depth == 0
    assert not HistoryFeatures(DEVICE_FEATURES).uses_history
    assert HistoryFeatures(("metric1", "metric1_delta")).depth == 1
    assert HistoryFeatures(("metric4_max7",)).depth == 6
    assert HistoryFeatures(("metric4_zero_run",)).depth == ZERO_RUN_CAP
    assert HistoryFeatures(("observations",)).depth == 0
    assert HistoryFeatures(("observations",)).uses_history  # it counts them


def test_counted_features_need_the_counts() -> None:
    features = HistoryFeatures(("metric1", "observations"))
    windows = features.windows_of_sequence(_sequence(3))
    with pytest.raises(ValueError, match="one count per row"):
        features.compute(windows)


@pytest.mark.parametrize("name", ["metric8_delta", "metric2_max5", "metric2", "speed", "m_delta"])
def test_unknown_names_are_refused(name: str) -> None:
    if name == "metric2":
        HistoryFeatures((name,))
        return
    with pytest.raises(ValueError, match="neither a telemetry counter nor a history feature"):
        HistoryFeatures((name,))


def test_rows_of_one_time_count_once_and_see_only_earlier_times() -> None:
    # The real data has one device reporting one day twice: serving keeps one observation per
    # time, so training must too.
    features = HistoryFeatures(ALL)
    seq = _sequence(6, seed=5)
    times = np.array([0, 1, 2, 2, 3, 4])
    computed = features.of_device(times, seq)
    distinct = seq[[0, 1, 3, 4, 5]]  # the later row of time 2 stands for it
    expected = features.of_sequences([distinct])[0]
    np.testing.assert_array_equal(computed[[0, 1, 3, 4, 5]], expected)
    alone = features.of_sequences([np.vstack([seq[:2], seq[2:3]])])[0][-1]
    np.testing.assert_array_equal(computed[2], alone)  # the first row of time 2, unseen by 3
    assert computed[2, ALL.index("observations")] == computed[3, ALL.index("observations")] == 2
    assert computed[4, ALL.index("observations")] == 3


def test_without_repeated_times_of_device_is_of_sequences() -> None:
    features = HistoryFeatures(ALL)
    seq = _sequence(20, seed=6)
    np.testing.assert_array_equal(
        features.of_device(np.arange(20), seq), features.of_sequences([seq])[0]
    )
