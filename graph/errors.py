"""The one error vocabulary: every `extensions.code`, its HTTP status, and how errors are shown.

Every failure a client can see is a `FailcastError` carrying an `ErrorCode`, a message that is
safe to show, and optional extensions (`field`, `retryAfter`, `cost`, `stored`). Errors of the
other packages (auth, model, persistence) become one here, in `public_error`; anything else is
masked as INTERNAL_SERVER_ERROR and logged with the request id. GraphQL errors and the bodies of
the REST and transport routes are both rendered by this module, so they read alike.
"""

import logging
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError

from auth import AuthError
from model import ModelError
from persistence import Conflict, NotFound, PersistenceError

log = logging.getLogger("failcast.errors")


class Outcome(StrEnum):
    """How the audit trail classifies a request."""

    OK = "ok"
    DENIED = "denied"  # no valid token, no scope, or over a rate limit
    INVALID = "invalid"  # the request itself is wrong; retrying it unchanged fails again
    ERROR = "error"  # the service failed; a retry may succeed


class ErrorCode(StrEnum):
    """Every `extensions.code` the service answers with."""

    BAD_REQUEST = "BAD_REQUEST"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    QUERY_TOO_DEEP = "QUERY_TOO_DEEP"
    TOO_MANY_ALIASES = "TOO_MANY_ALIASES"
    TOO_MANY_TOKENS = "TOO_MANY_TOKENS"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    RESPONSE_TOO_LARGE = "RESPONSE_TOO_LARGE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    CLIENT_CLOSED_REQUEST = "CLIENT_CLOSED_REQUEST"
    TIMEOUT = "TIMEOUT"
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


@dataclass(frozen=True)
class CodeSpec:
    """What a code means for the transport and for the audit trail."""

    status: int  # the HTTP status of an answer that is this error alone (REST, refusals)
    outcome: Outcome
    meaning: str  # one line for the README's table
    graphql_status: int = 200  # the HTTP status of a GraphQL answer carrying it


