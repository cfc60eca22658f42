"""`python -m bench.index_costs`: what each index of `prediction` costs a stored batch.

A `predictBatch` of 1,000 rows ends in one transaction (`persistence.write_records`, the
server's own write path): its audit row and 1,000 predictions. Every prediction enters the
table and each of its indexes, and on PostgreSQL the statement-level trigger that stands in
for the foreign keys checks the block's references. This bench weighs those parts one by one.

A database (a SQLite file in a temp dir, or `failcast_bench_<pid>_indexes` on the loopback
PostgreSQL server of `--postgres`) is migrated and seeded with `--seed-blocks` blocks of a
fleet of `--devices` devices (one block per day, every device once: the nightly scoring
job's shape), through the same write path. Then, round by round, each variant gets a fresh
copy of that database (a file copy; `CREATE DATABASE ... TEMPLATE` and a CHECKPOINT), has its
change made, and the same `--blocks` blocks (the next days) are written into it:
- the table as migrated (every index: the baseline of the round);
- without one index, for each index;
- without any index but the primary key;
- on PostgreSQL, without the references' trigger.
A copy is dropped after its writes, so every variant starts from the same pages: indexes as
a server's inserts left them, none rebuilt.

Per stored prediction it gives the CPU of the database's work and the wall time, each as a
ratio to the baseline of the same round (median and min-max over rounds). On SQLite the
database runs in this process: the CPU is this thread's, binding included. On PostgreSQL it
is the CPU of the server backend that ran the transactions (Linux /proc, one pooled
connection), and this process's CPU is shown beside it. The kernel counts a process's CPU in
ticks of 10 ms: keep a variant's writes (`--blocks` x `--devices` predictions, about 10 us
each) well above that, as the defaults do (30,000 predictions, about 30 ticks).

Which query needs which index is written beside each index in persistence/tables.py.

    .venv/bin/python -m bench.index_costs                       # SQLite
    .venv/bin/python -m bench.index_costs --postgres            # the loopback PostgreSQL
    .venv/bin/python -m bench.index_costs --postgres --rounds 5 --blocks 40
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from bench.seeding import placeholder_version, stored_request
from bench.stack import DEFAULT_PG_ADMIN, PostgresAdmin
from failcast.migrations import upgrade
from graph.settings import Settings
from persistence import METRIC_COLUMNS, Prediction, RequestRecord, create_db_engine, is_sqlite
from persistence.records import write_records

T0 = datetime(2024, 1, 1, tzinfo=UTC)
ALL = "every index (baseline)"
TABLE_ALONE = "the primary key alone"
TRIGGER = "prediction_references_on_insert"
NO_TRIGGER = f"without the references' trigger ({TRIGGER})"
PREDICTIONS = Prediction.__table__


@dataclass(frozen=True)
class Cost:
    """One variant's writes in one round, per stored prediction."""

    variant: str
    round_no: int
    db_cpu_us: float  # the database's work: SQLite in this thread, else the server backend
    client_cpu_us: float  # this process (PostgreSQL only; SQLite's is db_cpu_us)
    wall_us: float


class Fleet:
    """Blocks of `devices` predictions, one per device, a day apart (as a nightly job)."""

    def __init__(self, version_id: int, devices: int, seed: int = 7) -> None:
        self.version_id = version_id
        self.devices = [f"S1F{i:05d}" for i in range(devices)]
        self.rng = np.random.default_rng(seed)
        self.day = 0

    def block(self) -> RequestRecord:
        """The next day's block."""
        size, observed = len(self.devices), T0 + timedelta(days=self.day)
        self.day += 1
        metrics = {m: self.rng.integers(0, 50, size).astype(float).tolist() for m in METRIC_COLUMNS}
        metrics["metric1"] = self.rng.integers(0, 250_000_000, size).astype(float).tolist()
        return stored_request(
            model_version_id=self.version_id,
            threshold=0.5,
            created_at=observed + timedelta(hours=1),
            device_ids=self.devices,
            observed_at=[observed] * size,
            metrics=metrics,
            probabilities=np.clip(self.rng.beta(0.4, 6.0, size), 0.0, 1.0).tolist(),
            subject="bench",
        )


