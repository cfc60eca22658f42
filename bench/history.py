"""History at scale: 1,000,000 predictions over 1,000 devices and 90 days, queried as analysts do.

`python -m bench.history` seeds each database in bulk (the rows requests would leave: audit rows
and prediction blocks, two model versions, realistic probabilities), then times the analysts'
questions in-process (the ASGI app, no network) and through HTTP (a real `failcast serve` on
loopback): median and p99 over repeated runs, against the issue's targets (median < 50 ms,
p99 < 200 ms; `totalCount` of 1,000,000 rows < 200 ms on PostgreSQL). Results go to
bench/results/history.md.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa
from starlette.testclient import TestClient

from bench.procs import free_port, start_server, stop_server, wait_ready
from bench.seeding import analyze, stored_request
from bench.stack import DEFAULT_PG_ADMIN, FailcastStack, PostgresAdmin, prepare_stack
from graph.app import create_app
from graph.settings import Settings
from model import DEVICE_FEATURES
from persistence import (
    ModelVersion,
    ModelVersionRepository,
    RequestRecord,
    create_db_engine,
    session_scope,
    write_records,
)

OUTPUT = Path(__file__).resolve().parent / "results" / "history.md"
END = datetime(2026, 11, 1, tzinfo=UTC)
BLOCK = 10_000


@dataclass(frozen=True)
class Shape:
    """How much history to seed."""

    rows: int = 1_000_000
    devices: int = 1_000
    days: int = 90


def seed(database_url: str, shape: Shape, seed_value: int = 0) -> None:
    """Store `shape.rows` predictions in bulk: two model versions, one before and one after."""
    engine = create_db_engine(database_url)
    try:
        first, second = _versions(engine)
        rng = np.random.default_rng(seed_value)
        start = END - timedelta(days=shape.days)
        for done in range(0, shape.rows, BLOCK):
            count = min(BLOCK, shape.rows - done)
            write_records(engine, [_record(rng, start, shape, count, done, first, second)])
        analyze(engine)
    finally:
        engine.dispose()


def _versions(engine: sa.Engine) -> tuple[ModelVersion, ModelVersion]:
    """The trained version, and a copy registered under another name (history has two)."""
    with session_scope(engine) as session:
        repo = ModelVersionRepository(session)
        active = repo.active(with_artifact=True)
        assert active is not None
        data = {
            c: getattr(active, c) for c in ModelVersion.model_fields if c not in ("id", "version")
        }
        older = repo.add(ModelVersion(**{**data, "version": "bench-older", "is_active": False}))
        session.expunge_all()
        return older, active


def _record(
    rng: np.random.Generator,
    start: datetime,
    shape: Shape,
    count: int,
    done: int,
    first: ModelVersion,
    second: ModelVersion,
) -> RequestRecord:
    seconds = np.sort(rng.uniform(0, shape.days * 86_400, count))
    observed = [start + timedelta(seconds=float(s)) for s in seconds]
    version = first if done < shape.rows // 2 else second
    probability = np.clip(rng.beta(0.4, 6.0, count), 0.0, 1.0)
    return stored_request(
        model_version_id=int(version.id or 0),
        threshold=version.threshold,
        created_at=observed[-1] + timedelta(minutes=5),
        device_ids=[f"D{d:04d}" for d in rng.integers(0, shape.devices, count)],
        observed_at=observed,
        metrics={m: rng.exponential(50.0, count).round(1).tolist() for m in DEVICE_FEATURES},
        probabilities=probability.tolist(),
        subject=f"station-{done // BLOCK % 7}",
    )


QUERIES: dict[str, tuple[str, dict[str, Any]]] = {
    "page of 50 by time (7-day window)": (
        """query Q($from: DateTime, $to: DateTime) { predictions(first: 50,
          filter: {observedFrom: $from, observedTo: $to}, orderBy: {field: OBSERVED_AT}) {
          nodes { id deviceId observedAt failureProbability label } } }""",
        {"from": f"{END - timedelta(days=30):%Y-%m-%dT%H:%M:%S%z}",
         "to": f"{END - timedelta(days=23):%Y-%m-%dT%H:%M:%S%z}"},
    ),
    "page of 50 by probability": (
        """{ predictions(first: 50, filter: {minProbability: 0.2},
          orderBy: {field: FAILURE_PROBABILITY}) { nodes { id deviceId failureProbability } } }""",
        {},
    ),
    "devicesAtRisk(first: 50)": (
        "{ devicesAtRisk(first: 50) { rank deviceId latestPrediction { failureProbability } } }",
        {},
    ),
    "one device's 90-day timeline": (
        """query Q($from: DateTime) { device(id: "D0007") { timeline(first: 500, from: $from) {
          nodes { observedAt failureProbability } } } }""",
        {"from": (END - timedelta(days=90)).isoformat()},
    ),
    "30-day daily predictionStats": (
        """query Q($from: DateTime) { predictionStats(bucket: DAY, filter: {observedFrom: $from}) {
          bucketStart modelVersion count predictedFailures failureRate meanProbability
          p95Probability } }""",
        {"from": (END - timedelta(days=30)).isoformat()},
    ),
    "totalCount of every prediction": ("{ predictions(first: 1) { totalCount } }", {}),
}  # fmt: skip


@dataclass(frozen=True)
class Timing:
    """One question's timings on one database, through one path."""

    database: str
    path: str
    question: str
    median_ms: float
    p99_ms: float
    error: str | None = None


