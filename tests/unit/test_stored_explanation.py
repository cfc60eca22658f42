"""The stored form of an explanation (persistence.types): contributions kept as columns, and
read back as the objects they were made as; anything else kept as it is."""

import pytest

from persistence.types import read_explanation, stored_explanation

MADE = {
    "kind": "CONTRIBUTIONS",
    "score": -1.5,
    "baseValue": -2.0,
    "contributions": [
        {"feature": "metric4", "value": 7.0, "contribution": 0.25},
        {"feature": "metric2_delta_1d", "value": -3.0, "contribution": 0.25},
    ],
    "after": "kept in its place",
}


def test_contributions_are_kept_as_columns_in_the_same_place():
    stored = stored_explanation(MADE)
    assert list(stored) == ["kind", "score", "baseValue", "contributionColumns", "after"]
    assert stored["contributionColumns"] == {
        "feature": ["metric4", "metric2_delta_1d"],
        "value": [7.0, -3.0],
        "contribution": [0.25, 0.25],
    }
    read = read_explanation(stored)
    assert read == MADE and list(read) == list(MADE)
    assert list(read["contributions"][0]) == ["feature", "value", "contribution"]


@pytest.mark.parametrize(
    "given",
    [
        None,
        [1, 2],
        {"kind": "DECISION_PATH", "score": 0.5, "path": [{"feature": "metric1"}]},
        {"contributions": [{"feature": "m", "value": 1.0, "contribution": 0.5, "x": 1}]},
        {"contributions": [{"value": 1.0, "feature": "m", "contribution": 0.5}]},
        {"contributions": "not a list"},
        {"contributions": [], "contributionColumns": "a key the stored form uses"},
    ],
)
def test_anything_else_is_kept_as_it_is(given):
    assert stored_explanation(given) is given


def test_no_contributions_are_empty_columns_and_read_back_as_an_empty_list():
    made = {"kind": "CONTRIBUTIONS", "contributions": []}
    stored = stored_explanation(made)
    assert stored == {
        "kind": "CONTRIBUTIONS",
        "contributionColumns": {"feature": [], "value": [], "contribution": []},
    }
    assert read_explanation(stored) == made


def test_objects_stored_before_are_read_as_they_are():
    assert read_explanation(MADE) is MADE
    assert read_explanation(None) is None
