"""Engine factory: the SQLite and PostgreSQL specifics live here and nowhere else."""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Checkpoint the WAL every 8,192 pages (32 MiB) rather than 1,000: a 1,000-row batch dirties
# hundreds of pages of the device index, and a checkpoint (with its fsync) on every commit
# tripled the commit time. A page cache of 16 MiB per connection (default 2 MiB) keeps the hot
# index pages in memory.
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 8192
SQLITE_CACHE_KIB = 16 * 1024


def is_sqlite(url: str | sa.URL) -> bool:
    """Whether a database URL names SQLite."""
    return sa.make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; NORMAL sync is durable across a process crash
    # (the WAL is in the OS cache); foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


def create_db_engine(
    url: str | sa.URL,
    *,
    pool_size: int = 8,
    connect_timeout_s: int = 3,
    statement_timeout_ms: int | None = None,
    echo: bool = False,
) -> Engine:
    """Build an engine with the settings each backend needs to be safe under concurrency."""
    if is_sqlite(url):
        engine = sa.create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {"connect_timeout": connect_timeout_s}
    if statement_timeout_ms:
        connect_args["options"] = f"-c statement_timeout={int(statement_timeout_ms)}"
    return sa.create_engine(
        url,
        echo=echo,
        connect_args=connect_args,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=connect_timeout_s,
    )


def ping(engine: Engine) -> None:
    """Run a trivial query; raises DatabaseUnavailable when the database does not answer."""
    from persistence.session import translate_errors

    with translate_errors(), engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
