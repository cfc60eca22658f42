"""POST/GET /graphql: a lean GraphQL-over-HTTP endpoint on the strawberry schema.

Written against `schema.execute` rather than strawberry's generic view so that every refusal
(content type, body, JSON, method) answers with a stable code, the caller is authenticated once
for the audit, and the response is encoded with orjson.
"""

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.exceptions import MissingQueryError
from strawberry.http.ides import get_graphql_ide_html
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from auth import AuthError
from graph.audit import RequestAudit, request_audit
from graph.context import GraphContext
from graph.errors import error_payload, format_error
from graph.limits import LimitExceeded, Limits, check_document, query_cost

JSON_TYPES = ("application/json", "application/graphql-response+json")
MAX_BODY_BYTES = 1024 * 1024


class RequestRefused(Exception):
    """The HTTP request cannot carry a GraphQL operation."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def json_response(payload: Any, status: int = 200) -> Response:
    """An application/json response encoded with orjson."""
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def refusal(audit: RequestAudit, error: RequestRefused) -> Response:
    """A GraphQL-shaped error response for a request refused before execution."""
    audit.add_codes([error.code])
    return json_response(error_payload(error.code, str(error), audit.id), error.status)


async def _read_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES:
        raise RequestRefused(415, "UNSUPPORTED_MEDIA_TYPE", "send application/json")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise RequestRefused(413, "REQUEST_TOO_LARGE", "the body exceeds 1 MiB")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestRefused(400, "BAD_REQUEST", "the body is not valid JSON") from error
    if not isinstance(data, dict):
        raise RequestRefused(400, "BAD_REQUEST", "the body must be a JSON object")
    return data


def _get_params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    if "variables" in params:
        try:
            params["variables"] = orjson.loads(params["variables"])
        except orjson.JSONDecodeError as error:
            raise RequestRefused(400, "BAD_REQUEST", "`variables` is not valid JSON") from error
    return params


def _operation(data: dict[str, Any]) -> tuple[str, dict[str, Any] | None, str | None]:
    query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
    if not isinstance(query, str) or not query.strip():
        raise RequestRefused(400, "BAD_REQUEST", "`query` must be a non-empty string")
    if variables is not None and not isinstance(variables, dict):
        raise RequestRefused(400, "BAD_REQUEST", "`variables` must be an object")
    if name is not None and not isinstance(name, str):
        raise RequestRefused(400, "BAD_REQUEST", "`operationName` must be a string")
    return query, variables, name


def authenticate(request: Request, audit: RequestAudit) -> tuple[Any, AuthError | None]:
    """The caller's principal (or the reason there is none), noted in the audit."""
    services = request.app.state.services
    try:
        principal = services.verifier.authenticate(request.headers.get("authorization"))
    except AuthError as error:
        return None, error
    if principal is not None:
        audit.subject = principal.subject
    return principal, None


def _wants_graphiql(request: Request, enabled: bool) -> bool:
    browser = "text/html" in request.headers.get("accept", "")
    return enabled and browser and request.method == "GET" and "query" not in request.query_params


async def graphql_endpoint(request: Request) -> Response:
    """Execute one GraphQL operation over HTTP."""
    audit = request_audit(request.scope)
    assert audit is not None, "the audit middleware must wrap /graphql"
    services = request.app.state.services
    if _wants_graphiql(request, services.settings.graphiql):
        return HTMLResponse(get_graphql_ide_html(graphql_ide="graphiql"))
    try:
        data = _get_params(request) if request.method == "GET" else await _read_body(request)
        query, variables, name = _operation(data)
    except RequestRefused as error:
        return refusal(audit, error)
    principal, auth_error = authenticate(request, audit)
    limits = services.limits
    try:
        cost = _checked_cost(query, name, variables, limits)
    except LimitExceeded as error:
        audit.add_codes([error.code])
        refused = error_payload(error.code, str(error), audit.id)
        refused["extensions"] = {"cost": {"requested": error.cost, "maximum": limits.max_cost}}
        return json_response(refused)
    context = GraphContext(services, audit, principal, auth_error)
    try:
        result = await _execute(services, context, query, variables, name, request.method)
    except RequestRefused as error:
        return refusal(audit, error)
    except TimeoutError:
        audit.predictions.clear()  # the caller gets no result, so none is stored
        message = f"the operation took longer than {services.settings.request_timeout_seconds} s"
        audit.add_codes(["TIMEOUT"])
        return json_response(error_payload("TIMEOUT", message, audit.id))
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        hide = services.settings.production
        payload["errors"] = [format_error(e, audit.id, hide) for e in result.errors]
        audit.add_codes([e["extensions"]["code"] for e in payload["errors"]])
    payload["extensions"] = {"cost": {"requested": cost, "maximum": limits.max_cost}}
    return _with_retry_after(json_response(payload), payload.get("errors") or [])


def _with_retry_after(response: Response, errors: list[dict[str, Any]]) -> Response:
    waits = [
        e["extensions"].get("retryAfter", 1)
        for e in errors
        if e["extensions"]["code"] == "RATE_LIMITED"
    ]
    if waits:
        response.status_code = 429
        response.headers["retry-after"] = str(max(waits))
    return response


def _checked_cost(query: str, name: str | None, variables: Any, limits: Limits) -> int:
    document = check_document(query, limits)
    cost = query_cost(document, name, variables) if document is not None else 0
    if cost > limits.max_cost:
        message = f"query cost {cost} exceeds {limits.max_cost}"
        raise LimitExceeded("QUERY_TOO_COMPLEX", message, cost)
    return cost


async def _execute(
    services: Any, context: GraphContext, query: str, variables: Any, name: str | None, method: str
) -> Any:
    allowed = {OperationType.QUERY}
    if method != "GET":
        allowed.add(OperationType.MUTATION)
        plan = services.plans.get(query, name)
        result = None if plan is None else plan.execute(context, query, variables)
        if result is not None:
            return result
    try:
        return await asyncio.wait_for(
            services.schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=name,
                allowed_operation_types=allowed,
            ),
            timeout=services.settings.request_timeout_seconds,
        )
    except InvalidOperationTypeError as error:
        raise RequestRefused(405, "METHOD_NOT_ALLOWED", "mutations need POST") from error
    except MissingQueryError as error:
        raise RequestRefused(400, "BAD_REQUEST", "no GraphQL query found") from error
    except CannotGetOperationTypeError as error:
        message = "operationName does not name an operation of the document"
        raise RequestRefused(400, "BAD_REQUEST", message) from error
