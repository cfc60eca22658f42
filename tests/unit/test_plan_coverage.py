"""The compiled plans serve every field of the types a predict answer can select."""

from graphql import extend_schema, parse

from graph.schema import build_schema
from graph.schema.plans import unserved_fields


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
            "extend type DecisionStep { depth: Int }"
        ),
    )
    missing = unserved_fields(extended)
    assert "Prediction.rationale" in missing and "Metrics.metric8" in missing
    assert "TrainingData.owner" in missing  # no strawberry definition: not a plain attribute
    assert "DecisionStep.depth" in missing  # under Explanation, served from the stored JSON
