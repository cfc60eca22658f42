"""A failcast deployment for one contender: its database, migrations, model, secret and token."""

import json
import os
import secrets
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from bench.procs import own_cpu_seconds
from model import DEVICE_FEATURES
from persistence import (
    AuditRepository,
    ModelVersionRepository,
    PredictionRepository,
    create_db_engine,
    session_scope,
)
from training.features import COUNTERS

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DB_PREFIX = "failcast_bench_"
UNREACHABLE_RATE = 1e9  # requests (or batch rows) per second
DEFAULT_PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class PostgresAdmin:
    """Creates and drops the bench's throw-away databases on a loopback PostgreSQL server."""

    def __init__(self, admin_url: str) -> None:
        url = sa.make_url(admin_url)
        if url.host not in LOOPBACK_HOSTS:
            raise ValueError(f"PostgreSQL must be on the loopback address, not {url.host!r}")
        self.url = url
        self.created: list[str] = []

    def _engine(self) -> sa.Engine:
        return sa.create_engine(
            self.url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )

    def available(self) -> str | None:
        """None when the server answers, else why not."""
        engine = self._engine()
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.DBAPIError as error:
            return str(error.orig or error).splitlines()[0]
        finally:
            engine.dispose()
        return None

    def version(self) -> str:
        """The server's version string."""
        engine = self._engine()
        try:
            with engine.connect() as connection:
                return str(connection.execute(sa.text("SHOW server_version")).scalar())
        finally:
            engine.dispose()

    def create(self, suffix: str, template: str | None = None) -> str:
        """Create `failcast_bench_<pid>_<suffix>` (a copy of `template`); return its URL."""
        name = f"{DB_PREFIX}{os.getpid()}_{suffix}"
        self._drop(name)
        copy = f' TEMPLATE "{sa.make_url(template).database}"' if template else ""
        self._execute(f'CREATE DATABASE "{name}"{copy}')
        self.created.append(name)
        return self.url.set(database=name).render_as_string(hide_password=False)

    def backend_cpu(self, database_url: str) -> dict[int, float]:
        """CPU seconds so far of each server process connected to a database (same machine)."""
        engine = self._engine()
        try:
            with engine.connect() as connection:
                pids = connection.execute(
                    sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"),
                    {"d": sa.make_url(database_url).database},
                ).scalars()
                return {int(pid): own_cpu_seconds(int(pid)) for pid in pids}
        finally:
            engine.dispose()

    def checkpoint(self) -> None:
        """Write every dirty buffer out now (CHECKPOINT), as pgbench does between runs."""
        self._execute("CHECKPOINT")

    def drop(self, database_url: str) -> None:
        """Drop one database this admin created."""
        name = str(sa.make_url(database_url).database)
        self._drop(name)
        self.created.remove(name)

    def drop_all(self) -> None:
        """Drop every database this admin created."""
        while self.created:
            self._drop(self.created.pop())

    def _drop(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_leftovers(self) -> list[str]:
        """Drop bench databases left by runs whose process is gone (killed runs)."""
        engine = self._engine()
        try:
            with engine.connect() as connection:
                names = connection.execute(
                    sa.text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                    {"p": f"{DB_PREFIX}%"},
                ).scalars()
                stale = [n for n in names if not _owner_alive(n)]
        finally:
            engine.dispose()
        for name in stale:
            self._drop(name)
        return stale

    def _execute(self, statement: str) -> None:
        engine = self._engine()
        try:
            with engine.connect() as connection:
                connection.execute(sa.text(statement))
        finally:
            engine.dispose()


def _owner_alive(database: str) -> bool:
    pid = database.removeprefix(DB_PREFIX).split("_", 1)[0]
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


@dataclass
class FailcastStack:
    """What a failcast server needs to run: a work dir, its environment and a token."""

    name: str
    workdir: Path
    database_url: str
    env: dict[str, str]
    token: str = ""

    def cli(self, *args: str, timeout: float = 600) -> str:
        """Run `failcast <args>` in this stack's environment; return its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "failcast", *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"failcast {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def train(self, data: Path | None) -> None:
        """Migrate the database, then train, register and activate a model version (what
        `failcast train` selects), and register the original service's model beside it: a
        logistic regression on the counters alone, which the reference serves (it has no
        history to compute features from)."""
        self.cli("db", "upgrade")
        report = ["--report-dir", str(self.workdir / "artifacts")]
        source = ["--data", str(data)] if data else []
        self.cli("train", "--activate", *report, *source)
        # The original service's pipeline: no cross-validation, so no calibration either.
        original = ["--feature-set", COUNTERS, "--algorithm", "logistic_regression"]
        original += ["--cv-folds", "0"]
        self.cli("train", *original, *report, *source)

    def mint_token(self) -> str:
        """Mint (and keep) a 2-hour token with the `predict` and `metrics:read` scopes (the
        bench reads /metrics around each run), signed with this secret."""
        scopes = "predict metrics:read"
        self.token = self.cli("token", "--subject", "bench", "--scope", scopes, "--ttl", "2h")
        self.token = self.token.strip()
        return self.token

    def serve_command(self, port: int, workers: int) -> list[str]:
        """The command that serves this stack."""
        host = ["--host", "127.0.0.1", "--port", str(port)]
        return [sys.executable, "-m", "failcast", "serve", *host, "--workers", str(workers)]


def server_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any FAILCAST_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAILCAST_")}
    return {**env, **extra}


def new_stack(name: str, workdir: Path, database_url: str) -> FailcastStack:
    """A stack on this database with a fresh random secret (production settings)."""
    env = server_env(
        {
            "FAILCAST_DATABASE_URL": database_url,
            "FAILCAST_JWT_SECRET": secrets.token_urlsafe(48),  # 48 random bytes
            "FAILCAST_ENV": "production",
            "FAILCAST_LOG_LEVEL": "warning",  # no access log, as for every contender
            # The limiter still runs on every request, with a rate the load cannot reach:
            # the bench measures capacity, not the configured per-subject quota.
            "FAILCAST_RATE_LIMITS": json.dumps(
                {scope: [UNREACHABLE_RATE] * 2 for scope in ("predict", "predictions:read")}
            ),
        }
    )
    return FailcastStack(name, workdir, database_url, env)


def prepare_stack(name: str, workdir: Path, database_url: str, data: Path | None) -> FailcastStack:
    """Migrate, train and activate a model, and mint a `predict` token."""
    stack = new_stack(name, workdir, database_url)
    stack.train(data)
    stack.mint_token()
    return stack


def copy_sqlite(source_url: str, target: Path) -> str:
    """Copy a SQLite database (consistently, with the backup API); return the copy's URL."""
    source = sa.make_url(source_url).database
    assert source is not None
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    return f"sqlite:///{target}"


@dataclass(frozen=True)
class ActiveModel:
    """The registry's active version: its artifact and what the report says of it."""

    artifact: bytes
    sha256: str
    version: str
    algorithm: str
    synthetic: bool
    horizon_days: int


def active_model(database_url: str, counters_only: bool = False) -> ActiveModel:
    """The active model version of a failcast database, with its artifact bytes; with
    `counters_only`, the newest version that reads the counters alone (the reference's)."""
    engine = create_db_engine(database_url)
    try:
        with session_scope(engine) as session:
            repo = ModelVersionRepository(session)
            row = repo.active(with_artifact=True)
            if counters_only:
                found = [v for v in repo.list_all() if tuple(v.feature_names) == DEVICE_FEATURES]
                row = repo.get(found[0].version, with_artifact=True) if found else None
            if row is None:
                raise RuntimeError("no such model version")
            return ActiveModel(
                row.artifact,
                row.artifact_sha256,
                row.version,
                row.algorithm,
                row.trained_on_synthetic_data,
                row.horizon_days,
            )
    finally:
        engine.dispose()


def database_bytes(database_url: str) -> int:
    """What a failcast database takes: a SQLite database's pages (`page_count` times
    `page_size`, the pages still in its write-ahead log included, the log's own file not), or a
    PostgreSQL database on disk (`pg_database_size`: tables, indexes and TOAST)."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        with closing(sqlite3.connect(url.database)) as connection:
            [pages] = connection.execute("PRAGMA page_count").fetchone()
            [size] = connection.execute("PRAGMA page_size").fetchone()
        return int(pages) * int(size)
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            found = connection.exec_driver_sql("SELECT pg_database_size(current_database())")
            return int(found.scalar_one())
    finally:
        engine.dispose()


def stored_counts(database_url: str) -> tuple[int, int]:
    """(audit events, predictions) stored in a failcast database."""
    engine = create_db_engine(database_url)
    try:
        with session_scope(engine) as session:
            return AuditRepository(session).count(), PredictionRepository(session).count()
    finally:
        engine.dispose()
