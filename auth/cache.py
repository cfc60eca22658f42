"""A small bounded LRU of verified tokens."""

from __future__ import annotations

import threading
from collections import OrderedDict

from auth.principal import Principal

# (principal, exp as a POSIX timestamp, key generation it was verified under)
CacheEntry = tuple[Principal, float, int]


class TokenCache:
    """Thread-safe LRU from raw token string to its verified principal and expiry."""

    def __init__(self, max_entries: int = 1024) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        # get + move_to_end + eviction must not interleave between threads.
        self._lock = threading.Lock()

    def get(self, token: str) -> CacheEntry | None:
        """Return the entry for `token` (marking it recently used) or None."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is not None:
                self._entries.move_to_end(token)
            return entry

    def put(self, token: str, entry: CacheEntry) -> None:
        """Store a verified token, evicting the least recently used beyond the bound."""
        if self._max_entries <= 0:
            return
        with self._lock:
            self._entries[token] = entry
            self._entries.move_to_end(token)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def discard(self, token: str) -> None:
        """Forget `token` (e.g. once it has expired)."""
        with self._lock:
            self._entries.pop(token, None)

    def clear(self) -> None:
        """Forget every token (e.g. after a key rotation)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
