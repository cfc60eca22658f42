"""Where a `predict` request's time goes, part by part, without a server or a network.

Each part is timed in a loop (median of 5 repeats, one call at a time) and shown as a ratio to
the baseline measured in the same run: the reference service's per-request work (a one-row
pandas DataFrame and scikit-learn's `predict_proba`). Pairs measured in the same run are also
shown as ratios to each other: `predict` with and without `explanation` selected, and the use
case with the serving version's input profile (input warnings checked) and without one (as
before warnings existed). Run: `.venv/bin/python -m bench.profile_predict` (it trains a model on
synthetic data in a temp dir first); `--only explain --rounds 3` times just those pairs, three
times over; `--only columns` times the same 1,000 rows sent as `predictColumns` and as
`predictBatch`, pair by pair (the body parsed, the plan, the executor, the whole app);
`--only stages` breaks a stored 1,000-row `predictBatch` down stage by stage, on a model trained
on `--data FILE` (history features included) and on PostgreSQL with `--postgres`; `--only
concurrent` sends 32 requests at a time through the whole app, group commits as a server makes
them, and gives the CPU per request of the event loop's thread, of the process's other threads
and of the writer processes, for `predict`, for `predict` with `explanation` selected and for
`{ __typename }` (the edge, the token, the audit row and its commit, no prediction), on `--data
FILE` too.
"""

import argparse
import asyncio
import dataclasses
import functools
import gc
import inspect
import itertools
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from graphql import parse, validate

from auth import TokenVerifier
from bench import payloads
from bench.procs import own_cpu_seconds
from bench.stack import DEFAULT_PG_ADMIN, UNREACHABLE_RATE, PostgresAdmin, prepare_stack
from graph.app import build_runtime, create_app
from graph.runtime import Runtime
from graph.runtime.audit import RequestAudit
from graph.runtime.models import ModelService
from graph.runtime.telemetry import Telemetry, decode_telemetry
from graph.runtime.usecases import Layout, Predicted, check_telemetry, predict
from graph.schema import build_schema
from graph.schema.context import GraphContext
from graph.schema.execution import GraphQLExecutor, OperationRequest
from graph.settings import Settings
from model.profile import InputRanges
from persistence import (
    ModelVersionRepository,
    PredictionBlock,
    RequestRecord,
    new_ids,
    records,
    session_scope,
    write_records,
)

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "profile.md"
BATCH = 1000
SCOPE: dict[str, Any] = {
    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
    "scheme": "http", "path": "/graphql", "raw_path": b"/graphql", "query_string": b"",
    "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
}  # fmt: skip


@dataclass(frozen=True)
class Timing:
    """One part of the path: microseconds per call, and the predictions one call makes."""

    name: str
    micros: float
    rows: int = 1


def time_sync(fn: Callable[[], object], budget_s: float, repeats: int = 5) -> float:
    """Median over `repeats` of the mean time per call (us), each repeat ~`budget_s` long."""
    return time_together([fn], budget_s, repeats)[0]


def time_together(
    fns: Sequence[Callable[[], object]], budget_s: float, repeats: int = 5
) -> list[float]:
    """time_sync of several functions, their repeats taken in turn (A, B, A, B, ...): the
    ratios of parts timed together hold while the machine's load drifts."""

    def calls(fn: Callable[[], object]) -> Callable[[int], Awaitable[float]]:
        async def run(count: int) -> float:
            started = time.perf_counter()
            for _ in range(count):
                made = fn()
                if inspect.isawaitable(made):  # a coroutine (the use case): run to completion
                    await made
            return time.perf_counter() - started

        return run

    return asyncio.run(_together([calls(fn) for fn in fns], budget_s, repeats))


async def time_async_together(
    fns: Sequence[Callable[[], Awaitable[object]]], budget_s: float, repeats: int = 5
) -> list[float]:
    """time_together for coroutines, awaited one after another on the running loop."""

    def calls(fn: Callable[[], Awaitable[object]]) -> Callable[[int], Awaitable[float]]:
        async def run(count: int) -> float:
            started = time.perf_counter()
            for _ in range(count):
                await fn()
            return time.perf_counter() - started

        return run

    return await _together([calls(fn) for fn in fns], budget_s, repeats)


