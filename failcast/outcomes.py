"""`failcast outcomes import FILE`: outcomes from a file in the public dataset's format.

The file is the public device-failure CSV (plain or gzipped, detected by its magic bytes, read
as latin-1 like training's loader): a header naming at least `date`, `device` and `failure`
(`metric1`..`metric9` and any other column are ignored), then one row per device and day. Each
row becomes the outcome of that device on that day, observed at the date's 00:00 UTC, so it
labels the device's predictions observed in (the day before, the date's 00:00]: a prediction
made from a row's telemetry with observedAt at that date gets that row's label.

The file is streamed (never held in memory) and written in one transaction: a bad row anywhere
stores nothing and names its line. Importing the same file again replaces each outcome with
itself (one outcome per device and day).
"""

import csv
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import IO

from graph.runtime.usecases import MAX_DEVICE_ID
from persistence.outcomes import OutcomeRecord

COLUMNS = ("date", "device", "failure")
BATCH = 5000  # outcomes per upsert round
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = "\u00ef\u00bb\u00bf"  # a UTF-8 byte-order mark, read as latin-1
SUBJECT = "failcast outcomes import"


class OutcomeFileError(Exception):
    """The file cannot be imported; the message names the line."""


@dataclass
class ImportSummary:
    """What a file held."""

    rows: int = 0
    failed: int = 0
    devices: set[str] = field(default_factory=set)
    first: date | None = None
    last: date | None = None

    def count(self, record: OutcomeRecord) -> None:
        """Note one outcome read."""
        self.rows += 1
        self.failed += record.failed
        self.devices.add(record.device_id)
        day = record.day
        self.first = day if self.first is None else min(self.first, day)
        self.last = day if self.last is None else max(self.last, day)


def _open(path: Path) -> IO[str]:
    try:
        with path.open("rb") as peek:
            gzipped = peek.read(2) == _GZIP_MAGIC
        raw = gzip.open(path, "rb") if gzipped else path.open("rb")  # noqa: SIM115 (returned)
    except OSError as error:
        raise OutcomeFileError(f"cannot read {path}: {error.strerror}") from error
    return io.TextIOWrapper(raw, encoding="latin-1", newline="")


def read_outcomes(path: Path, recorded_at: datetime) -> Iterator[OutcomeRecord]:
    """The file's outcomes, row by row; OutcomeFileError at the first bad row."""
    with _open(path) as text:
        reader = csv.reader(text)
        try:
            header = next(reader, None)
            if not header:
                raise OutcomeFileError(f"{path.name}: empty file (no header)")
            names = [name.strip().lower() for name in header]
            names[0] = names[0].removeprefix(_BOM)
            missing = [name for name in COLUMNS if name not in names]
            if missing:
                raise OutcomeFileError(f"{path.name}: missing column(s): {', '.join(missing)}")
            at = [names.index(name) for name in COLUMNS]
            for row in reader:
                if row:
                    yield _outcome(row, at, len(names), reader.line_num, recorded_at)
        except (OSError, EOFError, csv.Error) as error:  # corrupt gzip, broken quoting
            raise OutcomeFileError(f"{path.name}: unreadable: {error}") from error


def _outcome(
    row: list[str], at: list[int], width: int, line: int, recorded_at: datetime
) -> OutcomeRecord:
    if len(row) != width:
        raise OutcomeFileError(f"line {line}: expected {width} fields, found {len(row)}")
    day_text, device, failure = (row[i].strip() for i in at)
    if not device or len(device) > MAX_DEVICE_ID or not device.isprintable():
        raise OutcomeFileError(f"line {line}: device must be 1..{MAX_DEVICE_ID} printable chars")
    if failure not in ("0", "1"):
        raise OutcomeFileError(f"line {line}: failure {failure!r} must be 0 or 1")
    try:
        if len(day_text) != 10:
            raise ValueError(day_text)
        day = date.fromisoformat(day_text)
    except ValueError:
        raise OutcomeFileError(f"line {line}: date {day_text!r} is not YYYY-MM-DD") from None
    observed = datetime.combine(day, time(0), tzinfo=UTC)
    return OutcomeRecord(device, failure == "1", observed, recorded_at, SUBJECT)
