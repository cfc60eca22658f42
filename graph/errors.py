"""The one place where errors become what clients see: a message and a stable code."""

import logging
import re
import uuid
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError

from auth import AuthError
from model import ModelError
from persistence import PersistenceError

log = logging.getLogger("failcast.errors")

BAD_USER_INPUT = "BAD_USER_INPUT"
INTERNAL = "INTERNAL_SERVER_ERROR"
UNAVAILABLE = "SERVICE_UNAVAILABLE"
DENIED_CODES = frozenset({"UNAUTHENTICATED", "FORBIDDEN", "RATE_LIMITED"})
ERROR_CODES = frozenset({INTERNAL, UNAVAILABLE, "TIMEOUT", "MODEL_UNAVAILABLE"})


class ServiceError(Exception):
    """An expected failure of a use case, safe to show to the caller."""

    def __init__(self, message: str, code: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


def bad_input(message: str, field: str | None = None) -> ServiceError:
    """The caller's input is invalid; `field` names the offending input path."""
    return ServiceError(message, BAD_USER_INPUT, field)


def public_error(error: BaseException) -> tuple[str, str, dict[str, Any]] | None:
    """(code, message, extra extensions) for our own errors; None for anything to mask."""
    if isinstance(error, ServiceError):
        extra = {"field": error.field} if error.field else {}
        return error.code, str(error), extra
    if isinstance(error, AuthError):
        return error.code, str(error), {}
    if isinstance(error, PersistenceError):
        code = error.code if error.code in {"NOT_FOUND", "CONFLICT"} else UNAVAILABLE
        return code, str(error), {}
    if isinstance(error, ModelError):
        return "MODEL_UNAVAILABLE", "the model could not be used", {}
    return None


def outcome_of(codes: list[str], status: int) -> str:
    """Classify a request for the audit trail: ok, denied, invalid or error."""
    if any(code in ERROR_CODES for code in codes) or status >= 500:
        return "error"
    if any(code in DENIED_CODES for code in codes) or status in (401, 403):
        return "denied"
    if codes or status >= 400:
        return "invalid"
    return "ok"


_SUGGESTION = re.compile(r"\s*Did you mean .*\?$")


def format_error(
    error: GraphQLError, request_id: uuid.UUID, hide_suggestions: bool = False
) -> dict[str, Any]:
    """Render one GraphQL error for the response, masking anything unexpected."""
    extensions = dict(error.extensions or {})
    original = error.original_error
    if original is not None and not isinstance(original, GraphQLError):
        public = public_error(original)
        if public is None:
            log.error("unexpected error [request %s]", request_id, exc_info=original)
            return _error_dict("Internal server error", INTERNAL, request_id, error.path)
        code, message, extra = public
        extensions.update(extra)
        return _error_dict(message, code, request_id, error.path, extensions)
    default = (
        "GRAPHQL_PARSE_FAILED"
        if isinstance(error, GraphQLSyntaxError)
        else "GRAPHQL_VALIDATION_FAILED"
    )
    code = str(extensions.pop("code", default))
    message = _SUGGESTION.sub("", error.message) if hide_suggestions else error.message
    return _error_dict(message, code, request_id, error.path, extensions, error)


def _error_dict(
    message: str,
    code: str,
    request_id: uuid.UUID,
    path: Any = None,
    extensions: dict[str, Any] | None = None,
    error: GraphQLError | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if error is not None and error.locations:
        body["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if path:
        body["path"] = list(path)
    body["extensions"] = {**(extensions or {}), "code": code, "requestId": str(request_id)}
    return body


def error_payload(code: str, message: str, request_id: uuid.UUID) -> dict[str, Any]:
    """A GraphQL-shaped body for a request that failed before or after execution."""
    return {"data": None, "errors": [_error_dict(message, code, request_id)]}
