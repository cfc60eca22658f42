"""Every API request: identified once, audited, committed with its predictions, then answered.

The middleware opens the request's audit, verifies its token once (off the event loop when a
key must be fetched), and refuses at once, without an audit row of their own, requests without
a valid token beyond their address's rate limit: those are counted per address and minute
instead (graph/runtime/tally.py), so a flood cannot grow the database at its own pace. Other
requests run with their response held back until the recorder has committed the audit row and
predictions; the answer then leaves with X-Request-ID and the security headers. If the commit
fails or is not confirmed in time, the held response is dropped for a 503 that says whether
anything was stored (`extensions.stored`), and the audit row written is the one of that 503.

An endpoint whose answer is too big to hold (an export) marks it streamed (`stream_answer`)
before returning it. Its audit row is committed when the response starts, with the status of
that start, before the first byte leaves; the 503 above replaces it if that commit fails, and
nothing of it is sent. Once started, the body passes through as the endpoint sends it. If the
endpoint fails midway, the failure is logged with the request id and the final chunk is never
sent: the server closes the connection, so the client sees a truncated transfer, not a short
answer that looks whole. The audit row keeps the status the answer started with.
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth import AuthError, Principal
from graph.edge.identity import ClientAddresses, client_request_id, header
from graph.edge.responses import error_headers
from graph.errors import MISSING_TOKEN, ErrorCode, FailcastError, error_body
from graph.runtime import Runtime
from graph.runtime.audit import RequestAudit
from graph.runtime.logs import log_request, requests_logged
from graph.runtime.recorder import Stored
from persistence import PersistenceError, RequestRecord, new_id
from persistence.idempotency import KeyInUse

log = logging.getLogger("failcast.audit")

UNAUDITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
SECURITY_HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
ANONYMOUS = "anonymous"  # the rate-limit bucket of requests without a valid token


@dataclass(frozen=True)
class Caller:
    """Who sent a request: its principal, or why it has none."""

    principal: Principal | None
    refusal: str | None = None  # the message of a missing or refused token


def stream_answer(scope: Scope) -> None:
    """Mark the request's answer as streamed: committed as it starts, then passed through."""
    scope["state"]["streamed"] = True


class _Withdrawn(Exception):
    """A streamed answer's commit failed: the 503 went out instead, and the endpoint must stop."""


@dataclass
class _Streaming:
    """A streamed answer once its audit row is committed: its row, status and whether it ended."""

    record: RequestRecord
    status: int
    complete: bool = False


def request_state(scope: Scope) -> tuple[RequestAudit, Caller]:
    """The audit and caller of the request a scope belongs to (set by the middleware)."""
    state = scope.get("state") or {}
    audit, caller = state.get("audit"), state.get("caller")
    if not isinstance(audit, RequestAudit) or not isinstance(caller, Caller):
        raise RuntimeError("the audit middleware must wrap every audited route")
    return audit, caller