class Database:
    """The bench's database, the variants' changes to it, and the CPU its work takes."""

    def __init__(self, url: str, admin: PostgresAdmin | None = None) -> None:
        """`admin`: the PostgreSQL server's (its backends' CPU is read through it)."""
        self.url, self.admin = url, admin
        self.sqlite = is_sqlite(url)
        if not self.sqlite and admin is None:
            raise ValueError("a PostgreSQL database is measured through its PostgresAdmin")
        # one pooled connection: on PostgreSQL every transaction runs in the same backend; on
        # SQLite it has the page cache of a server's writer (FAILCAST_SQLITE_WRITER_CACHE_MIB)
        cache_kib = Settings.model_fields["sqlite_writer_cache_mib"].default * 1024
        self.engine = create_db_engine(url, pool_size=1, sqlite_cache_kib=cache_kib)
        self._backends = None if self.sqlite else set(self._backend_cpu())

    def _backend_cpu(self) -> dict[int, float]:
        assert self.admin is not None
        with self.engine.connect():  # the pooled connection (and its backend) open
            pass
        return self.admin.backend_cpu(self.url)

    def cpu_seconds(self) -> float:
        """CPU of the database's work so far: this thread (SQLite) or the backend."""
        if self._backends is None:
            return time.thread_time()
        found = self._backend_cpu()
        if set(found) != self._backends:
            raise RuntimeError("the pooled connection changed backend: CPU not comparable")
        return sum(found.values())

    def change(self, indexes: list[sa.Index], trigger: bool) -> None:
        """Drop these indexes (and disable the references' trigger): a variant's change."""
        with self.engine.begin() as connection:
            for index in indexes:
                index.drop(connection)
            if trigger:
                connection.execute(sa.text(f"ALTER TABLE prediction DISABLE TRIGGER {TRIGGER}"))

    def write(self, records: list[RequestRecord]) -> tuple[float, float, float]:
        """Write each record in a transaction of its own: (database CPU, process CPU, wall)."""
        cpu, process, wall = self.cpu_seconds(), time.process_time(), time.perf_counter()
        for record in records:
            write_records(self.engine, [record])
        wall = time.perf_counter() - wall
        process = time.process_time() - process
        return self.cpu_seconds() - cpu, process, wall


def variants(sqlite: bool) -> list[tuple[str, list[sa.Index], bool]]:
    """(name, indexes dropped, trigger disabled) of every variant, the baseline first."""
    indexes = sorted(PREDICTIONS.indexes, key=lambda index: str(index.name))
    found = [(ALL, [], False)]
    found += [(f"without {index.name}", [index], False) for index in indexes]
    found.append((TABLE_ALONE, indexes, False))
    if not sqlite:
        found.append((NO_TRIGGER, [], True))
    return found


class Template:
    """The seeded database, and a fresh copy of it for each variant and round."""

    def __init__(self, admin: PostgresAdmin | None, directory: Path) -> None:
        self.admin, self.directory = admin, directory
        if admin is None:
            self.url = f"sqlite:///{directory / 'template.db'}"
        else:
            self.url = admin.create("indexes")

    @contextmanager
    def copy(self) -> Iterator[str]:
        """The URL of a copy of the template, dropped afterwards."""
        if self.admin is None:
            path = self.directory / "copy.db"
            shutil.copyfile(self.directory / "template.db", path)  # its WAL checkpointed
            try:
                yield f"sqlite:///{path}"
            finally:
                for leftover in (
                    path,
                    path.with_name("copy.db-wal"),
                    path.with_name("copy.db-shm"),
                ):
                    leftover.unlink(missing_ok=True)
            return
        url = self.admin.create("indexes_copy", template=self.url)
        self.admin.checkpoint()  # the copy's WAL written out before, not during, the writes
        try:
            yield url
        finally:
            self.admin.drop(url)


def seed(template: Template, devices: int, seed_blocks: int) -> Fleet:
    """Migrate and seed the template (then closed, as a copy needs); the fleet carries on."""
    upgrade(template.url)
    database = Database(template.url, template.admin)
    try:
        version = placeholder_version(database.engine, "bench-indexes-1", "bench.index_costs")
        fleet = Fleet(version, devices)
        database.write([fleet.block() for _ in range(seed_blocks)])
        with database.engine.begin() as connection:
            connection.execute(sa.text("ANALYZE"))
            if database.sqlite:  # every page in the file itself: a file copy copies them all
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        database.engine.dispose()
    return fleet


