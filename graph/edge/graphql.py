"""GET and POST /graphql: GraphQL over HTTP, on the one executor of the app.

Written against the executor rather than strawberry's generic view so that every refusal
(method, content type, body, JSON, token) answers with a stable code, the caller is authenticated
once for the audit, and the response is encoded with orjson and bounded in size. Requests
without a valid token are refused before their query is even read: every operation needs one.
"""

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from graph.edge.audit import request_state
from graph.edge.graphiql import GraphiQL
from graph.edge.idempotency import Claim, IdempotencyGate
from graph.edge.responses import error_headers, read_json_body
from graph.errors import (
    MISSING_TOKEN,
    ErrorCode,
    FailcastError,
    codes_of,
    error_dict,
    graphql_error_dict,
    graphql_status,
)
from graph.runtime import Runtime
from graph.runtime.audit import RequestAudit
from graph.schema.context import GraphContext
from graph.schema.execution import Executed, GraphQLExecutor, OperationRequest

ALLOWED_METHODS = ("GET", "POST")


class GraphQLEndpoint:
    """The /graphql route of one application."""

    def __init__(
        self,
        runtime: Runtime,
        executor: GraphQLExecutor,
        idempotency: IdempotencyGate,
        graphiql: GraphiQL | None = None,
    ) -> None:
        self.runtime = runtime
        self.executor = executor
        self.idempotency = idempotency
        self.settings = runtime.settings
        self.graphiql = graphiql  # None: GET /graphql never serves the page

    async def handle(self, request: Request) -> Response:
        """Execute one GraphQL operation over HTTP."""
        audit, caller = request_state(request.scope)
        if self.graphiql is not None and request.method == "GET" and _wants_page(request):
            return self.graphiql.page_response()
        claim: Claim | None = None
        try:
            if request.method not in ALLOWED_METHODS:
                raise FailcastError(ErrorCode.METHOD_NOT_ALLOWED, "use GET or POST")
            if caller.principal is None:
                raise FailcastError(ErrorCode.UNAUTHENTICATED, caller.refusal or MISSING_TOKEN)
            operation, raw = await self._operation(request)
            if request.method == "POST":  # keys matter for writes, and GET never writes
                entered = await self.idempotency.enter(request, audit, caller.principal, raw)
                if isinstance(entered, Response):
                    return entered  # the stored answer of the first request with this key
                claim = entered
            context = GraphContext(self.runtime, audit, caller.principal, self.executor.cursors)
            allow_mutations = request.method == "POST"
            executed = await self.executor.execute(operation, context, allow_mutations)
            response = self._answer(executed, audit)
        except FailcastError as error:
            response = self._refusal(error, audit)
        if claim is not None:
            claim.remember(audit, response)
        return response

    async def _operation(self, request: Request) -> tuple[OperationRequest, bytes]:
        raw = b""
        if request.method == "GET":
            data: Any = dict(request.query_params)
            if "variables" in data:
                try:
                    data["variables"] = orjson.loads(data["variables"])
                except orjson.JSONDecodeError as error:
                    raise _bad_request("`variables` is not valid JSON") from error
        else:
            settings = self.settings
            body = await read_json_body(
                request, settings.max_body_bytes, settings.body_timeout_seconds
            )
            data, raw = body.data, body.raw
        if not isinstance(data, dict):
            raise _bad_request("the body must be a JSON object")
        query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
        if not isinstance(query, str) or not query.strip():
            raise _bad_request("`query` must be a non-empty string")
        if variables is not None and not isinstance(variables, dict):
            raise _bad_request("`variables` must be an object")
        if name is not None and not isinstance(name, str):
            raise _bad_request("`operationName` must be a string")
        return OperationRequest(query, variables, name), raw

    def _refusal(self, error: FailcastError, audit: RequestAudit) -> Response:
        payload: dict[str, Any] = {"data": None, "errors": [error_dict(error, audit.id)]}
        if "cost" in error.extensions:
            payload["extensions"] = {"cost": error.extensions["cost"]}
        return self._respond(payload, audit, [error])

    def _answer(self, executed: Executed, audit: RequestAudit) -> Response:
        result, production = executed.result, self.settings.production
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [graphql_error_dict(e, audit.id, production) for e in result.errors]
        if executed.cost is not None:
            maximum = self.executor.limits.max_cost
            payload["extensions"] = {"cost": {"requested": executed.cost, "maximum": maximum}}
        return self._respond(payload, audit, [])

    def _respond(
        self, payload: dict[str, Any], audit: RequestAudit, errors: list[FailcastError]
    ) -> Response:
        body = orjson.dumps(payload)
        if len(body) > self.settings.max_response_bytes:
            limit = self.settings.max_response_bytes
            message = (
                f"the answer would take {len(body)} bytes (at most {limit}); nothing was stored"
            )
            error = FailcastError(ErrorCode.RESPONSE_TOO_LARGE, message)
            payload, errors = {"data": None, "errors": [error_dict(error, audit.id)]}, [error]
            body = orjson.dumps(payload)
        codes = codes_of(payload)
        audit.answered_with(codes)
        headers = _headers(payload, errors)
        return Response(body, graphql_status(codes), headers, media_type="application/json")


def _wants_page(request: Request) -> bool:
    """A browser opening /graphql, not a GET operation."""
    browser = "text/html" in request.headers.get("accept", "")
    return browser and "query" not in request.query_params


def _bad_request(message: str) -> FailcastError:
    return FailcastError(ErrorCode.BAD_REQUEST, message)


def _headers(payload: dict[str, Any], errors: list[FailcastError]) -> dict[str, str]:
    """Retry-After (the longest any error asks for), WWW-Authenticate, Allow."""
    headers: dict[str, str] = {}
    for error in errors:
        headers.update(error_headers(error))
    waits = [
        int(e["extensions"].get("retryAfter", 1))
        for e in payload.get("errors") or ()
        if e["extensions"]["code"] in ("RATE_LIMITED", "SERVICE_UNAVAILABLE", "MODEL_UNAVAILABLE")
    ]
    if waits:
        headers["retry-after"] = str(max(waits))
    if any(e.code is ErrorCode.METHOD_NOT_ALLOWED for e in errors):
        headers["allow"] = ", ".join(ALLOWED_METHODS)
    return headers