class AuditMiddleware:
    """Pure ASGI middleware: identify, audit, hold the response, commit, then answer."""

    def __init__(
        self, app: ASGIApp, runtime: Runtime, unaudited: frozenset[str] = UNAUDITED_PATHS
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.unaudited = unaudited
        self.addresses = ClientAddresses(runtime.settings.trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.unaudited:
            await self.app(scope, receive, _secured(send, str(new_id())))
            return
        audit = RequestAudit.begin(
            scope.get("method", "GET"),
            scope.get("path", "/"),
            self.addresses.of(scope),
            header(scope, b"user-agent"),
            client_request_id(scope),
        )
        caller = await self._identify(audit, header(scope, b"authorization"))
        if caller.principal is None and self._flooding(audit):
            await self._refuse_unaudited(audit, send)
            return
        scope.setdefault("state", {}).update(audit=audit, caller=caller)
        held: list[Message] = []
        streaming: _Streaming | None = None
        secured = _secured(send, audit.client_request_id or str(audit.id))

        async def forward(message: Message) -> None:
            nonlocal streaming
            if streaming is not None:
                streaming.complete = not message.get("more_body", False)
                await send(message)
            elif message["type"] == "http.response.start" and scope["state"].get("streamed"):
                streaming = await self._start_stream(audit, message, secured)
            else:
                held.append(message)

        try:
            await self.app(scope, receive, forward)
        except _Withdrawn:
            return
        except Exception as error:
            if streaming is not None:
                _broken_off(audit, error)
                self._finished(audit, streaming.record, streaming.status)
                return  # without the final chunk: the server closes the connection
            log.exception("unhandled error [request %s]", audit.id)
            audit.answered_with([ErrorCode.INTERNAL_SERVER_ERROR])
            internal = FailcastError(ErrorCode.INTERNAL_SERVER_ERROR, "Internal server error")
            held = _answer(internal, audit)
        if streaming is not None:
            if not streaming.complete:  # the client left, and the endpoint stopped
                log.info("client left before the end of a streamed answer [request %s]", audit.id)
            self._finished(audit, streaming.record, streaming.status)
            return
        status = int(held[0]["status"]) if held else 500
        held, status, record = await self._commit(audit, held, status)
        self._finished(audit, record, status)
        await secured(held[0])
        for message in held[1:]:
            await send(message)

    async def _start_stream(
        self, audit: RequestAudit, start: Message, secured: Callable[[Message], Awaitable[None]]
    ) -> _Streaming:
        """Commit a streamed answer's row, then send its start; else send the 503 and withdraw."""
        status = int(start["status"])
        messages, answered, record = await self._commit(audit, [start], status)
        await secured(messages[0])
        if messages[0] is start:
            return _Streaming(record, status)
        for message in messages[1:]:
            await secured(message)
        self._finished(audit, record, answered)
        raise _Withdrawn

    async def _identify(self, audit: RequestAudit, authorization: str | None) -> Caller:
        if authorization is None:
            audit.token_refused("missing")
            return Caller(None, MISSING_TOKEN)
        try:
            principal = await self.runtime.verifier.authenticate_async(authorization)
        except AuthError as error:
            audit.token_refused(error.reason)
            return Caller(None, error.message)
        if principal is None:  # pragma: no cover - a header is present, so a principal or error
            return Caller(None, MISSING_TOKEN)
        audit.authenticated(principal)
        return Caller(principal)

    def _flooding(self, audit: RequestAudit) -> bool:
        wait = self.runtime.anonymous.acquire(audit.client_addr or "?", ANONYMOUS)
        return wait is not None

    async def _refuse_unaudited(self, audit: RequestAudit, send: Send) -> None:
        self.runtime.tally.count(audit.client_addr, "anonymous_rate_limit")
        self.runtime.metrics.rate_limited.labels(ANONYMOUS).inc()
        message = "too many requests without a valid token from this address"
        refusal = FailcastError(ErrorCode.RATE_LIMITED, message, retry_after=1)
        held = _answer(refusal, audit)
        await _secured(send, str(audit.id))(held[0])
        await send(held[1])

    async def _commit(
        self, audit: RequestAudit, held: list[Message], status: int
    ) -> tuple[list[Message], int, RequestRecord]:
        """Commit the request's rows; the messages, status and rows of what is answered."""
        unavailable: dict[Stored, tuple[list[Message], RequestRecord]] = {}

        def instead(stored: Stored) -> RequestRecord:
            if stored not in unavailable:
                unavailable[stored] = _unavailable(audit, stored)
            return unavailable[stored][1]

        record = audit.record(status)
        timeout = self.runtime.settings.commit_timeout_seconds
        try:
            stored = await self.runtime.recorder.record(record, timeout, instead)
        except KeyInUse:  # a request with its key committed first (on another server)
            return self._key_taken(audit)
        except Exception as error:  # whatever stopped the commit, the answer must not leave
            log.error("audit record not written [request %s]: %r", audit.id, error)
            stored = Stored.NO
        if stored is Stored.YES:
            audit.committed()
            return held, status, record
        log.error("answered 503, stored: %s [request %s]", stored, audit.id)
        instead(stored)
        messages, failed = unavailable[stored]
        return messages, 503, failed

    def _key_taken(self, audit: RequestAudit) -> tuple[list[Message], int, RequestRecord]:
        """409 instead of an answer whose key another request took first; nothing of it stored."""
        taken = FailcastError(
            ErrorCode.IDEMPOTENCY_KEY_IN_USE,
            "a request with this Idempotency-Key was stored first: retry to get its answer",
        )
        audit.answer_replaced()
        audit.answered_with([taken.code])
        record = audit.record(taken.status)
        self.runtime.recorder.write_later(record)
        return _answer(taken, audit), taken.status, record

    def _finished(self, audit: RequestAudit, record: RequestRecord, status: int) -> None:
        """Log the request's line and update the metrics, once its fate is known."""
        audit.finish()
        row = record.audit
        operation = audit.operation_type or "none"
        metrics = self.runtime.metrics
        metrics.observe_request(operation, row["outcome"], row["duration_ms"] / 1000)
        if record.predictions:
            for made in audit.stored():
                metrics.observe_predictions(made.model_version, made.block)
        log_line(audit, record, status)


def log_line(audit: RequestAudit, record: RequestRecord, status: int) -> None:
    """The one `failcast.request` log line of an audited request (or WebSocket event)."""
    if not requests_logged():
        return
    row = record.audit
    log_request(
        {
            "request_id": str(audit.id),
            "client_request_id": audit.client_request_id,
            "subject": audit.subject,
            "method": audit.method,
            "path": audit.path,
            "operation": audit.operation_type or "none",
            "operation_name": audit.operation_name,
            "outcome": row["outcome"],
            "status": status,
            "duration_ms": row["duration_ms"],
            "error_codes": row["error_codes"],
            "predictions": record.prediction_count,
        }
    )


def _broken_off(audit: RequestAudit, error: Exception) -> None:
    """Log a streamed answer that failed after it started (its client sees the transfer cut)."""
    if isinstance(error, PersistenceError):  # the database went away: expected, no traceback
        log.error("streamed answer broken off [request %s]: %r", audit.id, error)
    else:
        log.exception("streamed answer broken off [request %s]", audit.id)


def _unavailable(audit: RequestAudit, stored: Stored) -> tuple[list[Message], RequestRecord]:
    """The 503 answered when a commit failed or was not confirmed, and its audit row."""
    if stored is Stored.UNKNOWN:
        message = (
            "the database did not confirm the write in time: look up the request id before retrying"
        )
        error = FailcastError(ErrorCode.SERVICE_UNAVAILABLE, message, stored="unknown")
    else:
        message = "the request could not be recorded; nothing was stored, retry later"
        error = FailcastError(ErrorCode.SERVICE_UNAVAILABLE, message, stored=False)
    audit.answer_replaced()
    audit.answered_with([ErrorCode.SERVICE_UNAVAILABLE])
    return _answer(error, audit), audit.record(503)


def _answer(error: FailcastError, audit: RequestAudit) -> list[Message]:
    """The ASGI messages of an answer that is one error."""
    body = orjson.dumps(error_body(error, audit.id))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in error_headers(error).items()),
    ]
    return [
        {"type": "http.response.start", "status": error.status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


def _secured(send: Send, request_id: str) -> Callable[[Message], Awaitable[None]]:
    """`send`, adding X-Request-ID and the security headers to the response's start."""

    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers: list[Any] = [
                (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
            ]
            headers += [*SECURITY_HEADERS, (b"x-request-id", request_id.encode())]
            message = {**message, "headers": headers}
        await send(message)

    return secured