def measure(template: Template, fleet: Fleet, blocks: int, rounds: int) -> list[Cost]:
    """Every variant's cost on a fresh copy, `rounds` times, in turn: the same blocks each."""
    records = [fleet.block() for _ in range(blocks)]
    per = 1e6 / (blocks * len(fleet.devices))
    costs = []
    for round_no in range(1, rounds + 1):
        for name, indexes, trigger in variants(template.admin is None):
            with template.copy() as url:
                database = Database(url, template.admin)
                try:
                    database.change(indexes, trigger)
                    cpu, process, wall = database.write(records)
                finally:
                    database.engine.dispose()
            client = 0.0 if database.sqlite else process * per
            costs.append(Cost(name, round_no, cpu * per, client, wall * per))
            print(f"round {round_no}: {name}: {cpu * per:.2f} us", file=sys.stderr, flush=True)
    return costs


def render(costs: list[Cost], sqlite: bool, title: str) -> str:
    """The table: per variant, medians [min-max] over rounds, ratios to the round's baseline."""
    base = {c.round_no: c for c in costs if c.variant == ALL}
    names = list(dict.fromkeys(c.variant for c in costs))
    database = "this thread's CPU" if sqlite else "backend CPU"
    head = f"| variant | {database}, us per prediction | x baseline | wall, us | x baseline |"
    if not sqlite:
        head += " this process's CPU, us |"
    lines = [f"## {title}", "", head, _rule(head)]
    for name in names:
        mine = [c for c in costs if c.variant == name]
        cpu = [c.db_cpu_us for c in mine]
        wall = [c.wall_us for c in mine]
        cpu_ratio = [c.db_cpu_us / base[c.round_no].db_cpu_us for c in mine]
        wall_ratio = [c.wall_us / base[c.round_no].wall_us for c in mine]
        row = (
            f"| {name} | {_spread(cpu, '.2f')} | {_spread(cpu_ratio, '.3f')} "
            f"| {_spread(wall, '.2f')} | {_spread(wall_ratio, '.3f')} |"
        )
        if not sqlite:
            row += f" {_spread([c.client_cpu_us for c in mine], '.2f')} |"
        lines.append(row)
    return "\n".join(lines)


def _rule(head: str) -> str:
    return "|" + "---|" * (head.count("|") - 1)


def _spread(values: list[float], spec: str) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return format(middle, spec)
    return f"{middle:{spec}} [{min(values):{spec}}-{max(values):{spec}}]"


def run(admin: PostgresAdmin | None, devices: int, seed_blocks: int, blocks: int,
        rounds: int) -> list[Cost]:  # fmt: skip
    """Seed a template (on SQLite, or in a database of `admin`'s server), then measure."""
    with tempfile.TemporaryDirectory(prefix="failcast-indexes-") as tmp:
        try:
            template = Template(admin, Path(tmp))
            return measure(template, seed(template, devices, seed_blocks), blocks, rounds)
        finally:
            if admin is not None:
                admin.drop_all()


def main(argv: list[str] | None = None, out: Callable[[str], object] = print) -> int:
    """Parse the options, run on SQLite or PostgreSQL, print the table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.index_costs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=DEFAULT_PG_ADMIN,
        metavar="ADMIN_URL",
        help=f"a throw-away database of this loopback server ({DEFAULT_PG_ADMIN})",
    )
    parser.add_argument("--devices", type=int, default=1_000, help="predictions per block (1000)")
    parser.add_argument("--seed-blocks", type=int, default=200, help="blocks stored first (200)")
    parser.add_argument("--blocks", type=int, default=30, help="blocks per variant (30)")
    parser.add_argument("--rounds", type=int, default=3, help="times every variant runs (3)")
    args = parser.parse_args(argv)
    for name in ("devices", "blocks", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.seed_blocks < 0:
        parser.error("--seed-blocks must be at least 0")
    shape = (args.devices, args.seed_blocks, args.blocks, args.rounds)
    seeded = f"{args.seed_blocks * args.devices:,} predictions seeded"
    written = f"{args.blocks} blocks of {args.devices:,} per variant and round"
    if args.postgres:
        admin = PostgresAdmin(args.postgres)
        reason = admin.available()
        if reason:
            parser.error(f"PostgreSQL at {args.postgres} does not answer: {reason}")
        costs = run(admin, *shape)
        title = f"PostgreSQL {admin.version()}: {seeded}, {written}"
    else:
        costs = run(None, *shape)
        title = f"SQLite: {seeded}, {written}"
    out(render(costs, not args.postgres, title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
