"""The model's work on concurrent requests, grouped per turn of the event loop
(graph.runtime.scoring): one call per group, each request answered its own rows (features,
probabilities, explanations, warnings) as if scored alone, and a request's failure or
cancellation kept to itself."""

import asyncio

import numpy as np
import pytest

from graph.runtime.scoring import COALESCED_ROWS, Scores, Scoring, scored
from model import (
    DEVICE_FEATURES,
    ArtifactMetadata,
    LoadedModel,
    dump_artifact,
    load_artifact,
)
from model import sha256_hex as digest
from model.history import HistoryFeatures, history_feature_names
from model.profile import build_profile, ranges
from training import generate_synthetic
from training.estimators import build_estimator


@pytest.fixture(scope="module")
def fleet() -> np.ndarray:
    data = generate_synthetic(devices=200, days=40, seed=5)
    return np.asarray(data.X)


def _loaded(algorithm: str, names: tuple[str, ...], X: np.ndarray, y: np.ndarray) -> LoadedModel:
    estimator = build_estimator(algorithm, seed=0, features=names)
    estimator.fit(X, y)
    artifact = dump_artifact(estimator, ArtifactMetadata(algorithm, names, 0.5))
    predictor = load_artifact(artifact, digest(artifact))
    assert predictor.compiled
    limits = ranges(build_profile(X, names), names)  # its training range: warnings outside it
    return LoadedModel(1, "v1", digest(artifact), predictor, None, limits)


@pytest.fixture(scope="module", params=["decision_tree", "logistic_regression"])
def model(request: pytest.FixtureRequest) -> LoadedModel:
    """A model of the counters alone."""
    data = generate_synthetic(devices=200, days=40, seed=3)
    return _loaded(request.param, DEVICE_FEATURES, np.asarray(data.X), np.asarray(data.y))


@pytest.fixture(scope="module")
def history_model() -> LoadedModel:
    """A logistic regression of the counters and their history features (the observations
    counted too): its rows are windows of each device's earlier observations."""
    names = (*DEVICE_FEATURES, *history_feature_names())
    features = HistoryFeatures(names)
    data = generate_synthetic(devices=120, days=40, seed=4)
    X = np.asarray(data.X)
    sequences = [X[i : i + 40] for i in range(0, len(X) - 40, 40)]
    inputs = np.vstack(features.of_sequences(sequences))
    y = (inputs[:, 0] > np.median(inputs[:, 0])).astype(int)
    return _loaded("logistic_regression", names, inputs, y)


def _run(coroutine):
    """Run a test's coroutine, failing rather than hanging if a request is never answered."""

    async def bounded():
        return await asyncio.wait_for(coroutine, timeout=10)

    return asyncio.run(bounded())


def _same_as_alone(
    model: LoadedModel, rows: np.ndarray, got: Scores, explain: bool, counts=None
) -> None:
    """What a request was answered equals its rows scored on their own: a tree's to the bit, a
    logistic regression's to the rounding of its matrix product; explanations' paths and
    contributions, and warnings, exactly."""
    alone = scored(model, rows, counts, explain)
    tolerance = 0.0 if model.predictor.algorithm == "decision_tree" else 1e-12
    assert len(got.probabilities) == len(rows) and len(got.is_failure) == len(rows)
    difference = np.asarray(got.probabilities) - np.asarray(alone.probabilities)
    assert np.abs(difference).max() <= tolerance
    assert got.is_failure == [p >= model.predictor.threshold for p in got.probabilities]
    assert got.warnings == alone.warnings
    if not explain:
        assert got.explanations is None
        return
    assert got.explanations is not None and alone.explanations is not None
    assert len(got.explanations) == len(rows)
    for mine, own in zip(got.explanations, alone.explanations, strict=True):
        assert abs(mine["score"] - own["score"]) <= 1e-12
        assert {**mine, "score": 0} == {**own, "score": 0}


@pytest.mark.parametrize("explain", [False, True])
def test_requests_of_one_turn_are_scored_in_one_call(model, fleet, explain):
    scoring = Scoring()
    requests = [fleet[i : i + 1] for i in range(0, 300, 20)] + [fleet[400:403], fleet[500:564]]

    async def all_at_once():
        return await asyncio.gather(*(scoring.score(model, r, None, explain) for r in requests))

    answers = _run(all_at_once())
    assert scoring.calls() == (1, len(requests)) and scoring.retried == 0
    for rows, got in zip(requests, answers, strict=True):
        _same_as_alone(model, rows, got, explain)


