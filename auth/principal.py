"""The authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from auth.scopes import Scope


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated subject and the scopes it was granted."""

    subject: str
    scopes: frozenset[Scope]
    expires_at: datetime | None = None  # tz-aware UTC

    def has(self, scope: Scope) -> bool:
        """Return True when the principal was granted `scope`."""
        return scope in self.scopes
