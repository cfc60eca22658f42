"""Responses of the HTTP edge: JSON bodies, errors with their status and headers, reading bodies."""

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from graph.errors import MISSING_TOKEN, ErrorCode, FailcastError, error_body
from graph.runtime.deadlines import time_limit

JSON_TYPES = ("application/json", "application/graphql-response+json")


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """An application/json response encoded with orjson."""
    body = orjson.dumps(payload)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_headers(error: FailcastError) -> dict[str, str]:
    """The headers an error's answer carries (Retry-After, WWW-Authenticate)."""
    headers: dict[str, str] = {}
    if error.retry_after is not None and error.status in (409, 429, 503):
        headers["retry-after"] = str(error.retry_after)
    if error.code is ErrorCode.UNAUTHENTICATED:  # RFC 6750 3: no error code without a token
        challenge = 'Bearer realm="failcast"'
        if error.message != MISSING_TOKEN:
            detail = error.message.replace('"', "'")
            challenge += f', error="invalid_token", error_description="{detail}"'
        headers["www-authenticate"] = challenge
    if error.code is ErrorCode.REQUEST_TIMEOUT:
        headers["connection"] = "close"
    return headers


def error_response(error: FailcastError, request_id: uuid.UUID) -> Response:
    """The answer that is this error alone, with its HTTP status and headers."""
    return json_response(error_body(error, request_id), error.status, error_headers(error))


@dataclass(frozen=True)
class JsonBody:
    """A request's body: its bytes as they came, and the JSON value they hold."""

    raw: bytes
    data: Any


async def read_json_body(request: Request, max_bytes: int, timeout_s: float) -> JsonBody:
    """The request's JSON body: 415, 413, 408 or 400 as a FailcastError when it is not one."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES:
        raise FailcastError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send application/json")
    try:
        with time_limit(timeout_s):  # no task of its own, as wait_for would make
            body = await _read(request, max_bytes)
    except TimeoutError as error:
        message = f"the body did not arrive within {timeout_s:g} s"
        raise FailcastError(ErrorCode.REQUEST_TIMEOUT, message) from error
    except ClientDisconnect as error:
        message = "the client closed the connection before its body arrived"
        raise FailcastError(ErrorCode.CLIENT_CLOSED_REQUEST, message) from error
    try:
        return JsonBody(body, orjson.loads(body))
    except orjson.JSONDecodeError as error:
        raise FailcastError(ErrorCode.BAD_REQUEST, "the body is not valid JSON") from error


async def _read(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    return bytes(body)


def _too_large(max_bytes: int) -> FailcastError:
    size = (
        f"{max_bytes // 1024} KiB" if max_bytes % (1024 * 1024) else f"{max_bytes // 1048576} MiB"
    )
    return FailcastError(ErrorCode.REQUEST_TOO_LARGE, f"the body exceeds {size}")
