"""Column types that behave the same on SQLite and PostgreSQL."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

# JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# The same for columns that may be absent: Python None is SQL NULL, not the JSON value null.
NullableJSON = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: give a timezone")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        aware: datetime = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        return aware.astimezone(UTC)


# On SQLite a stored CONTRIBUTIONS explanation keeps its contributions column by column: each
# of the three keys once, with a list of values, not once per feature in a list of objects. A
# blend's 31 contributions took 2,462 bytes of JSON as objects and take 1,422 as columns, which
# puts two such rows on a SQLite page instead of one (README, "What an explanation adds to a
# request"). Rows written before keep the objects; reading gives the same explanation either way.
CONTRIBUTIONS, CONTRIBUTION_COLUMNS = "contributions", "contributionColumns"
_CONTRIBUTION_KEYS = ("feature", "value", "contribution")


def stored_explanation(explanation: Any) -> Any:
    """An explanation as the database keeps it: its contributions as columns when each is an
    object of exactly `feature`, `value` and `contribution` (as model.compiled makes them),
    else as it is; the key keeps its place among the others."""
    if not isinstance(explanation, dict) or CONTRIBUTION_COLUMNS in explanation:
        return explanation
    contributions = explanation.get(CONTRIBUTIONS)
    if not isinstance(contributions, list) or not all(
        type(c) is dict and tuple(c) == _CONTRIBUTION_KEYS for c in contributions
    ):
        return explanation
    columns = {key: [c[key] for c in contributions] for key in _CONTRIBUTION_KEYS}
    return {
        (CONTRIBUTION_COLUMNS if key == CONTRIBUTIONS else key): (
            columns if key == CONTRIBUTIONS else value
        )
        for key, value in explanation.items()
    }


def read_explanation(stored: Any) -> Any:
    """The explanation a stored one was made from (`stored_explanation` undone)."""
    if not isinstance(stored, dict) or CONTRIBUTION_COLUMNS not in stored:
        return stored
    columns = stored[CONTRIBUTION_COLUMNS]
    rows = zip(*(columns[key] for key in _CONTRIBUTION_KEYS), strict=True)
    contributions = [dict(zip(_CONTRIBUTION_KEYS, row, strict=True)) for row in rows]
    return {
        (CONTRIBUTIONS if key == CONTRIBUTION_COLUMNS else key): (
            contributions if key == CONTRIBUTION_COLUMNS else value
        )
        for key, value in stored.items()
    }


class ExplanationJSON(sa.types.TypeDecorator[Any]):
    """`NullableJSON` for a prediction's explanation: on SQLite kept as `stored_explanation`
    gives it; on PostgreSQL as it is, since JSONB values over about 2 KB are compressed (TOAST):
    the same 200 explanations took 937 bytes as compressed objects and 1,684 as uncompressed
    columns. Either is read back as `read_explanation` gives it."""

    impl = sa.JSON(none_as_null=True)
    cache_ok = True
    columnwise = frozenset({"sqlite"})  # the dialects that keep contributions as columns

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        return NullableJSON  # its variant for the dialect: JSONB on PostgreSQL

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return stored_explanation(value) if dialect.name in self.columnwise else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return read_explanation(value)


def bind_step(column: sa.Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """What a column's own type makes of a value before its storage type serializes it (a
    TypeDecorator's `process_bind_param`; None for a type without one): for the bulk writers
    (persistence.records, persistence.pgcopy), which serialize JSON themselves."""
    kind = column.type
    if not isinstance(kind, sa.types.TypeDecorator) or not kind._has_bind_processor:
        return None
    return lambda value: kind.process_bind_param(value, dialect)
