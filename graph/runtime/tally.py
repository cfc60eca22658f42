"""Refusals counted instead of audited one by one: a flood cannot grow the database with itself.

Requests without a valid token beyond their per-address rate limit are answered 429 at once and
counted here, per minute, client address and reason; every `flush_seconds` the counts are added
to `refusal_tally` rows (one row per address, reason and minute, whatever the flood's size). At
most `max_addresses` addresses are kept per minute; the rest are counted under the address `*`,
so even a flood from many addresses adds a bounded number of rows per minute.
"""

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from persistence import RefusalCount, record_refusal_counts

OTHER_ADDRESSES = "*"

_Key = tuple[datetime, str, str]  # (minute, client address, reason)


@dataclass
class _Count:
    count: int
    first_seen: datetime
    last_seen: datetime


class RefusalTally:
    """Counts refusals in memory until they are flushed to the database."""

    def __init__(self, max_addresses: int = 1000) -> None:
        self.max_addresses = max_addresses
        self._counts: dict[_Key, _Count] = {}
        self._addresses: dict[datetime, set[str]] = {}
        self._lock = threading.Lock()

    def count(self, client_addr: str | None, reason: str, now: datetime | None = None) -> None:
        """Count one refusal."""
        moment = now or datetime.now(UTC)
        minute = moment.replace(second=0, microsecond=0)
        with self._lock:
            seen = self._addresses.setdefault(minute, set())
            address = client_addr or OTHER_ADDRESSES
            if address not in seen and len(seen) >= self.max_addresses:
                address = OTHER_ADDRESSES
            seen.add(address)
            entry = self._counts.setdefault((minute, address, reason), _Count(0, moment, moment))
            entry.count += 1
            entry.last_seen = moment

    def take(self) -> list[RefusalCount]:
        """The counts so far, as rows to add; the tally starts again from zero."""
        with self._lock:
            counts, self._counts = self._counts, {}
            current = max(self._addresses, default=None)
            self._addresses = {current: self._addresses[current]} if current else {}
        return [
            RefusalCount(minute, address, reason, c.count, c.first_seen, c.last_seen)
            for (minute, address, reason), c in counts.items()
        ]

    def flush(self, engine: Engine) -> int:
        """Add the counts to the database (blocking); how many refusals were written."""
        rows = self.take()
        if rows:
            try:
                record_refusal_counts(engine, rows)
            except Exception:
                self._give_back(rows)
                raise
        return sum(row.count for row in rows)

    def _give_back(self, rows: list[RefusalCount]) -> None:
        with self._lock:
            for row in rows:
                key = (row.window_start, row.client_addr, row.reason)
                entry = self._counts.setdefault(key, _Count(0, row.first_seen, row.last_seen))
                entry.count += row.count
                entry.first_seen = min(entry.first_seen, row.first_seen)
