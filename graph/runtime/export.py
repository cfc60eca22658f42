"""Predictions as CSV: the one writer behind GET /exports/predictions.csv and `failcast export`.

Columns are named like the fields of the GraphQL `Prediction` (`modelVersion` is the version's
name, then the telemetry `metric1`..`metric7`, `metric9`), rows come in creation order (ties
by id), and values read back exactly as the API gives them: times as its `DateTime` writes them
(ISO 8601 in UTC), floats as `repr()` writes them. Rows are read in keyset batches and each
batch becomes one chunk of bytes (UTF-8, CRLF line ends, RFC 4180 quoting), so an export of any
size holds one batch in memory at a time.
"""

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from dateutil.parser import isoparse
from sqlalchemy.engine import Engine

from graph.errors import bad_input
from graph.runtime.strings import has_control_characters
from model import DEVICE_FEATURES
from persistence import Position, PredictionFilter
from persistence.exports import export_batch, version_names

COLUMNS = (
    "id",
    "createdAt",
    "observedAt",
    "deviceId",
    "label",
    "failureProbability",
    "threshold",
    "modelVersion",
    *DEVICE_FEATURES,
)
BATCH_ROWS = 5000  # about 1 MB of CSV: a few milliseconds of database and encoding
LABELS = ("NON_FAILURE", "FAILURE")  # indexed by is_failure (a bool, or 0/1 on SQLite)
MEDIA_TYPE = "text/csv; charset=utf-8"
MAX_NAME = 255  # subjects and version names are stored in at most this many characters
# A server reads exports through a pool of its own (Runtime.exports): this many connections,
# each with SQLite's default page cache (an export reads each page once; a big cache would
# only hold memory), and this many batches read at once.
EXPORT_READERS = 2
EXPORT_SQLITE_CACHE_KIB = 2048


def csv_row(values: Iterable[Any]) -> bytes:
    """One row as the csv module writes it (excel dialect: RFC 4180 quoting, CRLF)."""
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue().encode()


HEADER = csv_row(COLUMNS)


# Values made only of these characters are never quoted, whatever the dialect: most device ids
# and version names. The csv module decides for every other value.
_PLAIN = re.compile(r"[A-Za-z0-9._:/+-]*")


def cell(value: str | None) -> str:
    """One text value as the csv module writes it inside a row: quoted when it needs to be."""
    if not value:  # None and "" are empty (the module quotes "" only as a row's lone field)
        return ""
    if _PLAIN.fullmatch(value):
        return value
    return csv_row([value])[:-2].decode()  # without the row's CRLF


class _Cells(dict[Any, str]):
    """Text values as cells, each put through the csv module once however often it recurs."""

    def __missing__(self, value: str | None) -> str:
        found = self[value] = cell(value)
        return found


class PredictionsCsv:
    """One export: the header, then one chunk per batch of rows, until `next_chunk` is None.

    `next_chunk` waits on the database: a server calls it off the event loop. Only predictions
    made before the export began are in it, so it ends even while predictions keep arriving.
    """

    def __init__(
        self,
        engine: Engine,
        where: PredictionFilter,
        batch_rows: int = BATCH_ROWS,
        now: datetime | None = None,
    ) -> None:
        started = now or datetime.now(UTC)
        until = started if where.created_to is None else min(where.created_to, started)
        self._engine = engine
        self._where = replace(where, created_to=until)
        self._batch_rows = batch_rows
        self._after: Position | None = None
        self._started = False
        self._finished = False
        self._versions: dict[int, str] = {}  # model version id -> its name as a cell
        self.rows = 0

    def next_chunk(self) -> bytes | None:
        """The next chunk of CSV (the first carries the header), or None after the last."""
        if self._finished:
            return None
        batch = export_batch(self._engine, self._where, self._batch_rows, self._after)
        self._after = batch.after
        self._finished = len(batch.rows) < self._batch_rows
        if not batch.rows and self._started:
            return None
        chunk = encode(batch.rows, self._version_cells(batch.rows))
        if not self._started:
            self._started, chunk = True, HEADER + chunk
        self.rows += len(batch.rows)
        return chunk

    def _version_cells(self, rows: Sequence[Sequence[Any]]) -> dict[int, str]:
        """Version names as cells, read again when a row names a version made since."""
        if any(row[7] not in self._versions for row in rows):
            names = version_names(self._engine)
            self._versions = {key: cell(name) for key, name in names.items()}
        return self._versions


def encode(rows: Sequence[Sequence[Any]], versions: Mapping[int, str]) -> bytes:
    """CSV lines of exported rows (persistence.exports.EXPORT_COLUMNS); `versions` are cells."""
    cells = _Cells()  # per batch, so memory stays bounded
    # Ids, times, labels and repr() of floats never hold a comma, quote or line break: only
    # device ids and version names may need quoting, and cell() puts those through the csv
    # module. Writing whole rows through it would cost about twice as much per row. (Two
    # f-strings: one of more than 30 parts would be built through a list and str.join.)
    lines = [
        f"{i},{c},{o},{cells[d]},{LABELS[f]},{p!r},{t!r},{versions[v]},"
        + f"{m1!r},{m2!r},{m3!r},{m4!r},{m5!r},{m6!r},{m7!r},{m9!r}\r\n"
        for i, c, o, d, f, p, t, v, m1, m2, m3, m4, m5, m6, m7, m9 in rows
    ]
    return "".join(lines).encode()


def write_csv(
    engine: Engine,
    where: PredictionFilter,
    write: Callable[[bytes], object],
    batch_rows: int = BATCH_ROWS,
) -> int:
    """Write the export of the predictions `where` matches, chunk by chunk; how many rows."""
    export = PredictionsCsv(engine, where, batch_rows)
    while (chunk := export.next_chunk()) is not None:
        write(chunk)
    return export.rows


# -- values of a filter, from query parameters or command-line options -------------------------

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
EXAMPLE_TIME = "2026-11-29T08:00:00Z"


def parse_time(text: str, name: str) -> datetime:
    """An ISO 8601 time with a UTC offset, parsed as the API's DateTime is; else BAD_USER_INPUT."""
    try:
        moment: datetime = isoparse(text)
    except (ValueError, OverflowError) as error:
        # A '+' in a query string arrives as a space: name the likely cause.
        hint = " (in a URL, write the offset's '+' as %2B)" if " " in text else ""
        message = f"`{name}` is not an ISO 8601 time, e.g. {EXAMPLE_TIME}{hint}"
        raise bad_input(message, name) from error
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise bad_input(f"`{name}` needs a UTC offset (e.g. {EXAMPLE_TIME})", name)
    return moment


def parse_probability(text: str, name: str) -> float:
    """A decimal number in [0, 1]; else BAD_USER_INPUT."""
    value = float(text) if _NUMBER.fullmatch(text) else math.nan
    if not 0.0 <= value <= 1.0:
        raise bad_input(f"`{name}` must be a number from 0 to 1", name)
    return value


def check_text(text: str, name: str, max_length: int) -> str:
    """A string of 1..max_length characters without control characters; else BAD_USER_INPUT."""
    if not 1 <= len(text) <= max_length:
        raise bad_input(f"`{name}` must be 1..{max_length} characters", name)
    if has_control_characters(text):
        raise bad_input(f"`{name}` must not contain control characters", name)
    return text
