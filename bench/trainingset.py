"""`python -m bench.trainingset`: `failcast train --from-database`'s read of a big database.

For each database, `--rows` predictions are seeded in bulk (`persistence.write_records`, as
the server stores them: one audit row and one block per 10,000 rows) for `--devices` devices,
one per device and day, plus a second prediction of every 20th device-day (observed later the
same day: the one kept); then one outcome per device-day, as `failcast outcomes import` of the
public file records them, 0.1% of them failed. Then a fresh process reads the training set
(`training.database.load_database_dataset`: the streamed query, the arrays, the sort and the
digest) `--repeats` times; the wall time of each read and the process's peak RSS are printed.

SQLite gets a fresh file in a temp dir; PostgreSQL a fresh database `failcast_bench_<pid>_train`
on the loopback server of --pg-url (an admin URL, as for `python -m bench`), dropped afterwards.

    .venv/bin/python -m bench.trainingset --rows 1000000
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench.seeding import analyze, placeholder_version, stored_request
from bench.stack import DEFAULT_PG_ADMIN, PostgresAdmin
from failcast.migrations import upgrade
from persistence import (
    METRIC_COLUMNS,
    create_db_engine,
    write_records,
)
from persistence.outcomes import OutcomeRecord, upsert_outcomes

BLOCK = 10_000
T0 = datetime(2024, 1, 1, tzinfo=UTC)
READ = """
import json, resource, sys, time
from training.database import load_database_dataset
from persistence import create_db_engine
engine = create_db_engine(sys.argv[1])
seconds = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    data = load_database_dataset(engine)
    seconds.append(time.perf_counter() - started)
selection = data.fingerprint.database
print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  / 1024, "rows": selection.rows, "dropped": selection.duplicates_dropped}))
"""


def seed(url: str, rows: int, devices: int) -> float:
    """Migrate a fresh database and store the predictions and outcomes; seconds it took."""
    started = time.perf_counter()
    upgrade(url)
    engine = create_db_engine(url)
    rng = np.random.default_rng(7)
    days = -(-rows * 20 // 21 // devices)  # device-days plus one in 20 predicted twice ~ rows
    device, day = np.divmod(np.arange(devices * days), days)
    again = np.flatnonzero(np.arange(device.size) % 20 == 0)
    device = np.concatenate([device, device[again]])[:rows]
    day = np.concatenate([day, day[again]])[:rows]
    seconds = rng.integers(0, 43_200, rows) + np.where(np.arange(rows) >= devices * days, 43_200, 0)
    try:
        version = placeholder_version(engine, "bench-train-1", "bench.trainingset")
        for start in range(0, rows, BLOCK):
            part = slice(start, min(start + BLOCK, rows))
            size = part.stop - start
            metrics = {name: rng.integers(0, 50, size).astype(float).tolist()
                       for name in METRIC_COLUMNS}  # fmt: skip
            write_records(engine, [stored_request(
                model_version_id=version, threshold=0.5,
                created_at=T0 + timedelta(days=900, seconds=start // BLOCK),
                device_ids=[f"S1F{d:05d}" for d in device[part]],
                observed_at=[T0 + timedelta(days=int(d), seconds=int(s))
                             for d, s in zip(day[part], seconds[part], strict=True)],
                metrics=metrics, probabilities=rng.random(size).tolist(), subject="bench",
            )])  # fmt: skip
        failed = rng.random(devices * days) < 0.001
        records = [
            OutcomeRecord(f"S1F{d:05d}", bool(f), T0 + timedelta(days=int(t)), T0)
            for d, t, f in zip(*np.divmod(np.arange(devices * days), days), failed, strict=True)
        ]
        with engine.begin() as connection:
            upsert_outcomes(connection, records)
        analyze(engine)
    finally:
        engine.dispose()
    return time.perf_counter() - started


def run(kind: str, url: str, rows: int, devices: int, repeats: int) -> str:
    """Seed, then read the training set in a fresh process; a Markdown table row."""
    print(f"{kind}: seeding {rows:,} predictions...", file=sys.stderr)
    print(f"{kind}: seeded in {seed(url, rows, devices):.1f} s", file=sys.stderr)
    done = subprocess.run(
        [sys.executable, "-c", READ, url, str(repeats)], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    times = ", ".join(f"{s:.2f} s" for s in result["seconds"])
    return (
        f"| {kind} | {rows:,} | {result['rows']:,} | {result['dropped']:,} | {times} | "
        f"{result['rss_mb']:.0f} MB |"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the bench and print a Markdown table."""
    p = argparse.ArgumentParser(prog="python -m bench.trainingset", description=__doc__)
    p.add_argument("--rows", type=int, default=1_000_000, help="predictions (1,000,000)")
    p.add_argument("--devices", type=int, default=2_000, help="devices (2,000)")
    p.add_argument("--repeats", type=int, default=3, help="reads per database (3)")
    p.add_argument("--only", choices=["sqlite", "postgresql"], help="one database only")
    p.add_argument("--pg-url", default=DEFAULT_PG_ADMIN, help="admin URL of a loopback PostgreSQL")
    args = p.parse_args(argv)
    lines = [
        "| database | predictions | training rows | duplicates dropped | read | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="failcast-bench-train-") as tmp:
        if args.only in (None, "sqlite"):
            url = f"sqlite:///{Path(tmp) / f'train-{uuid.uuid4().hex[:8]}.db'}"
            lines.append(run("SQLite", url, args.rows, args.devices, args.repeats))
        if args.only in (None, "postgresql"):
            admin = PostgresAdmin(args.pg_url)
            try:
                url = admin.create("train")
                lines.append(run("PostgreSQL", url, args.rows, args.devices, args.repeats))
            finally:
                admin.drop_all()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
