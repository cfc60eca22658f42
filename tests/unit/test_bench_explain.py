"""The bench's `predict` + `explanation` row: what it sends, and what it is compared with."""

import json
from pathlib import Path

from bench import payloads
from bench.contenders import PLANS, Contender, select
from bench.stack import FailcastStack
from graph.schema import build_schema


def _contender(key: str) -> Contender:
    (plan,) = [plan for plan in PLANS if plan.key == key]
    stack = FailcastStack(key, Path("."), "sqlite://", {}, token="t")
    return Contender(plan, Path("."), 1000, stack=stack)


def test_explain_brings_plain_predict_on_the_same_database_and_the_reference():
    assert {plan.key for plan in select(["explain"])} == {"reference", "sqlite", "sqlite-explain"}


def test_the_explained_row_selects_explanation_and_the_plain_one_does_not():
    explained = _contender("sqlite-explain").request()
    plain = _contender("sqlite").request()
    queries = [json.loads(body)["query"] for body in explained.bodies]
    assert all("explanation" in query for query in queries)
    assert all("explanation" not in json.loads(body)["query"] for body in plain.bodies)
    # the same rows, so that the two rows differ by the explanation alone
    variables = [json.loads(body)["variables"] for body in explained.bodies]
    assert variables == [json.loads(body)["variables"] for body in plain.bodies]


def test_the_tail_run_measures_plain_predict_only():
    assert _contender("sqlite").tail_measured
    assert not _contender("sqlite-explain").tail_measured


def test_the_explained_document_fits_the_schema():
    from graphql import parse, validate

    schema = build_schema()._schema
    assert validate(schema, parse(payloads.EXPLAINED_PREDICT_DOCUMENT)) == []
