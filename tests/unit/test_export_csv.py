"""The CSV of an export, without a database: names held to the schema, quoting held to the csv module."""

import csv
import io
import uuid

from hypothesis import given
from hypothesis import strategies as st

from graph.edge.export import PARAMETERS
from graph.runtime.export import COLUMNS, HEADER, cell, csv_row, encode
from graph.schema import build_schema
from persistence.exports import EXPORT_COLUMNS

AWKWARD = ["a,b", 'say "hi"', "line\nbreak", "cr\rreturn", "crlf\r\nend", "é-ü-日本", " lead",
           "trail ", "=1+2", "NA", "null", "007", '"', ",", "\t", "", None]  # fmt: skip


def _type(name: str):
    return build_schema()._schema.type_map[name]


def test_columns_are_named_like_the_graphql_prediction_and_its_metrics():
    # Not columns: the telemetry is (as metric columns), who asked is not, and neither are the
    # explanation (an object, computed for rows that have none) and the warnings (a list).
    left_out = ("input", "subject", "explanation", "warnings")
    prediction = [name for name in _type("Prediction").fields if name not in left_out]
    assert list(COLUMNS) == prediction + list(_type("Metrics").fields)
    assert len(COLUMNS) == len(EXPORT_COLUMNS)
    assert "metric8" not in COLUMNS


def test_query_parameters_are_named_like_the_graphql_prediction_filter():
    assert list(PARAMETERS) == list(_type("PredictionFilter").fields)


def test_the_header_is_the_csv_modules_row():
    assert b",".join(name.encode() for name in COLUMNS) + b"\r\n" == HEADER


@given(st.one_of(st.none(), st.text()))
def test_a_cell_is_what_the_csv_module_writes_inside_a_row(value):
    assert csv_row(["x", value, "y"]) == f"x,{cell(value)},y\r\n".encode()


def _row(n: int, device: str | None, probability: float) -> tuple:
    ident = str(uuid.UUID(int=n))
    times = ("2026-11-29T08:00:00+00:00", "2026-11-29T07:59:59.000001+00:00")
    metrics = (215630672.0, 56.0, 0.0, 52.0, 6.0, 407438.0, 1e-05, 3.4e38)
    return (ident, *times, device, n % 2, probability, 0.5, 1 + n % 2, *metrics)


def test_rows_are_what_the_csv_module_writes_with_repr_floats():
    probabilities = [0.1, 1e-05, 0.30000000000000004, 1.0, 0.0, -0.0, 1e16, 5e-324]
    rows = [_row(n, device, probabilities[n % len(probabilities)])
            for n, device in enumerate(AWKWARD)]  # fmt: skip
    versions = {1: "2026.11.26-1", 2: 'odd, "version"'}
    written = encode(rows, {key: cell(name) for key, name in versions.items()})
    reference = io.StringIO()
    writer = csv.writer(reference)
    for i, c, o, d, f, p, t, v, *metrics in rows:
        label = "FAILURE" if f else "NON_FAILURE"
        writer.writerow([i, c, o, d, label, repr(p), repr(t), versions[v], *map(repr, metrics)])
    assert written == reference.getvalue().encode()
    read = list(csv.reader(io.StringIO(written.decode(), newline="")))
    assert [r[3] for r in read] == [d or "" for d in AWKWARD]
    assert [float(r[5]) for r in read] == [row[5] for row in rows]