_C = ErrorCode
SPECS: dict[ErrorCode, CodeSpec] = {
    _C.BAD_REQUEST: CodeSpec(
        400, Outcome.INVALID, "the HTTP request carries no GraphQL request", 400
    ),
    _C.BAD_USER_INPUT: CodeSpec(
        400, Outcome.INVALID, "an argument or variable is invalid; `extensions.field` names it"
    ),
    _C.GRAPHQL_PARSE_FAILED: CodeSpec(400, Outcome.INVALID, "the document is not GraphQL"),
    _C.GRAPHQL_VALIDATION_FAILED: CodeSpec(
        400, Outcome.INVALID, "the document does not fit the schema"
    ),
    _C.QUERY_TOO_DEEP: CodeSpec(400, Outcome.INVALID, "selections nest deeper than the limit"),
    _C.TOO_MANY_ALIASES: CodeSpec(
        400, Outcome.INVALID, "more aliases than the limit, fragments expanded"
    ),
    _C.TOO_MANY_TOKENS: CodeSpec(400, Outcome.INVALID, "more tokens or comments than the limit"),
    _C.QUERY_TOO_COMPLEX: CodeSpec(
        400, Outcome.INVALID, "over the cost, field, spread or repeat limits, or too slow to check"
    ),
    _C.RESPONSE_TOO_LARGE: CodeSpec(
        400, Outcome.INVALID, "the answer would exceed its size limit; nothing was stored"
    ),
    _C.UNAUTHENTICATED: CodeSpec(
        401, Outcome.DENIED, "no valid bearer token (`WWW-Authenticate` says why)", 401
    ),
    _C.FORBIDDEN: CodeSpec(403, Outcome.DENIED, "the token lacks the scope"),
    _C.RATE_LIMITED: CodeSpec(
        429, Outcome.DENIED, "over a rate limit; retry after `Retry-After` seconds", 429
    ),
    _C.NOT_FOUND: CodeSpec(404, Outcome.INVALID, "no such route or record"),
    _C.CONFLICT: CodeSpec(409, Outcome.INVALID, "the write conflicts with stored data"),
    _C.IDEMPOTENCY_KEY_REUSED: CodeSpec(
        422, Outcome.INVALID, "the Idempotency-Key was used with another request body", 422
    ),
    _C.IDEMPOTENCY_KEY_IN_USE: CodeSpec(
        409,
        Outcome.DENIED,
        "a request with this Idempotency-Key is still running; retry after `Retry-After`",
        409,
    ),
    _C.METHOD_NOT_ALLOWED: CodeSpec(
        405, Outcome.INVALID, "a method the route does not take (mutations need POST)", 405
    ),
    _C.REQUEST_TIMEOUT: CodeSpec(
        408, Outcome.INVALID, "the request's headers or body arrived too slowly", 408
    ),
    _C.REQUEST_TOO_LARGE: CodeSpec(
        413, Outcome.INVALID, "the body or the query text is over its size limit", 413
    ),
    _C.UNSUPPORTED_MEDIA_TYPE: CodeSpec(
        415, Outcome.INVALID, "a body that is not `application/json`", 415
    ),
    _C.HEADERS_TOO_LARGE: CodeSpec(
        431, Outcome.INVALID, "the request line and headers are over their size limit", 431
    ),
    _C.CLIENT_CLOSED_REQUEST: CodeSpec(
        499, Outcome.INVALID, "the client left before its request was read (audit only)", 499
    ),
    _C.TIMEOUT: CodeSpec(
        503, Outcome.ERROR, "the operation outlived its time limit; nothing was stored"
    ),
    _C.MODEL_UNAVAILABLE: CodeSpec(
        503, Outcome.ERROR, "no verified model is serving; retry after `Retry-After`", 503
    ),
    _C.SERVICE_UNAVAILABLE: CodeSpec(
        503, Outcome.ERROR, "the database failed; `extensions.stored` says if anything was", 503
    ),
    _C.INTERNAL_SERVER_ERROR: CodeSpec(
        500, Outcome.ERROR, "a bug: masked, and logged in full under the request id", 500
    ),
}
_RETRY_CODES = frozenset({_C.MODEL_UNAVAILABLE, _C.SERVICE_UNAVAILABLE, _C.IDEMPOTENCY_KEY_IN_USE})


_RETRY_AFTER_CODES = frozenset({_C.RATE_LIMITED, _C.IDEMPOTENCY_KEY_IN_USE})  # in extensions


class FailcastError(Exception):
    """An expected failure, safe to show: a code, a message and optional extensions."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        retry_after: int | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after if retry_after is not None else _default_retry(code)
        self.extensions = extensions

    @property
    def status(self) -> int:
        """The HTTP status of an answer that is this error alone."""
        return SPECS[self.code].status

    def public_extensions(self) -> dict[str, Any]:
        """`extensions` as the client sees them (without code and requestId)."""
        found = dict(self.extensions)
        if self.field is not None:
            found["field"] = self.field
        if self.code in _RETRY_AFTER_CODES and self.retry_after is not None:
            found["retryAfter"] = self.retry_after
        return found


def _default_retry(code: ErrorCode) -> int | None:
    return 1 if code in _RETRY_CODES else None


def bad_input(message: str, field: str | None = None) -> FailcastError:
    """The caller's input is invalid; `field` names the offending input path."""
    return FailcastError(ErrorCode.BAD_USER_INPUT, message, field=field)


def public_error(error: BaseException) -> FailcastError | None:
    """Our own view of an error from any package; None for anything to mask."""
    if isinstance(error, FailcastError):
        return error
    if isinstance(error, AuthError):
        return FailcastError(ErrorCode.UNAUTHENTICATED, error.message)
    if isinstance(error, NotFound):
        return FailcastError(ErrorCode.NOT_FOUND, str(error))
    if isinstance(error, Conflict):
        return FailcastError(ErrorCode.CONFLICT, str(error))
    if isinstance(error, PersistenceError):
        return FailcastError(ErrorCode.SERVICE_UNAVAILABLE, str(error), stored=False)
    if isinstance(error, ModelError):
        return FailcastError(ErrorCode.MODEL_UNAVAILABLE, "the model could not be used")
    return None


