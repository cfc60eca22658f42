"""The compiled plans serve every field of the types a predict answer can select."""

import pytest
from graphql import extend_schema, parse

from graph.schema import build_schema
from graph.schema.plans import COLUMNS, REQUEST_ID, SOURCES, Leaf, unserved_fields


def test_every_field_a_predict_answer_can_select_is_served_by_the_plans():
    missing = unserved_fields(build_schema()._schema)
    assert missing == [], (
        f"graph/schema/plans.py cannot serve {missing}: give each a source in SOURCES (or a "
        "metric column / a plain attribute), or every predict document selecting it is slower"
    )


def test_a_field_added_without_a_source_is_reported():
    schema = build_schema()._schema
    extended = extend_schema(
        schema,
        parse(
            "extend type Prediction { rationale: String } "
            "extend type Metrics { metric8: Float } "
            "extend type TrainingData { owner: String } "
            "extend type DecisionStep { depth: Int } "
            "extend type PredictColumnsPayload { rationale: [String] } "
            "extend type MetricsColumns { metric8: [Float!] }"
        ),
    )
    missing = unserved_fields(extended)
    assert "Prediction.rationale" in missing and "Metrics.metric8" in missing
    assert "PredictColumnsPayload.rationale" in missing and "MetricsColumns.metric8" in missing
    assert "TrainingData.owner" in missing  # no strawberry definition: not a plain attribute
    assert "DecisionStep.depth" in missing  # under Explanation, served from the stored JSON


def test_the_columns_payload_lists_every_field_of_prediction():
    """predictColumns answers what predictBatch answers: each field of Prediction is a column
    (or a value every row shares) of PredictColumnsPayload, and its input takes every field of
    PredictInput as a list."""
    from graphql import GraphQLNonNull

    schema = build_schema()._schema
    prediction, payload = schema.type_map["Prediction"], schema.type_map["PredictColumnsPayload"]
    assert sorted(COLUMNS.values()) == sorted(prediction.fields)
    assert sorted([*COLUMNS, REQUEST_ID]) == sorted(payload.fields)
    for column, name in COLUMNS.items():  # the same type, listed unless every row shares it
        one, listed = prediction.fields[name].type, payload.fields[column].type
        source = SOURCES[name]
        if name == "input":
            assert str(listed) == "MetricsColumns!"
        elif source == "registry" or (isinstance(source, Leaf) and source.shared):
            assert str(listed) == str(one), column
        else:
            assert str(listed) == f"[{one}]!", column
    metrics, columns = schema.type_map["Metrics"], schema.type_map["MetricsColumns"]
    assert list(columns.fields) == list(metrics.fields)
    assert all(str(f.type) == "[Float!]!" for f in columns.fields.values())
    rows, lists = schema.type_map["PredictInput"], schema.type_map["PredictColumnsInput"]
    assert list(lists.fields) == list(rows.fields)
    for name, field in rows.fields.items():
        kind = lists.fields[name].type
        if isinstance(field.type, GraphQLNonNull):
            assert str(kind) == f"[{field.type}]!", name
        else:
            assert str(kind) == f"[{field.type}]" and lists.fields[name].default_value is None


def test_plan_leaves_give_what_the_scalars_serializers_give():
    from graphql import (
        GraphQLBoolean,
        GraphQLError,
        GraphQLFloat,
        GraphQLInt,
        GraphQLNonNull,
        GraphQLString,
    )

    from graph.schema.plans import _value

    cases = [(GraphQLFloat, [1.5, 2, -0.0, 5e-324, "1.5"]), (GraphQLString, ["a", "", "é"]),
             (GraphQLBoolean, [True, False]), (GraphQLInt, [3, 2.0])]  # fmt: skip
    for scalar, values in cases:
        for kind in (scalar, GraphQLNonNull(scalar)):
            leaf = _value(kind, None)
            for value in values:
                served, expected = leaf(value), scalar.serialize(value)
                assert served == expected and type(served) is type(expected)
    for bad in (float("nan"), float("inf")):  # refused as the serializer refuses them
        with pytest.raises(GraphQLError):
            _value(GraphQLFloat, None)(bad)
    assert _value(GraphQLFloat, None)(None) is None
    with pytest.raises(TypeError):
        _value(GraphQLNonNull(GraphQLFloat), None)(None)