def _time(call: Callable[[], dict[str, Any]], repeats: int) -> tuple[float, float, str | None]:
    for _ in range(3):
        body = call()
    if body.get("errors"):
        return 0.0, 0.0, str(body["errors"][0]["message"])[:120]
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return (
        statistics.median(samples),
        samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        None,
    )


def measure(stack: FailcastStack, token: str, repeats: int) -> list[Timing]:
    """Every question in-process and through HTTP."""
    found: list[Timing] = []
    headers = {"authorization": f"Bearer {token}"}
    settings = Settings(database_url=stack.database_url, env="production",
                        jwt_secret=stack.env["FAILCAST_JWT_SECRET"],
                        rate_limits=json.loads(stack.env["FAILCAST_RATE_LIMITS"]))  # fmt: skip
    with TestClient(create_app(settings)) as client:
        for question, (query, variables) in QUERIES.items():
            post = lambda q=query, v=variables: client.post(  # noqa: E731
                "/graphql", json={"query": q, "variables": v}, headers=headers
            ).json()
            found.append(Timing(stack.name, "in-process", question, *_time(post, repeats)))
    found += _through_http(stack, headers, repeats)
    return found


def _through_http(stack: FailcastStack, headers: dict[str, str], repeats: int) -> list[Timing]:
    port = free_port()
    server = start_server(stack.name, stack.serve_command(port, 1), stack.env, stack.workdir, port)
    try:
        wait_ready(server, "/readyz")
        found = []
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            for question, (query, variables) in QUERIES.items():
                post = lambda q=query, v=variables: client.post(  # noqa: E731
                    "/graphql", json={"query": q, "variables": v}, headers=headers
                ).json()
                found.append(Timing(stack.name, "HTTP", question, *_time(post, repeats)))
        return found
    finally:
        stop_server(server)


def report(timings: list[Timing], seeding: dict[str, float], shape: Shape) -> str:
    """The Markdown table of every timing, with the targets' verdicts."""
    lines = [
        "# failcast history at scale",
        "",
        f"- {shape.rows:,} predictions, {shape.devices:,} devices, {shape.days} days; "
        f"seeded in bulk: " + ", ".join(f"{k} {v:.0f} s" for k, v in seeding.items()),
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores",
        "- command: `.venv/bin/python -m bench.history`; repeats per question after 3 warm-ups",
        "",
        "| database | path | question | median ms | p99 ms | target (median < 50, p99 < 200) |",
        "|---|---|---|---|---|---|",
    ]
    for t in timings:
        if t.error:
            lines.append(f"| {t.database} | {t.path} | {t.question} | - | - | error: {t.error} |")
            continue
        met = "met" if t.median_ms < 50 and t.p99_ms < 200 else "**missed**"
        if t.question.startswith("totalCount"):
            met = (
                ("met" if t.p99_ms < 200 else "**missed**")
                if t.database == "postgres"
                else "reported"
            )
        cells = [t.database, t.path, t.question, f"{t.median_ms:.1f}", f"{t.p99_ms:.1f}", met]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Seed each database, time the questions, write the report."""
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--only", default="sqlite,postgres")
    parser.add_argument("--pg-url", default=DEFAULT_PG_ADMIN)
    args = parser.parse_args()
    shape = Shape(args.rows, args.devices, args.days)
    timings: list[Timing] = []
    seeding: dict[str, float] = {}
    admin = PostgresAdmin(args.pg_url)
    with tempfile.TemporaryDirectory(prefix="failcast-history-") as tmp:
        for database in args.only.split(","):
            url = (f"sqlite:///{Path(tmp) / 'history.db'}" if database == "sqlite"
                   else admin.create("history"))  # fmt: skip
            print(f"{database}: training a model, seeding {shape.rows:,} rows", file=sys.stderr)
            stack = prepare_stack(database, Path(tmp), url, None)
            token = stack.cli("token", "--subject", "analyst", "--scope", "predictions:read",
                              "--ttl", "2h").strip()  # fmt: skip
            started = time.monotonic()
            seed(url, shape)
            seeding[database] = time.monotonic() - started
            print(f"{database}: seeded in {seeding[database]:.0f} s; timing", file=sys.stderr)
            timings += measure(stack, token, args.repeats)
        admin.drop_all()
    text = report(timings, seeding, shape)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    random.seed(0)
    sys.exit(main())