@pytest.mark.parametrize("explain", [False, True])
def test_rows_read_from_history_windows_are_grouped_with_their_warnings(history_model, explain):
    # Each request sends its rows' windows of earlier observations and their counts; the group
    # computes the features of all at once, and a row far outside the training range is
    # warned about in its own request's answer only.
    features = history_model.predictor.features
    X = np.asarray(generate_synthetic(devices=20, days=30, seed=8).X)
    windows = features.windows_of_sequence(X[:30])
    counts = np.arange(30, dtype=np.float64)
    windows[7, -1, 0] *= 1e6  # (metric1 of row 7 itself: far above what training saw)
    requests = [(windows[i : i + 1], counts[i : i + 1]) for i in range(0, 20)]
    requests.append((windows[20:30], counts[20:30]))
    scoring = Scoring()

    async def all_at_once():
        return await asyncio.gather(
            *(scoring.score(history_model, w, c, explain) for w, c in requests)
        )

    answers = _run(all_at_once())
    assert scoring.calls() == (1, len(requests)) and scoring.retried == 0
    for (w, c), got in zip(requests, answers, strict=True):
        _same_as_alone(history_model, w, got, explain, counts=c)
    assert answers[7].warnings is not None and "metric1 = " in answers[7].warnings[0][0]
    assert all(got.warnings is None for i, got in enumerate(answers) if i != 7)


def test_turns_make_groups_of_their_own_and_explained_requests_group_apart(model, fleet):
    scoring = Scoring()

    async def two_turns():
        first = await asyncio.gather(
            scoring.score(model, fleet[0:1], None, False),
            scoring.score(model, fleet[1:2], None, True),
            scoring.score(model, fleet[2:3], None, False),
        )
        assert scoring.calls() == (2, 3)  # one group without explanations, one with
        second = await asyncio.gather(
            *(scoring.score(model, fleet[i : i + 1], None, False) for i in range(3, 7))
        )
        return first, second

    first, second = _run(two_turns())
    assert scoring.calls() == (3, 7)
    _same_as_alone(model, fleet[0:1], first[0], False)
    _same_as_alone(model, fleet[1:2], first[1], True)
    _same_as_alone(model, fleet[2:3], first[2], False)
    for i, got in enumerate(second, start=3):
        _same_as_alone(model, fleet[i : i + 1], got, False)


def test_a_request_of_many_rows_is_scored_on_its_own_at_once(model, fleet):
    scoring = Scoring()
    rows = fleet[: COALESCED_ROWS + 1]

    async def big_and_small():
        return await asyncio.gather(
            scoring.score(model, rows, None, True), scoring.score(model, fleet[0:1], None, True)
        )

    big, small = _run(big_and_small())
    assert scoring.calls() == (1, 1)  # the small one's group; the big one called the model itself
    _same_as_alone(model, rows, big, True)
    _same_as_alone(model, fleet[0:1], small, True)


def test_a_request_the_model_refuses_fails_alone(model, fleet):
    # A wrong width cannot be stacked with the others: the group is scored request by request,
    # and only the bad one gets the model's error.
    scoring = Scoring()

    async def one_bad():
        return await asyncio.gather(
            scoring.score(model, fleet[0:1], None, False),
            scoring.score(model, fleet[1:2, :-1], None, False),
            scoring.score(model, fleet[2:3], None, False),
            return_exceptions=True,
        )

    first, bad, third = _run(one_bad())
    assert scoring.calls() == (1, 3) and scoring.retried == 3
    assert isinstance(bad, IndexError) and "index 7 is out of bounds" in str(bad)
    _same_as_alone(model, fleet[0:1], first, False)
    _same_as_alone(model, fleet[2:3], third, False)


def test_a_cancelled_request_leaves_its_group_answered(model, fleet):
    scoring = Scoring()

    async def one_cancelled():
        tasks = [
            asyncio.create_task(scoring.score(model, fleet[i : i + 1], None, False))
            for i in range(4)
        ]
        await asyncio.sleep(0)  # every task has left its rows
        tasks[1].cancel()  # (a deadline passing while its group waits for its turn)
        return await asyncio.gather(*tasks, return_exceptions=True)

    answers = _run(one_cancelled())
    assert isinstance(answers[1], asyncio.CancelledError)
    assert scoring.calls() == (1, 4)
    for i in (0, 2, 3):
        _same_as_alone(model, fleet[i : i + 1], answers[i], False)


def test_a_loop_that_stops_mid_turn_leaves_the_next_loop_scoring(model, fleet):
    # Tests (and a server's restarts in one process) run several event loops in turn: requests
    # left waiting by a loop that stopped before its turn ended must not hold up the next one.
    scoring = Scoring()
    stopped = asyncio.new_event_loop()
    try:
        left = stopped.create_task(scoring.score(model, fleet[0:1], None, False))
        stopped.call_soon(stopped.stop)  # after the task's first step: before the group's turn
        stopped.run_forever()
        assert not left.done()
        left.cancel()
    finally:
        stopped.close()

    got = _run(scoring.score(model, fleet[1:2], None, False))
    _same_as_alone(model, fleet[1:2], got, False)
    assert scoring.calls() == (1, 1)
