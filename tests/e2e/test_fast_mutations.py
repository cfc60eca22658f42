"""The fast predict resolvers answer exactly as strawberry's own resolvers would.

(Compiled plans, which answer most predict documents before either, have tests/e2e/test_plans.py.)
"""

from support import ORIGINAL_EXAMPLE, gql

from graph.schema import build_schema

PREDICT = """mutation P($i: PredictInput!) {
  predict(input: $i) { label failureProbability threshold deviceId input { metric1 metric9 } }
}"""
BATCH = "mutation B($rows: [PredictInput!]!) { predictBatch(inputs: $rows) { label failureProbability deviceId } }"
CASES = [
    (PREDICT, {"i": {**ORIGINAL_EXAMPLE, "deviceId": "D-1"}}),
    (PREDICT, {"i": {**ORIGINAL_EXAMPLE, "metric4": 900, "metric2": 100000}}),
    (PREDICT, {"i": {**ORIGINAL_EXAMPLE, "metric3": -1}}),
    (BATCH, {"rows": [ORIGINAL_EXAMPLE, {**ORIGINAL_EXAMPLE, "metric7": 80, "deviceId": "x"}]}),
    (BATCH, {"rows": []}),
    (BATCH, {"rows": [{**ORIGINAL_EXAMPLE, "deviceId": "\x07"}]}),
]


def _strip(body: dict) -> dict:
    for error in body.get("errors") or []:
        error["extensions"].pop("requestId")
    return body


def test_fast_and_strawberry_resolvers_agree(client, auth_headers):
    client.app.state.services.plans.enabled = False  # both sides through the executor
    fast = [_strip(gql(client, query, variables, auth_headers)) for query, variables in CASES]
    client.app.state.services.schema = build_schema(fast_mutations=False)
    plain = [_strip(gql(client, query, variables, auth_headers)) for query, variables in CASES]
    assert fast == plain
    assert any("errors" in body for body in fast) and any("errors" not in body for body in fast)


def test_fast_resolvers_keep_the_permission(client, make_token):
    from auth import Scope

    headers = {"Authorization": f"Bearer {make_token(Scope.PREDICTIONS_READ)}"}
    for query, variables in CASES[:1] + CASES[3:4]:
        body = gql(client, query, variables, headers)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
