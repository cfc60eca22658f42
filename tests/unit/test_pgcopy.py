"""The binary COPY layout is derived from a table's column types, and refuses unknown ones."""

import struct
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from persistence.pgcopy import BinaryCopy


def _table(*columns: sa.Column) -> sa.Table:
    return sa.Table("t", sa.MetaData(), *columns)


def test_strings_go_last_and_fixed_columns_keep_their_order():
    table = _table(
        sa.Column("name", sa.String(10)), sa.Column("id", sa.Uuid), sa.Column("x", sa.Float)
    )
    copy = BinaryCopy(table)
    assert copy.columns == ["id", "x", "name"]
    assert copy.statement() == "COPY t (id, x, name) FROM STDIN (FORMAT BINARY)"


def test_rows_are_encoded_as_postgresql_reads_them():
    table = _table(
        sa.Column("id", sa.Uuid),
        sa.Column("at", sa.DateTime(timezone=True)),
        sa.Column("n", sa.Integer),
        sa.Column("x", sa.Float),
        sa.Column("flag", sa.Boolean),
        sa.Column("name", sa.String(10)),
    )
    ident = uuid.UUID(int=1)
    at = datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC)
    values = {"id": [ident, ident], "at": [at, at], "n": [7, -1], "x": [0.5, -2.0]}
    values |= {"flag": [True, False], "name": ["é", None]}
    encoded = BinaryCopy(table).encode(2, values.__getitem__)
    first = (
        struct.pack("!h", 6)
        + struct.pack("!i", 16) + ident.bytes
        + struct.pack("!iq", 8, 1_000_000)
        + struct.pack("!ii", 4, 7)
        + struct.pack("!id", 8, 0.5)
        + struct.pack("!iB", 1, 1)
        + struct.pack("!i", 2) + "é".encode()
    )  # fmt: skip
    assert encoded.startswith(first)
    assert encoded.endswith(struct.pack("!iB", 1, 0) + struct.pack("!i", -1))


def test_a_column_type_without_a_layout_is_refused_up_front():
    with pytest.raises(TypeError, match=r"t\.doc"):  # JSON has one since migration 0008
        BinaryCopy(_table(sa.Column("doc", sa.LargeBinary)))
