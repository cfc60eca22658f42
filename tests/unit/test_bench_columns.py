"""The bench's predictColumns rows send predictBatch's rows as columns, and bring the predictBatch
row of their database into the run they are compared in."""

import json

from bench import payloads
from bench.contenders import COLUMNS_VERSUS_ROWS, select
from graph.schema import build_schema


def test_columns_bodies_carry_the_batch_bodies_rows():
    batches = [json.loads(body) for body in payloads.batch_bodies(2, 50)]
    columns = [json.loads(body) for body in payloads.columns_bodies(2, 50)]
    for batch, lists in zip(batches, columns, strict=True):
        rows = batch["variables"]["inputs"]
        sent = lists["variables"]["input"]
        assert set(sent) == set(rows[0]) and all(len(v) == 50 for v in sent.values())
        assert [{name: sent[name][i] for name in sent} for i in range(50)] == rows
    assert columns[0]["variables"] != columns[1]["variables"]  # variants differ


def test_the_documents_fit_the_schema():
    from graphql import parse, validate

    schema = build_schema()._schema
    for document in (payloads.BATCH_DOCUMENT, payloads.COLUMNS_DOCUMENT):
        assert validate(schema, parse(document)) == []


def test_a_columns_row_brings_its_predict_batch_row_and_the_reference():
    for columns, rows in COLUMNS_VERSUS_ROWS.items():
        assert {plan.key for plan in select([columns])} == {"reference", columns, rows}
    keys = {plan.key for plan in select(["batch"])}
    assert keys == {"reference", *COLUMNS_VERSUS_ROWS, *COLUMNS_VERSUS_ROWS.values()}
    assert {plan.kind for plan in select(["batch-columns"])} == {"reference", "batch", "columns"}
