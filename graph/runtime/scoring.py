"""Scores the rows of concurrent requests together, one model call per group.

A `predict` server's requests come in waves: the group commit releases the requests it held
at once, their clients send the next ones together, and under 32 connections 13 to 19 of them
reach the model in the same turn of the event loop. Scored one by one, each paid the model's
whole per-call cost, in code the rest of the request had pushed out of the CPU's caches: one
row of the blended model cost 48 us cold (13 us in a loop), its explanation 80 us (31 us); in
a group of 16 they cost 7 and 16 us a row, cold.

So a request of few rows does not call the model itself: it leaves its rows here and waits.
The group does all of the model's work on them: the features (from the rows' history windows,
or the counters as they are), the probabilities and explanations, and the warnings of values
outside the training range.

The first of a turn schedules the group's scoring with `call_soon`, which runs it after every
callback already due in this turn, so a group takes in every request that gets this far in the
same turn and none waits for a later one: no timer, no added latency beyond the turn. The rows
of each (model, explain) are stacked into one array, the model's batch path does the work, and
each request gets its own rows' probabilities, explanations and warnings back. A request of
more than `COALESCED_ROWS` rows is scored on its own at once: it gains nothing from company.

What a row is answered does not depend on its company: history features and warnings are the
one-row path's to the bit (`tests/unit/test_history_features.py`, `tests/unit/test_profile.py`);
the batch path gives a tree's and a boosted model's scores to the bit of the one-row path, a
logistic regression's (and a blend's) to the rounding of a matrix product (1e-12), and
explanations' paths and contributions exactly (`tests/unit/test_explain.py`,
`tests/unit/test_calibration_compiled.py`). A group whose work raises is done again request by
request, so that each gets its own answer or error.
"""

import asyncio
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from model import LoadedModel
from model.compiled import Explanation

FloatArray = npt.NDArray[np.float64]
COALESCED_ROWS = 64  # a request of more rows is scored on its own


@dataclass(frozen=True, slots=True)
class Scores:
    """A request's rows, scored: P(failure) and whether it reaches the model's threshold (as
    lists: a group converts its arrays once), explanations (None: not asked for, or the model
    has none) and each row's warnings (None: no row has any)."""

    probabilities: list[float]
    is_failure: list[bool]
    explanations: list[Explanation] | None
    warnings: list[list[str] | None] | None


def scored(
    model: LoadedModel, rows: FloatArray, counts: FloatArray | None, explain: bool
) -> Scores:
    """The model's work on a request's rows: `rows` are the history windows, (n, depth + 1,
    counters), of a model whose features read them (with `counts`, each row's count of earlier
    observations, when they count them), else the counters, (n, counters)."""
    predictor = model.predictor
    features = predictor.features
    inputs = features.compute(rows, counts) if features.uses_history else features.plain(rows)
    if explain:
        probabilities, explanations = predictor.explain(inputs)
    else:
        probabilities, explanations = predictor.predict_proba(inputs), None
    warnings = None if model.ranges is None else model.ranges.warnings(inputs)
    is_failure = (probabilities >= predictor.threshold).tolist()
    return Scores(probabilities.tolist(), is_failure, explanations, warnings)


@dataclass(slots=True)
class _Group:
    """The requests of one turn that one model scores, with or without explanations."""

    model: LoadedModel
    explain: bool
    rows: list[FloatArray] = field(default_factory=list)
    counts: list[FloatArray | None] = field(default_factory=list)
    waiting: list[asyncio.Future[Scores]] = field(default_factory=list)


class Scoring:
    """Groups the model's work on the requests that reach it in the same turn of the loop."""

    def __init__(self) -> None:
        # per event loop (a server has one; tests start and stop several), the groups of its
        # current turn: a loop that stops before its turn ends takes only its own requests
        self._turns: dict[asyncio.AbstractEventLoop, dict[tuple[int, bool], _Group]] = {}
        self.groups = 0  # model calls made for groups, and the requests they answered
        self.requests = 0
        self.retried = 0  # requests scored again alone, their group's work having raised

    def calls(self) -> tuple[int, int]:
        """The model calls made for groups so far, and the requests they answered."""
        return self.groups, self.requests

    async def score(
        self, model: LoadedModel, rows: FloatArray, counts: FloatArray | None, explain: bool
    ) -> Scores:
        """`scored(model, rows, counts, explain)`, in a group with this turn's other requests."""
        if len(rows) > COALESCED_ROWS:
            return scored(model, rows, counts, explain)
        loop = asyncio.get_running_loop()
        groups = self._turns.get(loop)
        if groups is None:  # the first request of this turn
            groups = self._turns[loop] = {}
            loop.call_soon(self._score_groups, loop)
        # keyed by identity: a model is held by its group until scored, so no other model can
        # take its id meanwhile
        key = (id(model), explain)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(model, explain)
        waiting: asyncio.Future[Scores] = loop.create_future()
        group.rows.append(rows)
        group.counts.append(counts)
        group.waiting.append(waiting)
        return await waiting

    def _score_groups(self, loop: asyncio.AbstractEventLoop) -> None:
        for group in self._turns.pop(loop).values():
            self.groups += 1
            self.requests += len(group.waiting)
            if len(group.waiting) == 1:
                _answer_alone(group, 0)
                continue
            try:
                given = [c for c in group.counts if c is not None]  # all or none: one model
                counts = np.concatenate(given) if given else None
                found = scored(group.model, np.concatenate(group.rows), counts, group.explain)
            except Exception:  # each request is scored alone, for its own answer or error
                self.retried += len(group.waiting)
                for i in range(len(group.waiting)):
                    _answer_alone(group, i)
                continue
            _share(group, found)


def _share(group: _Group, found: Scores) -> None:
    """Each waiting request's rows of a group's scores."""
    probabilities, is_failure = found.probabilities, found.is_failure
    explanations, warnings = found.explanations, found.warnings
    start = 0
    for rows, waiting in zip(group.rows, group.waiting, strict=True):
        end = start + len(rows)
        if not waiting.done():  # (a request cancelled meanwhile: its deadline passed)
            mine = None if warnings is None else warnings[start:end]
            waiting.set_result(
                Scores(
                    probabilities[start:end],
                    is_failure[start:end],
                    None if explanations is None else explanations[start:end],
                    None if mine is None or not any(mine) else mine,
                )
            )
        start = end


def _answer_alone(group: _Group, i: int) -> None:
    waiting = group.waiting[i]
    if waiting.done():
        return
    try:
        waiting.set_result(scored(group.model, group.rows[i], group.counts[i], group.explain))
    except Exception as error:  # raised where the request waits
        waiting.set_exception(error)