async def _together(
    runs: Sequence[Callable[[int], Awaitable[float]]], budget_s: float, repeats: int
) -> list[float]:
    """Each run(count) times `count` calls of one part: calls per repeat are chosen so that a
    repeat takes ~budget_s, then the repeats of every part are taken in turn."""
    counts = []
    for run in runs:
        elapsed, calls = 0.0, 0
        while elapsed < budget_s / 5:
            elapsed += await run(1)
            calls += 1
        counts.append(max(1, int(calls * budget_s / max(elapsed, 1e-9))))
    samples: list[list[float]] = [[] for _ in runs]
    order = list(zip(runs, counts, samples, strict=True))
    # Forwards, then backwards: what one part leaves behind (a WAL to checkpoint, garbage to
    # collect) falls on the parts before and after it alike.
    for repeat in range(repeats):
        for run, count, taken in order[:: 1 if repeat % 2 == 0 else -1]:
            taken.append(await run(count) / count)
    return [statistics.median(taken) * 1e6 for taken in samples]


def _scope(path: str, token: str | None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"user-agent", b"profile")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {**SCOPE, "path": path, "raw_path": path.encode(), "headers": headers}


async def asgi_call(app: Any, path: str, body: bytes, token: str | None) -> None:
    """Send one POST through an ASGI app in-process; fail unless it answers 200."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    statuses = []

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(int(message["status"]))

    await app(_scope(path, token), receive, send)
    assert statuses == [200], statuses


# (with, without): each pair's ratio is reported; the parts are named in Profile's lists.
PAIRS = [
    ("use case, 1 row, with explanation", "use case, 1 row"),
    ("use case, 1,000 rows, with explanation", "use case, 1,000 rows"),
    ("compiled plan: predict + explanation, prepared context",
     "compiled plan: predict, prepared context"),
    ("compiled plan: predictBatch, 1,000 rows + explanation, prepared context",
     "compiled plan: predictBatch, 1,000 rows, prepared context"),
    ("executor: predict + explanation, prepared context", "executor: predict, prepared context"),
    ("failcast app via ASGI, in-process: predict + explanation",
     "failcast app via ASGI, in-process: predict (auth, GraphQL, own commit)"),
    ("failcast app via ASGI, in-process: predictBatch 1,000 rows + explanation",
     "failcast app via ASGI, in-process: predictBatch 1,000 rows"),
    ("use case, 1 row", "use case, 1 row, no input profile (no warnings: as at 53a2805)"),
    ("use case, 1 row, out of range (warnings written)",
     "use case, 1 row, no input profile (no warnings: as at 53a2805)"),
    ("use case, 1,000 rows", "use case, 1,000 rows, no input profile (as at 53a2805)"),
    ("JSON body parsed (orjson): predictColumns, 1,000 rows",
     "JSON body parsed (orjson): predictBatch, 1,000 rows"),
    ("compiled plan: predictColumns, 1,000 rows, prepared context",
     "compiled plan: predictBatch, 1,000 rows, prepared context"),
    ("executor: predictColumns, 1,000 rows, prepared context",
     "executor: predictBatch, 1,000 rows, prepared context"),
    ("failcast app via ASGI, in-process: predictColumns 1,000 rows",
     "failcast app via ASGI, in-process: predictBatch 1,000 rows"),
    ("predict, 32 at a time through the app: CPU per request",
     "{ __typename }, 32 at a time through the app: CPU per request"),
]  # fmt: skip


class Profile:
    """The parts of the predict path, prepared once and timed one by one."""

    def __init__(self, services: Runtime, token: str, budget_s: float) -> None:
        self.services, self.token, self.budget = services, token, budget_s
        self.executor = GraphQLExecutor(build_schema(), services.settings)
        assert services.models.current is not None, "no model loaded"
        self.predictor = services.models.current.predictor
        self.row = {k: float(v) for k, v in payloads.rows(1, 7)[0].items() if k != "deviceId"}
        if self.predictor.features.uses_history:
            return  # only the stages are timed (stage_parts): the parts below read the counters
        names = self.predictor.feature_names
        self.one = np.array([[self.row[f] for f in names]])
        self.many = np.array([[r[f] for f in names] for r in payloads.rows(BATCH, 8)], dtype=float)
        # The use case's rows: inside the serving version's training range (the common case).
        loaded = services.models.current
        assert loaded.ranges is not None, "the trained version has no input profile"
        low, high = loaded.ranges.low, loaded.ranges.high
        self.inside = dict(zip(names, ((low + high) / 2).tolist(), strict=True))
        self.outside = {**self.inside, names[0]: float(high[0]) * 2}

    def predict(
        self,
        models: ModelService,
        audit: RequestAudit,
        telemetry: Telemetry,
        layout: Layout = Layout.ONE,
        explain: bool = False,
    ) -> Awaitable[Predicted]:
        """The use case (a coroutine: the timers await it, as a request does)."""
        services = self.services
        return predict(
            models, services.histories, services.alerts, audit, telemetry, layout, explain
        )

    def explain_parts(self) -> list[Timing]:
        """The use case with and without explanation, with and without input warnings."""
        models, predict = self.services.models, self.predict
        unprofiled = ModelService(self.services.engine)  # the same model, without its ranges
        assert models.current is not None
        unprofiled.holder.swap(dataclasses.replace(models.current, ranges=None))
        inside, outside = self._telemetry(1, self.inside), self._telemetry(1, self.outside)
        many = self._telemetry(BATCH, self.inside)
        parts: list[tuple[str, Callable[[], object], int]] = [
            ("use case, 1 row, no input profile (no warnings: as at 53a2805)",
             lambda: predict(unprofiled, _audit(), inside), 1),
            ("use case, 1 row", lambda: predict(models, _audit(), inside), 1),
            ("use case, 1 row, out of range (warnings written)",
             lambda: predict(models, _audit(), outside), 1),
            ("use case, 1 row, with explanation",
             lambda: predict(models, _audit(), inside, explain=True), 1),
            ("use case, 1,000 rows, no input profile (as at 53a2805)",
             lambda: predict(unprofiled, _audit(), many, Layout.ROWS), BATCH),
            ("use case, 1,000 rows", lambda: predict(models, _audit(), many, Layout.ROWS), BATCH),
            ("use case, 1,000 rows, with explanation",
             lambda: predict(models, _audit(), many, Layout.ROWS, explain=True), BATCH),
        ]  # fmt: skip
        micros = time_together([fn for _, fn, _ in parts], self.budget)
        return [Timing(name, m, rows) for (name, _, rows), m in zip(parts, micros, strict=True)]

    def sync_parts(self) -> list[Timing]:
        """Everything that runs without an event loop."""
        estimator, features = self.predictor.estimator, list(self.predictor.feature_names)
        row, schema, doc = self.row, self.executor.graphql_schema, payloads.PREDICT_DOCUMENT
        cached_parse = functools.lru_cache(maxsize=16)(parse)
        cached_validate = functools.lru_cache(maxsize=16)(lambda d: validate(schema, d))
        uncached = TokenVerifier(self.services.settings.auth_config(), cache_size=0)
        audit = _audit()
        one_row = self._telemetry(1)
        parts: list[tuple[str, Callable[[], object], int]] = [
            ("BASELINE reference: one-row DataFrame + sklearn predict_proba",
             lambda: estimator.predict_proba(pd.DataFrame([row], columns=features)), 1),
            ("GraphQL parse + validate, uncached", lambda: validate(schema, parse(doc)), 1),
            ("GraphQL parse + validate, cached (lru_cache hit)",
             lambda: cached_validate(cached_parse(doc)), 1),
            ("JWT verify, uncached (PyJWT HS256 + claims)", lambda: uncached.verify(self.token), 1),
            ("JWT verify, cached", lambda: self.services.verifier.verify(self.token), 1),
            ("compiled predictor, 1 row", lambda: self.predictor.predict_proba(self.one), 1),
            ("sklearn predict_proba on numpy, 1 row",
             lambda: self.predictor.reference_proba(self.one), 1),
            ("compiled predictor, 1,000 rows",
             lambda: self.predictor.predict_proba(self.many), BATCH),
            ("sklearn predict_proba on numpy, 1,000 rows",
             lambda: self.predictor.reference_proba(self.many), BATCH),
            ("use case usecases.predict (check, predict, rows), 1 row",
             lambda: self.predict(self.services.models, audit, one_row), 1),
            ("build + commit 1 audit + 1 prediction, own transaction (SQLite)",
             lambda: self._commit(1, 1), 1),
            ("build + commit 32 requests' rows in one transaction, per request (SQLite)",
             lambda: self._commit(32, 1), -32),
            ("build + commit 1 audit + 1,000 predictions (SQLite)",
             lambda: self._commit(1, BATCH), BATCH),
        ]  # fmt: skip
        timings = []
        for name, fn, rows in parts:  # rows < 0: one call serves -rows requests of one row
            micros = time_sync(fn, self.budget)
            audit = _audit()
            timings.append(Timing(name, micros / max(1, -rows), max(1, rows)))
        return timings

    async def _commit(self, requests: int, rows: int) -> None:
        records = []
        for _ in range(requests):
            audit = _audit()
            layout = Layout.ROWS if rows > 1 else Layout.ONE
            await self.predict(self.services.models, audit, self._telemetry(rows), layout)
            records.append(audit.record(200))
        write_records(self.services.engine, records)

    def _telemetry(self, rows: int, row: dict[str, float] | None = None) -> Telemetry:
        return decode_telemetry([{**(row or self.row), "deviceId": "B0000001"}] * rows)

    async def _run(self, document: str, variables: dict[str, Any], plans: bool) -> None:
        principal = self.services.verifier.verify(self.token)
        context = GraphContext(self.services, _audit(), principal, self.executor.cursors)
        self.executor.plans_enabled = plans
        executed = await self.executor.execute(OperationRequest(document, variables), context, True)
        assert not executed.result.errors, executed.result.errors

    async def async_parts(self, reference_app: Any | None) -> list[Timing]:
        """schema.execute with a prepared context, and whole apps through ASGI in-process;
        without a reference app, only the parts the explanation pairs compare."""
        one = {"input": payloads.rows(1, 2)[0]}
        many = {"inputs": payloads.rows(BATCH, 3)}
        explained, explained_batch = (
            payloads.EXPLAINED_PREDICT_DOCUMENT,
            payloads.EXPLAINED_BATCH_DOCUMENT,
        )
        parts: list[tuple[str, Callable[[], Awaitable[object]], int]] = [
            ("executor: predict, prepared context",
             lambda: self._run(payloads.PREDICT_DOCUMENT, one, plans=False), 1),
            ("executor: predict + explanation, prepared context",
             lambda: self._run(explained, one, plans=False), 1),
            ("executor: predictBatch, 1,000 rows, prepared context",
             lambda: self._run(payloads.BATCH_DOCUMENT, many, plans=False), BATCH),
            ("compiled plan: predict, prepared context",
             lambda: self._run(payloads.PREDICT_DOCUMENT, one, plans=True), 1),
            ("compiled plan: predict + explanation, prepared context",
             lambda: self._run(explained, one, plans=True), 1),
            ("compiled plan: predictBatch, 1,000 rows, prepared context",
             lambda: self._run(payloads.BATCH_DOCUMENT, many, plans=True), BATCH),
            ("compiled plan: predictBatch, 1,000 rows + explanation, prepared context",
             lambda: self._run(explained_batch, many, plans=True), BATCH),
        ]  # fmt: skip
        if reference_app is not None:
            rest = payloads.rest_bodies(1)[0].encode()
            parts.append(
                ("reference FastAPI app via ASGI, in-process",
                 lambda: asgi_call(reference_app, "/predict", rest, None), 1)
            )  # fmt: skip
        else:
            parts = [p for p in parts if "executor: predictBatch" not in p[0]]
        micros = await time_async_together([fn for _, fn, _ in parts], self.budget)
        timings = [Timing(name, m, rows) for (name, _, rows), m in zip(parts, micros, strict=True)]
        app = create_app(self.services.settings)
        async with app.router.lifespan_context(app):
            apps: list[tuple[str, bytes, int]] = [
                ("failcast app via ASGI, in-process: predict (auth, GraphQL, own commit)",
                 payloads.predict_bodies(1)[0].encode(), 1),
                ("failcast app via ASGI, in-process: predict + explanation",
                 payloads.predict_bodies(1, explained)[0].encode(), 1),
                ("failcast app via ASGI, in-process: predictBatch 1,000 rows",
                 payloads.batch_bodies(1, BATCH)[0].encode(), BATCH),
                ("failcast app via ASGI, in-process: predictBatch 1,000 rows + explanation",
                 payloads.batch_bodies(1, BATCH, explained_batch)[0].encode(), BATCH),
            ]  # fmt: skip
            for pair in (apps[:2], apps[2:]):  # single rows together, batches together
                calls = [
                    functools.partial(asgi_call, app, "/graphql", payload, self.token)
                    for _, payload, _ in pair
                ]
                micros = await time_async_together(calls, self.budget)
                timings += [
                    Timing(name, m, rows) for (name, _, rows), m in zip(pair, micros, strict=True)
                ]
        return timings

    async def columns_parts(self) -> list[Timing]:
        """The same 1,000 rows as predictColumns and as predictBatch, each pair timed together:
        the body parsed, the operation with a prepared context (plan and executor), and the
        whole app through ASGI in-process (auth, GraphQL, commit)."""
        batch_body = payloads.batch_bodies(1, BATCH)[0].encode()
        columns_body = payloads.columns_bodies(1, BATCH)[0].encode()
        rows = orjson.loads(batch_body)["variables"]
        columns = orjson.loads(columns_body)["variables"]
        batch, by_column = payloads.BATCH_DOCUMENT, payloads.COLUMNS_DOCUMENT
        pairs: list[list[tuple[str, Callable[[], Awaitable[object]], int]]] = [
            [
                ("JSON body parsed (orjson): predictColumns, 1,000 rows",
                 _awaitable(orjson.loads, columns_body), BATCH),
                ("JSON body parsed (orjson): predictBatch, 1,000 rows",
                 _awaitable(orjson.loads, batch_body), BATCH),
            ],
            [
                ("compiled plan: predictColumns, 1,000 rows, prepared context",
                 lambda: self._run(by_column, columns, plans=True), BATCH),
                ("compiled plan: predictBatch, 1,000 rows, prepared context",
                 lambda: self._run(batch, rows, plans=True), BATCH),
            ],
            [
                ("executor: predictColumns, 1,000 rows, prepared context",
                 lambda: self._run(by_column, columns, plans=False), BATCH),
                ("executor: predictBatch, 1,000 rows, prepared context",
                 lambda: self._run(batch, rows, plans=False), BATCH),
            ],
        ]  # fmt: skip
        timings = []
        for pair in pairs:
            micros = await time_async_together([fn for _, fn, _ in pair], self.budget)
            timings += [Timing(n, m, r) for (n, _, r), m in zip(pair, micros, strict=True)]
        app = create_app(self.services.settings)
        async with app.router.lifespan_context(app):
            apps = [
                ("failcast app via ASGI, in-process: predictColumns 1,000 rows", columns_body),
                ("failcast app via ASGI, in-process: predictBatch 1,000 rows", batch_body),
            ]
            calls = [
                functools.partial(asgi_call, app, "/graphql", body, self.token) for _, body in apps
            ]
            micros = await time_async_together(calls, self.budget)
            timings += [Timing(name, m, BATCH) for (name, _), m in zip(apps, micros, strict=True)]
        return timings

    async def concurrent_parts(self, requests: int = 4_000, at_once: int = 32) -> list[Timing]:
        """CPU per request, `at_once` requests at a time through the whole app in-process (no
        socket; concurrent requests share group commits as on a server): `predict` beside
        `{ __typename }`, each split between the event loop's thread and the other threads."""
        typename = orjson.dumps({"query": "query T { __typename }"})
        kinds = [
            ("{ __typename }", [typename]),
            ("predict", [b.encode() for b in payloads.predict_bodies(64)]),
            (
                "predict + explanation",
                [
                    b.encode()
                    for b in payloads.predict_bodies(64, payloads.EXPLAINED_PREDICT_DOCUMENT)
                ],
            ),
        ]
        app = create_app(self.services.settings)
        timings = []
        async with app.router.lifespan_context(app):
            for name, bodies in kinds:
                await self._at_once(app, bodies, requests // 4, at_once)  # warm: devices held
                cpu, loop, writers = await self._at_once(app, bodies, requests, at_once)
                head = f"{name}, {at_once} at a time through the app: CPU per request"
                timings += [
                    Timing(head, cpu + writers),  # the writer processes' included
                    Timing(f"{head}, event loop's thread", loop),
                    Timing(f"{head}, the process's other threads", cpu - loop),
                    Timing(f"{head}, the group commits' writer processes", writers),
                ]
        return timings

    async def _at_once(
        self, app: Any, bodies: list[bytes], requests: int, at_once: int
    ) -> tuple[float, float, float]:
        """(process CPU, event loop thread CPU, writer processes' CPU) in us per request of
        `requests` requests sent `at_once` at a time."""

        async def sender(first: int) -> None:
            for i in range(first, requests, at_once):
                await asgi_call(app, "/graphql", bodies[i % len(bodies)], self.token)

        processes = app.state.runtime.writer_processes
        pids = processes.pids() if processes is not None else []
        writers = sum(map(own_cpu_seconds, pids))
        cpu, loop = time.process_time(), time.thread_time()
        await asyncio.gather(*(sender(k) for k in range(at_once)))
        cpu, loop = time.process_time() - cpu, time.thread_time() - loop
        writers = sum(map(own_cpu_seconds, pids)) - writers
        return cpu * 1e6 / requests, loop * 1e6 / requests, writers * 1e6 / requests

    async def stage_parts(self) -> list[Timing]:
        """Where the time of a stored 1,000-row `predictBatch` goes, stage by stage: each stage
        is the real function the path calls, on the inputs of a real request (the bench's
        devices, whose histories are held), timed in turn; the whole app's time, less the
        stages', is the rest (HTTP edge, auth, GraphQL plan, audit row, answer)."""
        services, engine = self.services, self.services.engine
        models, histories = services.models, services.histories
        loaded = models.current
        assert loaded is not None
        predictor, features = loaded.predictor, loaded.predictor.features
        bodies = [b.encode() for b in payloads.batch_bodies(4, BATCH)]
        app = create_app(services.settings)
        async with app.router.lifespan_context(app):
            for body in bodies * 3:  # the devices' histories stored and held, as under load
                await asgi_call(app, "/graphql", body, self.token)
            variables = orjson.loads(bodies[0])["variables"]
            telemetry = decode_telemetry(variables["inputs"])
            matrix, devices = telemetry.matrix, telemetry.device_ids
            now = [datetime.now(UTC)] * len(telemetry)
            windows = await histories.windows(features, matrix, devices, now, uuid.uuid4())
            inputs = features.compute(windows[0], windows[1])
            names = predictor.feature_names  # a version without a profile: a range of no width
            limits = loaded.ranges or InputRanges(names, inputs[0], inputs[0])
            made = await self.predict(models, _audit(), telemetry, Layout.ROWS)
            block = made.block

            def record() -> RequestRecord:
                """The block again as another request's: new ids and time, devices of its own
                (the bench's devices keep one observation per time, as under load)."""
                audit = _audit()
                batch = dataclasses.replace(
                    block,
                    audit_event_id=audit.id,
                    ids=new_ids(BATCH),
                    device_ids=[f"W{d}" for d in block.device_ids],
                    observed_at=[datetime.now(UTC)] * BATCH,
                )
                audit.add_predictions(batch, loaded.version)
                return audit.record(200)

            encode = _row_encoder(engine, block)
            fresh = itertools.count()
            parts: list[tuple[str, Callable[[], Awaitable[object]], int]] = [
                ("stage: JSON body parsed (orjson)", _awaitable(orjson.loads, bodies[0]), BATCH),
                ("stage: rows decoded (decode_telemetry)",
                 _awaitable(decode_telemetry, variables["inputs"]), BATCH),
                ("stage: values checked (check_telemetry)",
                 _awaitable(check_telemetry, telemetry, Layout.ROWS), BATCH),
                ("stage: history windows (DeviceHistories.windows, devices held)",
                 lambda: histories.windows(features, matrix, devices, [datetime.now(UTC)] * BATCH,
                                           uuid.uuid4()), BATCH),
                ("stage: history features (compute)",
                 _awaitable(features.compute, *windows[:2]), BATCH),
                ("stage: model (compiled predict_proba)",
                 _awaitable(predictor.predict_proba, inputs), BATCH),
                ("stage: range warnings", _awaitable(limits.warnings, inputs), BATCH),
                ("stage: prediction ids (new_ids)", _awaitable(new_ids, BATCH), BATCH),
                ("stage: use case (usecases.predict, all of the above from check on)",
                 lambda: self.predict(models, _audit(), telemetry, Layout.ROWS), BATCH),
                ("stage: rows encoded for the database", _awaitable(encode), BATCH),
                ("stage: write + commit (write_records: 1 audit + 1,000 predictions)",
                 lambda: asyncio.to_thread(write_records, engine, [record()]), BATCH),
                ("stage: histories updated after the commit (committed)",
                 _awaitable(histories.committed, block), BATCH),
                ("whole app via ASGI, in-process: predictBatch 1,000 rows",
                 lambda: asgi_call(app, "/graphql", bodies[next(fresh) % 4], self.token), BATCH),
            ]  # fmt: skip
            micros = await time_async_together([fn for _, fn, _ in parts], self.budget)
        return [Timing(name, m, rows) for (name, _, rows), m in zip(parts, micros, strict=True)]


def _row_encoder(engine: Any, block: PredictionBlock) -> Callable[[], object]:
    """What write_records does in Python to a block before the database sees it: binary COPY
    rows on PostgreSQL, bound parameter tuples on SQLite."""
    if engine.dialect.name == "postgresql":
        return lambda: records._BINARY.encode(len(block), block.column)
    return lambda: records._bound_tuples(engine.dialect, [block])


def _awaitable(fn: Callable[..., object], *args: Any) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        return fn(*args)

    return call


def _audit() -> RequestAudit:
    return RequestAudit.begin("POST", "/graphql", "127.0.0.1", "profile")


def render(rounds: list[list[Timing]]) -> str:
    """The profile as a Markdown table (each part's median over the rounds, relative to the
    baseline when measured), then each pair of PAIRS: its ratio's median [min-max] over the
    rounds, each round's ratio taken from that round's own two timings."""
    parts = {t.name: t.rows for t in rounds[0]}
    micros = {name: [r[name] for r in _by_name(rounds)] for name in parts}
    median = {name: statistics.median(values) for name, values in micros.items()}
    base = next((m for name, m in median.items() if name.startswith("BASELINE")), None)
    lines = [
        "| part | us per call | x baseline | us per prediction |",
        "|---|---|---|---|",
    ]
    for name, m in median.items():
        ratio = f"{m / base:.3f}" if base else "-"
        lines.append(f"| {name} | {m:,.1f} | {ratio} | {m / parts[name]:,.1f} |")
    pairs = [(a, b) for a, b in PAIRS if a in parts and b in parts]
    if pairs:
        lines += ["", f"| this | over that | ratio ({len(rounds)} rounds) |", "|---|---|---|"]
        for a, b in pairs:
            ratios = [x / y for x, y in zip(micros[a], micros[b], strict=True)]
            spread = f" [{min(ratios):.3f}-{max(ratios):.3f}]" if len(ratios) > 1 else ""
            lines.append(f"| {a} | {b} | {statistics.median(ratios):.3f}{spread} |")
    return "\n".join(lines)


def _by_name(rounds: list[list[Timing]]) -> list[dict[str, float]]:
    return [{t.name: t.micros for t in timings} for timings in rounds]


def _reference_app(services: Runtime, tmp: Path) -> Any:
    """The reference FastAPI app, serving the same artifact (handed over as the bench does)."""
    from bench import reference_service  # FastAPI: the bench extra, imported when timed only

    path = tmp / "model.joblib"
    with session_scope(services.engine) as session:
        row = ModelVersionRepository(session).active(with_artifact=True)
        assert row is not None
        path.write_bytes(row.artifact)
        os.environ["BENCH_ARTIFACT_SHA256"] = row.artifact_sha256
    os.environ["BENCH_ARTIFACT_PATH"] = str(path)
    return reference_service.create_app()


def main() -> int:
    """Train a model in a temp dir, then time each part of the predict path."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile_predict", description=__doc__)
    parser.add_argument("--budget", type=float, default=0.3, help="seconds per repeat (0.3)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--only",
        choices=["explain", "columns", "stages", "concurrent"],
        help="explain: only the pairs with/without explanation; columns: only predictColumns "
        "against predictBatch; stages: where a stored 1,000-row predictBatch spends its time; "
        "concurrent: CPU per request, 32 at a time through the app (loop thread and others)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="times every part is timed (1)")
    parser.add_argument(
        "--data", type=Path, help="train on this dataset file (default: synthetic data)"
    )
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=DEFAULT_PG_ADMIN,
        metavar="ADMIN_URL",
        help="store in a throw-away database of this loopback PostgreSQL server (default "
        f"{DEFAULT_PG_ADMIN}) instead of a SQLite file",
    )
    args = parser.parse_args()
    if args.data and args.only not in ("stages", "concurrent"):
        parser.error(
            "--data: the model trained on it reads history features; "
            "use --only stages or --only concurrent"
        )
    warnings.filterwarnings("ignore", message="X has feature names")
    admin = PostgresAdmin(args.postgres) if args.postgres else None
    with tempfile.TemporaryDirectory(prefix="failcast-profile-") as tmp:
        url = admin.create("profile") if admin else f"sqlite:///{Path(tmp) / 'failcast.db'}"
        print("preparing: db upgrade, train --activate, token", file=sys.stderr)
        try:
            rounds = _profile(args, Path(tmp), url)
        finally:
            if admin:
                admin.drop_all()
    report = render(rounds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report + "\n", encoding="utf-8")
    print(report)
    return 0


def profile_settings(url: str, secret: str) -> Settings:
    """A server's settings for the profile: production mode, no rate limit in the way."""
    return Settings(
        database_url=url,
        jwt_secret=secret,
        env="production",
        rate_limits={"predict": (UNREACHABLE_RATE, UNREACHABLE_RATE)},
    )


def _profile(args: argparse.Namespace, tmp: Path, url: str) -> list[list[Timing]]:
    """Prepare a served model on `url`, then time the parts `args` ask for, round by round."""
    stack = prepare_stack("profile", tmp, url, args.data)
    services = build_runtime(profile_settings(url, stack.env["FAILCAST_JWT_SECRET"]))
    services.models.refresh_sync()
    profile = Profile(services, stack.token, args.budget)
    reference = _reference_app(services, tmp) if args.only is None else None
    # As a server does once started (graph.app's lifespan): what lives as long as the
    # process is moved out of the collector's reach, so collections stay short.
    gc.collect()
    gc.freeze()
    rounds = []
    for _ in range(args.rounds):
        if args.only == "columns":
            rounds.append(asyncio.run(profile.columns_parts()))
            continue
        if args.only == "stages":
            rounds.append(asyncio.run(profile.stage_parts()))
            continue
        if args.only == "concurrent":
            rounds.append(asyncio.run(profile.concurrent_parts()))
            continue
        timings = profile.explain_parts()
        if args.only is None:
            timings = profile.sync_parts() + timings
        timings += asyncio.run(profile.async_parts(reference))
        rounds.append(timings)
    services.engine.dispose()
    return rounds


if __name__ == "__main__":
    sys.exit(main())