def outcome_of(codes: list[str], status: int) -> Outcome:
    """Classify a request for the audit trail from the codes it answered and its status."""
    outcomes = {SPECS[ErrorCode(code)].outcome for code in codes if code in SPECS}
    for outcome in (Outcome.ERROR, Outcome.DENIED, Outcome.INVALID):
        if outcome in outcomes:
            return outcome
    if status >= 500:
        return Outcome.ERROR
    if status in (401, 403, 429):
        return Outcome.DENIED
    return Outcome.INVALID if codes or status >= 400 else Outcome.OK


def graphql_status(codes: list[str]) -> int:
    """The HTTP status of a GraphQL answer carrying these codes (200 unless one says otherwise)."""
    statuses = [SPECS[ErrorCode(code)].graphql_status for code in codes if code in SPECS]
    return max(statuses, default=200)


MISSING_TOKEN = "a bearer token is required"  # noqa: S105 (a message, not a secret)

_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def error_dict(
    error: FailcastError, request_id: uuid.UUID, path: Any = None, locations: Any = None
) -> dict[str, Any]:
    """One entry of a response's `errors`."""
    body: dict[str, Any] = {"message": error.message}
    if locations:
        body["locations"] = locations
    if path:
        body["path"] = list(path)
    extensions = {**error.public_extensions(), "code": str(error.code)}
    body["extensions"] = {**extensions, "requestId": str(request_id)}
    return body


def graphql_error_dict(
    error: GraphQLError, request_id: uuid.UUID, production: bool
) -> dict[str, Any]:
    """Render a GraphQL error from execution, masking anything that is not ours."""
    original = error.original_error
    if original is not None and not isinstance(original, GraphQLError):
        public = public_error(original)
        if public is None:
            log.error("unexpected error [request %s]", request_id, exc_info=original)
            public = FailcastError(ErrorCode.INTERNAL_SERVER_ERROR, "Internal server error")
        return error_dict(public, request_id, error.path, _locations(error))
    extensions = dict(error.extensions or {})
    code = ErrorCode(extensions.pop("code", _default_code(error)))
    message = _SUGGESTION.sub("", error.message) if production else error.message
    public = FailcastError(code, message, **extensions)
    return error_dict(public, request_id, error.path, _locations(error))


def _default_code(error: GraphQLError) -> ErrorCode:
    if isinstance(error, GraphQLSyntaxError):
        return ErrorCode.GRAPHQL_PARSE_FAILED
    # Errors with no path at execution time are variable-coercion failures: the input is wrong.
    return ErrorCode.BAD_USER_INPUT


def _locations(error: GraphQLError) -> list[dict[str, int]] | None:
    if not error.locations:
        return None
    return [{"line": loc.line, "column": loc.column} for loc in error.locations]


def error_body(error: FailcastError, request_id: uuid.UUID) -> dict[str, Any]:
    """The whole body of an answer that is one error (refusals, REST failures)."""
    return {"data": None, "errors": [error_dict(error, request_id)]}


def codes_of(body: dict[str, Any]) -> list[str]:
    """The `extensions.code` of every error of a response body, in order."""
    return [e["extensions"]["code"] for e in body.get("errors") or ()]


def error_table() -> str:
    """The README's table of every code (a contract test holds the README to it)."""
    lines = [
        "| `extensions.code` | HTTP status alone / in a GraphQL answer | audit outcome | meaning |",
        "|---|---|---|---|",
    ]
    for code, spec in SPECS.items():
        statuses = f"{spec.status} / {spec.graphql_status}"
        lines.append(f"| `{code}` | {statuses} | {spec.outcome} | {spec.meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(error_table())
