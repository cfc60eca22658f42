"""A plan answers an explanation's path and contributions in one pass when every value is
already in its output form, and item by item otherwise: the two answers, and the errors, are
the same for every value."""

import math
from typing import Any

import orjson
import pytest
from graphql import GraphQLError, parse

from graph.schema import build_schema
from graph.schema.plans import _plain_rows, _value
from model.compiled import CONTRIBUTION_COLUMNS, CheckedRows

SCHEMA = build_schema()._schema
EXPLANATION = SCHEMA.type_map["Explanation"]


def _selection(text: str) -> Any:
    operation = parse(f"{{ x {text} }}").definitions[0]
    return operation.selection_set.selections[0].selection_set  # type: ignore[attr-defined]


def _answer(serialize: Any, values: Any) -> Any:
    try:  # as the answer's JSON: 3 and 3.0 differ there
        return ("ok", orjson.dumps(serialize(values)))
    except (GraphQLError, TypeError) as error:
        return ("error", type(error).__name__, str(error))


STEP = {"feature": "metric4", "threshold": 2.5, "value": 7.0, "goesLeft": False}
CONTRIBUTION = {"feature": "metric1", "value": 3.0, "contribution": -0.25}
BAD = [
    ("value", math.nan), ("value", math.inf), ("contribution", -math.inf), ("value", 3),
    ("value", True), ("goesLeft", 1), ("goesLeft", None), ("feature", None), ("feature", 4),
    ("threshold", "2.5"), ("value", 1e308),
]  # fmt: skip


@pytest.mark.parametrize(
    ("field", "selection", "item"),
    [
        ("path", "{ feature threshold value goesLeft }", STEP),
        ("path", "{ goesLeft step: feature }", STEP),
        ("contributions", "{ feature value contribution }", CONTRIBUTION),
        ("contributions", "{ feature contribution }", CONTRIBUTION),
        ("contributions", "{ contribution feature value }", CONTRIBUTION),
    ],
)
def test_one_pass_answers_as_item_by_item(field: str, selection: str, item: dict) -> None:
    kind = EXPLANATION.fields[field].type  # [Item!]: a list that may be null, of objects
    selected = _selection(selection)
    served = _value(kind, selected, keyed=True)
    item_by_item = _value(kind.of_type, selected, keyed=True)  # one item's serializer
    rows = _plain_rows(kind.of_type, selected)
    assert rows is not None  # these selections are served in one pass

    def slow(values: list) -> list:
        return [item_by_item(v) for v in values]

    cases: list[list[Any]] = [[], [item], [item] * 40, [dict(item, value=1e308)] * 2]
    for key, bad in BAD:
        if key in item:
            cases += [[dict(item, **{key: bad})], [item, dict(item, **{key: bad}), item]]
    cases.append([item, None])  # an item that is not an object
    # items whose keys are not the selection's, in its order: answered with the selection's
    reordered, extra = dict(reversed(item.items())), dict(item, extra="x")
    cases += [[reordered], [item, extra], [{k: v for k, v in item.items() if k != "value"}]]
    for values in cases:
        assert _answer(served, values) == _answer(slow, values), values
    assert rows([item] * 3) == slow([item] * 3)  # the one pass did answer these
    assert rows([dict(item, value=math.nan)]) is None or " value" not in selection
    assert rows([None]) is None


def test_a_selection_with_other_fields_is_served_item_by_item() -> None:
    item = EXPLANATION.fields["path"].type.of_type  # DecisionStep!
    assert _plain_rows(item, _selection("{ feature }")) is not None
    assert _plain_rows(item, _selection("{ feature __typename }")) is None
    assert _plain_rows(item.of_type, _selection("{ feature }")) is None  # items that may be null


def test_ids_are_written_as_str_writes_a_uuid() -> None:
    import uuid

    from graph.schema.plans import _uuid_texts
    from persistence import new_ids

    edges = [uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1), uuid.UUID(int=0xABC << 64)]
    values = [*new_ids(1000), *edges, uuid.uuid4()]
    assert _uuid_texts(values) == [str(v) for v in values]


def test_contributions_checked_when_made_are_their_own_answer() -> None:
    """The model's contributions, checked when made (model.compiled.CheckedRows), are served
    as they are for the selection of exactly their keys and types; any other selection, or rows
    checked for other types, are answered (and checked) as every other list."""
    kind = EXPLANATION.fields["contributions"].type
    made = CheckedRows([CONTRIBUTION, dict(CONTRIBUTION, feature="metric2")], CONTRIBUTION_COLUMNS)
    exact = _value(kind, _selection("{ feature value contribution }"), keyed=True)
    assert exact(made) is made
    for other in (
        "{ feature contribution }",
        "{ contribution feature value }",
        "{ feature v: value contribution }",
    ):
        served = _value(kind, _selection(other), keyed=True)
        assert served(made) is not made
        assert _answer(served, made) == _answer(served, list(made))
    # rows that say they were checked for other types are checked here: NaN is refused
    wrong = CheckedRows([dict(CONTRIBUTION, value=math.nan)], (("feature", str),))
    assert _answer(exact, wrong)[0] == "error"
    assert _answer(exact, wrong) == _answer(exact, list(wrong))
