"""Property-based fuzzing of the GraphQL inputs: no 500, no unmasked error, whatever is sent."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ORIGINAL_EXAMPLE

PREDICT = "mutation P($i: PredictInput!) { predict(input: $i) { id label } }"
BATCH = "mutation B($rows: [PredictInput!]!) { predictBatch(inputs: $rows) { id } }"
PAGE = "query Q($first: Int, $after: String) { predictions(first: $first, after: $after) { nodes { id } } }"
ALLOWED_STATUS = {200, 400, 405, 413, 415, 429}
FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
metric_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), scalars)
inputs = st.fixed_dictionaries(
    {name: metric_values for name in ORIGINAL_EXAMPLE},
    optional={
        "deviceId": st.one_of(st.none(), st.text(max_size=100), st.integers()),
        "extra": json_values,
    },
)


def _send(client, headers, query: str, variables) -> None:
    body = json.dumps({"query": query, "variables": variables})  # NaN/Infinity become bare literals
    response = client.post(
        "/graphql", content=body, headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code in ALLOWED_STATUS, response.text
    payload = response.json()
    codes = [e["extensions"]["code"] for e in payload.get("errors") or []]
    assert "INTERNAL_SERVER_ERROR" not in codes, payload
    assert "Traceback" not in response.text


@FUZZ
@given(variables=st.fixed_dictionaries({"i": inputs}))
def test_fuzzed_predict_inputs(client, auth_headers, variables):
    _send(client, auth_headers, PREDICT, variables)


@FUZZ
@given(rows=st.lists(inputs, max_size=5))
def test_fuzzed_batches(client, auth_headers, rows):
    _send(client, auth_headers, BATCH, {"rows": rows})


@FUZZ
@given(first=json_values, after=json_values)
def test_fuzzed_pagination_arguments(client, auth_headers, first, after):
    _send(client, auth_headers, PAGE, {"first": first, "after": after})


@FUZZ
@given(garbage=st.text(max_size=200), cut=st.integers(min_value=0, max_value=len(PREDICT)))
def test_fuzzed_documents(client, auth_headers, garbage, cut):
    _send(client, auth_headers, PREDICT[:cut] + garbage, {"i": ORIGINAL_EXAMPLE})
