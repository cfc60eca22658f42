"""`python -m bench.export`: GET /exports/predictions.csv of many rows through a real uvicorn.

For each database, predictions are seeded in bulk with `persistence.write_records` (as
tests/support.py `seed_predictions` does: one audit row and one block per 10,000 rows), then
`failcast serve` starts on loopback (production settings, one worker) and the whole table is
exported, once or several times. The client reads the chunked body as it comes (stdlib
http.client: an incomplete transfer raises) and counts its lines; meanwhile the server's RSS
(VmRSS of its process) is sampled every 20 ms. A 10,000-row export first warms the server up,
and RSS growth is measured from the RSS right before the big export.

SQLite gets a fresh file in a temp dir; PostgreSQL a fresh database `failcast_bench_<pid>_export`
on the loopback server of --pg-url (an admin URL, as for `python -m bench`), dropped afterwards.

    .venv/bin/python -m bench.export --rows 1000000
    .venv/bin/python -m bench.export --rows 200000 --only sqlite   # a quick look
"""

import argparse
import http.client
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.procs import cpu_seconds, free_port, rss_mb, start_server, stop_server, wait_ready
from bench.seeding import analyze, placeholder_version, stored_request
from bench.stack import DEFAULT_PG_ADMIN, PostgresAdmin, new_stack
from failcast.migrations import upgrade
from persistence import (
    METRIC_COLUMNS,
    RequestRecord,
    create_db_engine,
    write_records,
)

BLOCK = 10_000
WARM_UP_ROWS = 10_000
READ_BYTES = 1 << 20
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _blocks(rows: int, version_id: int, rng: random.Random) -> Iterator[RequestRecord]:
    """Requests of up to BLOCK predictions each, with telemetry-like values."""
    for start in range(0, rows, BLOCK):
        size = min(BLOCK, rows - start)
        metrics = {name: [float(rng.randrange(50)) for _ in range(size)] for name in METRIC_COLUMNS}
        metrics["metric1"] = [float(rng.randrange(250_000_000)) for _ in range(size)]
        yield stored_request(
            model_version_id=version_id,
            threshold=0.5,
            created_at=T0 + timedelta(days=1, seconds=start // BLOCK),
            device_ids=[f"S1F{rng.randrange(10_000):05d}" for _ in range(size)],
            observed_at=[T0 + timedelta(seconds=start + i, microseconds=rng.randrange(10**6))
                         for i in range(size)],
            metrics=metrics,
            probabilities=[rng.random() for _ in range(size)],
            subject="bench",
        )  # fmt: skip


def seed(url: str, rows: int) -> float:
    """Migrate a fresh database and store `rows` predictions; seconds it took."""
    started = time.perf_counter()
    upgrade(url)
    engine = create_db_engine(url)
    try:
        version_id = placeholder_version(engine, "bench-export-1", "bench.export")
        for record in _blocks(rows, version_id, random.Random(7)):
            write_records(engine, [record])
        analyze(engine)
    finally:
        engine.dispose()
    return time.perf_counter() - started


@dataclass
class Transfer:
    """One export as the client saw it, and the server's resources meanwhile."""

    rows: int
    size: int
    seconds: float
    server_cpu: float
    rss_before: float
    rss_peak: float
    rss_after: float

    @property
    def rows_per_second(self) -> float:
        """Rows received per second of wall time, request to last byte."""
        return self.rows / self.seconds


class RssSampler:
    """VmRSS of one process every 20 ms, in a thread, while in its `with` block."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))


def export(port: int, token: str, path: str, pid: int) -> Transfer:
    """GET `path` and read it whole; raises on a non-200 or an incomplete transfer."""
    before, cpu = rss_mb(pid), cpu_seconds(pid)
    started = time.perf_counter()
    size = lines = 0
    with RssSampler(pid) as sampler:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {response.read()[:500]!r}")
        while data := response.read(READ_BYTES):
            size += len(data)
            lines += data.count(b"\n")  # the bench's device ids hold no line breaks
        connection.close()
    seconds = time.perf_counter() - started
    server_cpu = cpu_seconds(pid) - cpu
    return Transfer(lines - 1, size, seconds, server_cpu, before, sampler.peak, rss_mb(pid))


def run(kind: str, url: str, rows: int, repeats: int, workdir: Path) -> list[Transfer]:
    """Seed, serve, warm up, then export every row `repeats` times."""
    print(f"{kind}: seeding {rows:,} predictions...", file=sys.stderr)
    print(f"{kind}: seeded in {seed(url, rows):.1f} s", file=sys.stderr)
    stack = new_stack(kind, workdir, url)
    token = stack.cli("token", "--subject", "bench", "--scope", "predictions:read").strip()
    port = free_port()
    server = start_server(kind, stack.serve_command(port, 1), stack.env, workdir, port)
    try:
        wait_ready(server, "/healthz")
        pid = server.workers()[0]
        warm = export(port, token, "/exports/predictions.csv?createdTo=2026-01-02T00:00:01Z", pid)
        assert warm.rows == WARM_UP_ROWS, warm
        transfers = []
        for _ in range(repeats):
            transfer = export(port, token, "/exports/predictions.csv", pid)
            if transfer.rows != rows:
                raise RuntimeError(f"{transfer.rows:,} rows arrived, {rows:,} expected")
            transfers.append(transfer)
        return transfers
    finally:
        stop_server(server)


def _report(kind: str, transfers: list[Transfer]) -> str:
    lines = []
    for n, t in enumerate(transfers, 1):
        growth = t.rss_peak - t.rss_before
        lines.append(
            f"| {kind} | {n} | {t.rows:,} | {t.size / 1e6:,.0f} MB | {t.seconds:.2f} s | "
            f"**{t.rows_per_second:,.0f}** | {t.server_cpu / t.rows * 1e6:.1f} us | "
            f"{t.rss_before:.0f} MB | {t.rss_peak:.0f} MB | **{growth:+.1f} MB** | "
            f"{t.rss_after:.0f} MB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the export bench and print a Markdown table."""
    p = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__)
    p.add_argument("--rows", type=int, default=1_000_000, help="predictions to export (1,000,000)")
    p.add_argument("--repeats", type=int, default=3, help="exports per database (3)")
    p.add_argument("--only", choices=["sqlite", "postgresql"], help="one database only")
    p.add_argument("--pg-url", default=DEFAULT_PG_ADMIN, help="admin URL of a loopback PostgreSQL")
    args = p.parse_args(argv)
    if args.rows < WARM_UP_ROWS:
        raise SystemExit(f"--rows must be at least {WARM_UP_ROWS:,}")
    header = (
        "| database | run | rows | size | wall | rows/s | server CPU/row | RSS before | "
        "RSS peak | RSS growth | RSS after |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    tables = []
    with tempfile.TemporaryDirectory(prefix="failcast-bench-export-") as tmp:
        workdir = Path(tmp)
        if args.only in (None, "sqlite"):
            url = f"sqlite:///{workdir / f'export-{uuid.uuid4().hex[:8]}.db'}"
            tables.append(_report("SQLite", run("sqlite", url, args.rows, args.repeats, workdir)))
        if args.only in (None, "postgresql"):
            admin = PostgresAdmin(args.pg_url)
            try:
                url = admin.create("export")
                transfers = run("postgresql", url, args.rows, args.repeats, workdir)
                tables.append(_report("PostgreSQL", transfers))
            finally:
                admin.drop_all()
    print("\n".join([header, *tables]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
