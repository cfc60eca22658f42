"""Engine factory: the SQLite and PostgreSQL specifics live here and nowhere else."""

from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

SQLITE_BUSY_TIMEOUT_MS = 10_000
# A 1,000-row batch dirties hundreds of pages of the device index, so the WAL passed SQLite's
# default checkpoint mark (1,000 pages) on almost every commit, and the committing request paid
# for the checkpoint and its fsync. A server checkpoints in the background instead (`checkpoint`,
# PASSIVE, every 2 s: writers go on), and the automatic checkpoint stays as a backstop at 256 MiB:
# between two checkpoints a page the batches keep dirtying is copied once, not once per batch.
# A page cache of 4 MiB per connection (SQLite's default is 2 MiB) keeps hot index pages. Each
# pooled connection keeps its cache for the life of the process, and a batch server uses many:
# at 16 MiB the SQLite batch server peaked at 276-290 MB after ~600,000 stored predictions, at 4
# MiB at 179 MB, for 4% fewer predictions/s (18,645 -> 17,852, within the rounds' spread) and 7%
# more server CPU per prediction (`python -m bench --real-data --only reference,batch-sqlite
# --rounds 3 --tail 0`, one run each; 8 MiB: 268 MB, 18,243/s).
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 65536
SQLITE_WAL_KEEP_BYTES = 64 * 1024 * 1024  # a WAL file past this is truncated once checkpointed
# Under load the WAL never starts over by itself: a writer restarts it only when its transaction
# begins on a WAL checkpointed to its last frame, and the group commits add frames while each
# PASSIVE checkpoint runs. So it grew to the backstop (256 MiB, in 17 s at 1,300 requests/s),
# where the committing writer ran the checkpoint itself (frames copied, WAL and database synced:
# 92-156 ms), then truncated the WAL back to 64 MiB (71-79 ms; both seen with strace), and every
# request of those commits waited. Now the background checkpoint (`WalCheckpoints`), once the
# WAL holds SQLITE_WAL_RESTART_BYTES, runs a RESTART checkpoint right after its PASSIVE one: it
# holds off writers while it copies the few frames left and waits for the readers in flight,
# and the next commit starts the WAL over (7-34 ms, measured; the WAL then stays under the
# 64 MiB it keeps). The wait is bounded (SQLITE_WAL_RESTART_WAIT_MS: the commits wait that long
# at most), and a reader that outlasts it (an export, a long history query) is not waited for
# again and again: the next try waits until the WAL has grown by SQLITE_WAL_RESTART_BYTES more.
SQLITE_WAL_RESTART_BYTES = 32 * 1024 * 1024
SQLITE_WAL_RESTART_WAIT_MS = 25
SQLITE_CACHE_KIB = 4 * 1024


def is_sqlite(url: str | sa.URL) -> bool:
    """Whether a database URL names SQLite."""
    return sa.make_url(url).get_backend_name() == "sqlite"


def is_sqlite_file(url: str | sa.URL) -> bool:
    """Whether a database URL names a SQLite database file (not one in memory), which other
    processes can open too."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return False
    return parsed.query.get("mode") != "memory"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, cache_kib: int = SQLITE_CACHE_KIB) -> None:
    # WAL lets readers run beside the writer; NORMAL sync is durable across a process crash
    # (the WAL is in the OS cache); foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
    cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_KEEP_BYTES}")
    cursor.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
    cursor.close()


def create_db_engine(
    url: str | sa.URL,
    *,
    pool_size: int = 8,
    connect_timeout_s: int = 3,
    statement_timeout_ms: int | None = None,
    echo: bool = False,
    sqlite_cache_kib: int = SQLITE_CACHE_KIB,
) -> Engine:
    """Build an engine with the settings each backend needs to be safe under concurrency.

    `sqlite_cache_kib` is the page cache of each SQLite connection (kept by the connection
    while it is pooled, so it counts in the process's memory).
    """
    if is_sqlite(url):
        engine = sa.create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        sa.event.listen(engine, "connect", partial(_sqlite_pragmas, cache_kib=sqlite_cache_kib))
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


class WalCheckpoints:
    """A server's background checkpoints of one SQLite database (see above); call it every
    few seconds, off the event loop."""

    def __init__(self, engine: Engine, restart_bytes: int = SQLITE_WAL_RESTART_BYTES) -> None:
        self.engine = engine
        self.restart_bytes = restart_bytes
        self._restart_at = restart_bytes  # the WAL's size that calls for a RESTART

    def __call__(self) -> bool:
        """Copy committed WAL frames into the database file without blocking writers; once
        the WAL is long, have the next commit start it over. Whether it will."""
        if self.engine.dialect.name != "sqlite":
            return False
        from persistence.session import translate_errors

        with translate_errors(), self.engine.connect() as connection:
            _, frames, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
            size = frames * connection.exec_driver_sql("PRAGMA page_size").scalar_one()
            if size < self._restart_at:  # (-1 frames: not in WAL mode)
                return False
            connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_WAL_RESTART_WAIT_MS}")
            try:
                busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)").one()
            finally:
                connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        self._restart_at = size + self.restart_bytes if busy else self.restart_bytes
        return not busy


def ping(engine: Engine) -> None:
    """Run a trivial query; raises DatabaseUnavailable when the database does not answer."""
    from persistence.session import translate_errors

    with translate_errors(), engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
