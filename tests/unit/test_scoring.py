"""The model calls of concurrent requests, grouped per turn of the event loop
(graph.runtime.scoring): one call per group, each request answered its own rows as if scored
alone, and a request's failure or cancellation kept to itself."""

import asyncio

import numpy as np
import pytest

from graph.runtime.scoring import COALESCED_ROWS, Scoring
from model import DEVICE_FEATURES, ArtifactMetadata, Predictor, dump_artifact, load_artifact
from model import sha256_hex as digest
from training import generate_synthetic
from training.estimators import build_estimator


@pytest.fixture(scope="module")
def fleet() -> np.ndarray:
    data = generate_synthetic(devices=200, days=40, seed=5)
    return np.asarray(data.X)


@pytest.fixture(scope="module", params=["decision_tree", "logistic_regression"])
def predictor(request: pytest.FixtureRequest) -> Predictor:
    data = generate_synthetic(devices=200, days=40, seed=3)
    estimator = build_estimator(request.param, seed=0)
    estimator.fit(data.X, data.y)
    artifact = dump_artifact(estimator, ArtifactMetadata(request.param, DEVICE_FEATURES, 0.5))
    loaded = load_artifact(artifact, digest(artifact))
    assert loaded.compiled
    return loaded


def _run(coroutine):
    """Run a test's coroutine, failing rather than hanging if a request is never answered."""

    async def bounded():
        return await asyncio.wait_for(coroutine, timeout=10)

    return asyncio.run(bounded())


def _same_as_alone(predictor: Predictor, rows: np.ndarray, got, explain: bool) -> None:
    """What a request was answered equals its rows scored on their own: a tree's to the bit, a
    logistic regression's to the rounding of its matrix product; explanations' paths and
    contributions exactly."""
    probabilities, explanations = got
    alone, alone_explained = (
        predictor.explain(rows) if explain else (predictor.predict_proba(rows), None)
    )
    tolerance = 0.0 if predictor.algorithm == "decision_tree" else 1e-12
    assert probabilities.shape == (len(rows),)
    assert np.abs(probabilities - alone).max() <= tolerance
    if not explain:
        assert explanations is None
        return
    assert len(explanations) == len(rows)
    for mine, own in zip(explanations, alone_explained, strict=True):
        assert abs(mine["score"] - own["score"]) <= 1e-12
        assert {**mine, "score": 0} == {**own, "score": 0}


@pytest.mark.parametrize("explain", [False, True])
def test_requests_of_one_turn_are_scored_in_one_call(predictor, fleet, explain):
    scoring = Scoring()
    requests = [fleet[i : i + 1] for i in range(0, 300, 20)] + [fleet[400:403], fleet[500:564]]

    async def all_at_once():
        return await asyncio.gather(*(scoring.score(predictor, r, explain) for r in requests))

    answers = _run(all_at_once())
    assert scoring.counts() == (1, len(requests))
    for rows, got in zip(requests, answers, strict=True):
        _same_as_alone(predictor, rows, got, explain)


def test_turns_make_groups_of_their_own_and_explained_requests_group_apart(predictor, fleet):
    scoring = Scoring()

    async def two_turns():
        first = await asyncio.gather(
            scoring.score(predictor, fleet[0:1], False),
            scoring.score(predictor, fleet[1:2], True),
            scoring.score(predictor, fleet[2:3], False),
        )
        assert scoring.counts() == (2, 3)  # one group without explanations, one with
        second = await asyncio.gather(
            *(scoring.score(predictor, fleet[i : i + 1], False) for i in range(3, 7))
        )
        return first, second

    first, second = _run(two_turns())
    assert scoring.counts() == (3, 7)
    _same_as_alone(predictor, fleet[0:1], first[0], False)
    _same_as_alone(predictor, fleet[1:2], first[1], True)
    _same_as_alone(predictor, fleet[2:3], first[2], False)
    for i, got in enumerate(second, start=3):
        _same_as_alone(predictor, fleet[i : i + 1], got, False)


def test_a_request_of_many_rows_is_scored_on_its_own_at_once(predictor, fleet):
    scoring = Scoring()
    rows = fleet[: COALESCED_ROWS + 1]

    async def big_and_small():
        return await asyncio.gather(
            scoring.score(predictor, rows, True), scoring.score(predictor, fleet[0:1], True)
        )

    big, small = _run(big_and_small())
    assert scoring.counts() == (1, 1)  # the small one's group; the big one called the model itself
    _same_as_alone(predictor, rows, big, True)
    _same_as_alone(predictor, fleet[0:1], small, True)


def test_a_request_the_model_refuses_fails_alone(predictor, fleet):
    # A wrong width cannot be stacked with the others: the group is scored request by request,
    # and only the bad one gets the model's error.
    scoring = Scoring()

    async def one_bad():
        return await asyncio.gather(
            scoring.score(predictor, fleet[0:1], False),
            scoring.score(predictor, fleet[1:2, :-1], False),
            scoring.score(predictor, fleet[2:3], False),
            return_exceptions=True,
        )

    first, bad, third = _run(one_bad())
    assert isinstance(bad, ValueError) and "expected an (n, 8) array" in str(bad)
    _same_as_alone(predictor, fleet[0:1], first, False)
    _same_as_alone(predictor, fleet[2:3], third, False)


def test_a_cancelled_request_leaves_its_group_answered(predictor, fleet):
    scoring = Scoring()

    async def one_cancelled():
        tasks = [
            asyncio.create_task(scoring.score(predictor, fleet[i : i + 1], False)) for i in range(4)
        ]
        await asyncio.sleep(0)  # every task has left its rows
        tasks[1].cancel()  # (a deadline passing while its group waits for its turn)
        return await asyncio.gather(*tasks, return_exceptions=True)

    answers = _run(one_cancelled())
    assert isinstance(answers[1], asyncio.CancelledError)
    assert scoring.counts() == (1, 4)
    for i in (0, 2, 3):
        _same_as_alone(predictor, fleet[i : i + 1], answers[i], False)
