"""Scores the rows of concurrent requests together, one model call per group.

A `predict` server's requests come in waves: the group commit releases the requests it held
at once, their clients send the next ones together, and under 32 connections 13 to 19 of them
reach the model in the same turn of the event loop. Scored one by one, each paid the model's
whole per-call cost, in code the rest of the request had pushed out of the CPU's caches: one
row of the blended model cost 48 us cold (13 us in a loop), its explanation 80 us (31 us); in
a group of 16 they cost 7 and 16 us a row, cold.

So a request of few rows does not call the model itself: it leaves its rows here and waits.
The first of a turn schedules the group's scoring with `call_soon`, which runs it after every
callback already due in this turn, so a group takes in every request that gets this far in the
same turn and none waits for a later one: no timer, no added latency beyond the turn. The rows
of each (predictor, explain) are stacked into one matrix, scored by the model's batch path, and
each request gets its own rows' probabilities and explanations back. A request of more than
`COALESCED_ROWS` rows is scored on its own at once: it gains nothing from company.

What a row is answered does not depend on its company: the batch path gives a tree's and a
boosted model's scores to the bit of the one-row path, a logistic regression's (and a blend's)
to the rounding of a matrix product (1e-12), explanations' paths and contributions exactly
(`tests/unit/test_explain.py`, `tests/unit/test_calibration_compiled.py`). A group whose model
call raises is scored again request by request, so that each gets its own answer or error.
"""

import asyncio
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from model import Predictor
from model.compiled import Explanation

FloatArray = npt.NDArray[np.float64]
Scores = tuple[FloatArray, list[Explanation] | None]
COALESCED_ROWS = 64  # a request of more rows is scored on its own


def scored(predictor: Predictor, inputs: FloatArray, explain: bool) -> Scores:
    """P(failure) of each row and, with `explain`, its explanation (None: the model has none)."""
    if explain:
        return predictor.explain(inputs)
    return predictor.predict_proba(inputs), None


@dataclass(slots=True)
class _Group:
    """The requests of one turn that one predictor scores, with or without explanations."""

    predictor: Predictor
    explain: bool
    inputs: list[FloatArray] = field(default_factory=list)
    waiting: list[asyncio.Future[Scores]] = field(default_factory=list)


class Scoring:
    """Groups the model calls of the requests that reach them in the same turn of the loop."""

    def __init__(self) -> None:
        self._groups: dict[tuple[int, bool], _Group] = {}
        self.groups = 0  # model calls made for groups, and the requests they answered
        self.requests = 0

    def counts(self) -> tuple[int, int]:
        """The model calls made for groups so far, and the requests they answered."""
        return self.groups, self.requests

    async def score(self, predictor: Predictor, inputs: FloatArray, explain: bool) -> Scores:
        """`scored(predictor, inputs, explain)`, in a group with this turn's other requests."""
        if len(inputs) > COALESCED_ROWS:
            return scored(predictor, inputs, explain)
        loop = asyncio.get_running_loop()
        if not self._groups:
            loop.call_soon(self._score_groups)
        # keyed by identity: a predictor is held by its group until scored, so no other
        # predictor can take its id meanwhile
        key = (id(predictor), explain)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(predictor, explain)
        waiting: asyncio.Future[Scores] = loop.create_future()
        group.inputs.append(inputs)
        group.waiting.append(waiting)
        return await waiting

    def _score_groups(self) -> None:
        groups, self._groups = self._groups, {}
        for group in groups.values():
            self.groups += 1
            self.requests += len(group.waiting)
            if len(group.waiting) == 1:
                _answer_alone(group, 0)
                continue
            try:
                probabilities, explanations = scored(
                    group.predictor, np.concatenate(group.inputs), group.explain
                )
            except Exception:  # each request is scored alone, for its own answer or error
                for i in range(len(group.waiting)):
                    _answer_alone(group, i)
                continue
            start = 0
            for inputs, waiting in zip(group.inputs, group.waiting, strict=True):
                end = start + len(inputs)
                if not waiting.done():  # (a request cancelled meanwhile: its deadline passed)
                    mine = None if explanations is None else explanations[start:end]
                    waiting.set_result((probabilities[start:end], mine))
                start = end


def _answer_alone(group: _Group, i: int) -> None:
    waiting = group.waiting[i]
    if waiting.done():
        return
    try:
        waiting.set_result(scored(group.predictor, group.inputs[i], group.explain))
    except Exception as error:  # raised where the request waits
        waiting.set_exception(error)
