"""Refusals counted rather than audited one by one: a row per client address, reason and minute.

Requests refused before they get an audit row of their own (an anonymous flood beyond its rate
limit: a row per refused request would let the flood write to the database at will) are counted in
memory by each server process and added here in bulk, so the trail still says who was refused,
why, how often and when. Several processes add to the same rows, so adding is an upsert that the
database makes atomic (INSERT ... ON CONFLICT DO UPDATE): no count is lost between two writers.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from persistence.session import session_scope
from persistence.tables import RefusalTally

_TALLY: sa.Table = RefusalTally.__table__  # type: ignore[attr-defined]
_KEY = ("client_addr", "reason", "window_start")  # the columns of the unique constraint
_ROWS_PER_STATEMENT = 1000  # x 6 values: under SQLite's 32,766 and PostgreSQL's 65,535 binds
_Key = tuple[str, str, datetime]


def minute_window(moment: datetime) -> datetime:
    """The start of the UTC minute a moment falls in: the window_start of its tally."""
    return _utc("moment", moment).replace(second=0, microsecond=0)


def _utc(name: str, moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} is a naive datetime: give a timezone")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class RefusalCount:
    """How often one client was refused for one reason within one minute, first and last time."""

    window_start: datetime  # on a whole UTC minute: minute_window(first refusal)
    client_addr: str
    reason: str  # a stable code such as "anonymous_rate_limit"
    count: int
    first_seen: datetime
    last_seen: datetime

    def __post_init__(self) -> None:
        # Refused here rather than by the database, where one bad count would fail the batch.
        if minute_window(self.window_start) != self.window_start:
            raise ValueError("window_start must be on a whole UTC minute (see minute_window)")
        if _utc("first_seen", self.first_seen) > _utc("last_seen", self.last_seen):
            raise ValueError("first_seen is after last_seen")
        if self.count < 1:
            raise ValueError("count must be positive")
        if len(self.client_addr) > 64 or not 0 < len(self.reason) <= 32:
            raise ValueError("client_addr takes up to 64 characters, reason 1 to 32")

    @property
    def key(self) -> _Key:
        """The tally this count adds to."""
        return (self.client_addr, self.reason, _utc("window_start", self.window_start))


def _merged(counts: Sequence[RefusalCount]) -> list[dict[str, Any]]:
    """One row per tally, in key order."""
    # PostgreSQL refuses to update a row twice in one statement; and writers that lock rows in
    # the same order cannot deadlock each other.
    rows: dict[_Key, dict[str, Any]] = {}
    for count in counts:
        row = rows.get(count.key)
        if row is None:
            rows[count.key] = {
                "window_start": count.window_start,
                "client_addr": count.client_addr,
                "reason": count.reason,
                "count": count.count,
                "first_seen": count.first_seen,
                "last_seen": count.last_seen,
            }
            continue
        row["count"] += count.count
        row["first_seen"] = min(row["first_seen"], count.first_seen)
        row["last_seen"] = max(row["last_seen"], count.last_seen)
    return [rows[key] for key in sorted(rows)]


def _upsert(dialect: str, rows: list[dict[str, Any]]) -> sa.Executable:
    """Insert the rows; a row whose tally exists adds its count and widens its times instead."""
    if dialect not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"refusal tallies need PostgreSQL or SQLite, not {dialect}")
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_TALLY).values(rows)
    new, old = statement.excluded, _TALLY.c
    return statement.on_conflict_do_update(
        index_elements=[old[name] for name in _KEY],
        set_={
            "count": old["count"] + new["count"],
            "first_seen": sa.case(
                (new.first_seen < old.first_seen, new.first_seen), else_=old.first_seen
            ),
            "last_seen": sa.case(
                (new.last_seen > old.last_seen, new.last_seen), else_=old.last_seen
            ),
        },
    )


class RefusalTallyRepository:
    """Refusal tallies: added to by upsert, read newest first, purged by age."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add_counts(self, counts: Sequence[RefusalCount]) -> None:
        """Add counts to their tallies, one upsert statement per call (per 1,000 tallies)."""
        rows = _merged(counts)
        dialect = self.session.get_bind().dialect.name
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            self.session.execute(_upsert(dialect, rows[start : start + _ROWS_PER_STATEMENT]))

    def page(
        self,
        first: int,
        before_id: int | None,
        since: datetime | None = None,
        client_addr: str | None = None,
    ) -> list[RefusalTally]:
        """Up to `first` tallies, newest first, with ids below `before_id` when given.

        `since` keeps the windows that end after it; `client_addr` one address's tallies.
        """
        query = select(RefusalTally)
        if before_id is not None:
            query = query.where(col(RefusalTally.id) < before_id)
        if since is not None:
            query = query.where(col(RefusalTally.window_start) >= minute_window(since))
        if client_addr is not None:
            query = query.where(col(RefusalTally.client_addr) == client_addr)
        query = query.order_by(col(RefusalTally.id).desc()).limit(first)
        # Upserts change rows behind the session's back: read them afresh.
        return list(self.session.exec(query.execution_options(populate_existing=True)))

    def purge_before(self, moment: datetime) -> int:
        """Delete the tallies of windows that started before `moment`; return how many."""
        older = _TALLY.c.window_start < _utc("moment", moment)
        return self.session.connection().execute(sa.delete(_TALLY).where(older)).rowcount

    def count(self) -> int:
        """How many tallies are stored."""
        total = self.session.execute(sa.select(sa.func.count()).select_from(_TALLY))
        return int(total.scalar_one())


def record_refusal_counts(engine: Engine, counts: Sequence[RefusalCount]) -> None:
    """Add counted refusals to their tallies in one transaction (all or nothing)."""
    if not counts:
        return
    with session_scope(engine) as session:
        RefusalTallyRepository(session).add_counts(counts)
