"""Where a `predict` request's time goes, part by part, without a server or a network.

Each part is timed in a loop (median of 5 repeats, one call at a time) and shown as a ratio to
the baseline measured in the same run: the reference service's per-request work (a one-row
pandas DataFrame and scikit-learn's `predict_proba`). Run: `.venv/bin/python -m
bench.profile_predict` (it trains a model on synthetic data in a temp dir first).
"""

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from graphql import parse, validate

from auth import TokenVerifier
from bench import payloads, reference_service
from bench.stack import UNREACHABLE_RATE, prepare_stack
from graph.app import build_runtime, create_app
from graph.runtime import Runtime
from graph.runtime.audit import RequestAudit
from graph.runtime.telemetry import Telemetry, decode_telemetry
from graph.runtime.usecases import predict
from graph.schema import build_schema
from graph.schema.context import GraphContext
from graph.schema.execution import GraphQLExecutor, OperationRequest
from graph.settings import Settings
from persistence import ModelVersionRepository, session_scope, write_records

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


def _calls_per_repeat(elapsed: Callable[[], float], budget_s: float, calls: int) -> int:
    return max(1, int(calls * budget_s / max(elapsed(), 1e-9)))


def time_sync(fn: Callable[[], object], budget_s: float, repeats: int = 5) -> float:
    """Median over `repeats` of the mean time per call (us), each repeat ~`budget_s` long."""
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < budget_s / 5:
        fn()
        calls += 1
    count = _calls_per_repeat(lambda: time.perf_counter() - started, budget_s, calls)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(count):
            fn()
        samples.append((time.perf_counter() - started) / count)
    return statistics.median(samples) * 1e6


async def time_async(fn: Callable[[], Awaitable[object]], budget_s: float) -> float:
    """time_sync for coroutines, awaited one after another on the running loop."""
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < budget_s / 5:
        await fn()
        calls += 1
    count = _calls_per_repeat(lambda: time.perf_counter() - started, budget_s, calls)
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(count):
            await fn()
        samples.append((time.perf_counter() - started) / count)
    return statistics.median(samples) * 1e6


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


class Profile:
    """The parts of the predict path, prepared once and timed one by one."""

    def __init__(self, services: Runtime, token: str, budget_s: float) -> None:
        self.services, self.token, self.budget = services, token, budget_s
        self.executor = GraphQLExecutor(build_schema(), services.settings)
        assert services.models.current is not None, "no model loaded"
        self.predictor = services.models.current.predictor
        names = self.predictor.feature_names
        self.row = {k: float(v) for k, v in payloads.rows(1, 7)[0].items() if k != "deviceId"}
        self.one = np.array([[self.row[f] for f in names]])
        self.many = np.array([[r[f] for f in names] for r in payloads.rows(BATCH, 8)], dtype=float)

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
             lambda: predict(self.services.models, self.services.alerts, audit, one_row), 1),
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

    def _commit(self, requests: int, rows: int) -> None:
        records = []
        for _ in range(requests):
            audit = _audit()
            predict(
                self.services.models, self.services.alerts, audit, self._telemetry(rows), rows > 1
            )
            records.append(audit.record(200))
        write_records(self.services.engine, records)

    def _telemetry(self, rows: int) -> Telemetry:
        return decode_telemetry([{**self.row, "deviceId": "B0000001"}] * rows)

    async def _run(self, document: str, variables: dict[str, Any], plans: bool) -> None:
        principal = self.services.verifier.verify(self.token)
        context = GraphContext(self.services, _audit(), principal, self.executor.cursors)
        self.executor.plans_enabled = plans
        executed = await self.executor.execute(OperationRequest(document, variables), context, True)
        assert not executed.result.errors, executed.result.errors

    async def async_parts(self, reference_app: Any) -> list[Timing]:
        """schema.execute with a prepared context, and whole apps through ASGI in-process."""
        one = {"input": payloads.rows(1, 2)[0]}
        many = {"inputs": payloads.rows(BATCH, 3)}
        rest = payloads.rest_bodies(1)[0].encode()
        body, batch_body = payloads.predict_bodies(1)[0], payloads.batch_bodies(1, BATCH)[0]
        parts: list[tuple[str, Callable[[], Awaitable[object]], int]] = [
            ("executor: predict, prepared context",
             lambda: self._run(payloads.PREDICT_DOCUMENT, one, plans=False), 1),
            ("executor: predictBatch, 1,000 rows, prepared context",
             lambda: self._run(payloads.BATCH_DOCUMENT, many, plans=False), BATCH),
            ("compiled plan: predict, prepared context",
             lambda: self._run(payloads.PREDICT_DOCUMENT, one, plans=True), 1),
            ("compiled plan: predictBatch, 1,000 rows, prepared context",
             lambda: self._run(payloads.BATCH_DOCUMENT, many, plans=True), BATCH),
            ("reference FastAPI app via ASGI, in-process",
             lambda: asgi_call(reference_app, "/predict", rest, None), 1),
        ]  # fmt: skip
        timings = [
            Timing(name, await time_async(fn, self.budget), rows) for name, fn, rows in parts
        ]
        app = create_app(self.services.settings)
        async with app.router.lifespan_context(app):
            apps: list[tuple[str, bytes, int]] = [
                ("failcast app via ASGI, in-process: predict (auth, GraphQL, own commit)",
                 body.encode(), 1),
                ("failcast app via ASGI, in-process: predictBatch 1,000 rows",
                 batch_body.encode(), BATCH),
            ]  # fmt: skip
            for name, payload, rows in apps:
                call = functools.partial(asgi_call, app, "/graphql", payload, self.token)
                timings.append(Timing(name, await time_async(call, self.budget), rows))
        return timings


def _audit() -> RequestAudit:
    return RequestAudit.begin("POST", "/graphql", "127.0.0.1", "profile")


def render(timings: list[Timing]) -> str:
    """The profile as a Markdown table, each part relative to the baseline."""
    base = next(t.micros for t in timings if t.name.startswith("BASELINE"))
    lines = [
        "| part | us per call | x baseline | us per prediction |",
        "|---|---|---|---|",
    ]
    for t in timings:
        lines.append(
            f"| {t.name} | {t.micros:,.1f} | {t.micros / base:.3f} | {t.micros / t.rows:,.1f} |"
        )
    return "\n".join(lines)


def _reference_app(services: Runtime, tmp: Path) -> Any:
    """The reference FastAPI app, serving the same artifact (handed over as the bench does)."""
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
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="X has feature names")
    with tempfile.TemporaryDirectory(prefix="failcast-profile-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'failcast.db'}"
        print("preparing: db upgrade, train --activate, token", file=sys.stderr)
        stack = prepare_stack("profile", Path(tmp), url, None)
        secret = stack.env["FAILCAST_JWT_SECRET"]
        settings = Settings(
            database_url=url,
            jwt_secret=secret,
            env="production",
            rate_limits={"predict": (UNREACHABLE_RATE, UNREACHABLE_RATE)},
        )
        services = build_runtime(settings)
        services.models.refresh_sync()
        profile = Profile(services, stack.token, args.budget)
        timings = profile.sync_parts()
        timings += asyncio.run(profile.async_parts(_reference_app(services, Path(tmp))))
        services.engine.dispose()
    report = render(timings)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report + "\n", encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
