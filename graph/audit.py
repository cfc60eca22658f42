"""Every API request leaves one audit row, committed with its predictions before it is answered.

The middleware holds the response back until the recorder has committed the request's record;
if that commit fails, the held response is dropped and the caller gets SERVICE_UNAVAILABLE.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.errors import INTERNAL, UNAVAILABLE, error_payload, outcome_of
from persistence import PredictionBlock, RequestRecord, new_id

log = logging.getLogger("failcast.audit")

UNAUDITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass
class RequestAudit:
    """What a request did, filled in as it runs and written once it ends."""

    id: uuid.UUID
    received_at: datetime
    started: float
    method: str
    path: str
    client_addr: str | None
    user_agent: str | None
    subject: str | None = None
    operation_type: str | None = None
    operation_name: str | None = None
    query_sha256: str | None = None
    error_codes: list[str] = field(default_factory=list)
    predictions: list[PredictionBlock] = field(default_factory=list)

    @classmethod
    def begin(cls, scope: Scope) -> "RequestAudit":
        """Start the audit of an HTTP request."""
        headers = dict(scope.get("headers") or [])
        agent = headers.get(b"user-agent")
        client = scope.get("client")
        return cls(
            id=new_id(),
            received_at=datetime.now(UTC),
            started=time.perf_counter(),
            method=scope.get("method", "GET"),
            path=scope.get("path", "/")[:255],
            client_addr=client[0][:64] if client else None,
            user_agent=agent.decode("latin-1")[:512] if agent else None,
        )

    def add_codes(self, codes: list[str]) -> None:
        """Note the error codes a response carries (each once, in order)."""
        for code in codes:
            if code not in self.error_codes:
                self.error_codes.append(code)

    def record(self, status: int) -> RequestRecord:
        """The rows this request leaves: its audit event and its predictions."""
        elapsed = time.perf_counter() - self.started
        audit = {
            "id": self.id,
            "received_at": self.received_at,
            "finished_at": self.received_at + timedelta(seconds=elapsed),
            "duration_ms": round(elapsed * 1000, 3),
            "subject": self.subject[:255] if self.subject else None,
            "client_addr": self.client_addr,
            "user_agent": self.user_agent,
            "http_method": self.method[:16],
            "http_path": self.path,
            "http_status": status,
            "operation_type": self.operation_type,
            "operation_name": (self.operation_name or None) and self.operation_name[:255],
            "query_sha256": self.query_sha256,
            "outcome": outcome_of(self.error_codes, status),
            "error_codes": list(self.error_codes),
            "predictions_created": 0,
        }
        record = RequestRecord(audit=audit, predictions=list(self.predictions))
        audit["predictions_created"] = record.prediction_count
        return record


def request_audit(scope: Scope) -> RequestAudit | None:
    """The audit of the request a scope belongs to (None on unaudited paths)."""
    state = scope.get("state") or {}
    found = state.get("audit")
    return found if isinstance(found, RequestAudit) else None


RecordFn = Callable[[RequestRecord], Awaitable[None]]
FinishedFn = Callable[[RequestAudit, RequestRecord, int], None]


class AuditMiddleware:
    """Pure ASGI middleware: audit, hold the response, commit, then answer."""

    def __init__(
        self, app: ASGIApp, record: RecordFn, finished: FinishedFn, commit_timeout_s: float = 3.0
    ) -> None:
        self.app = app
        self.record = record
        self.finished = finished
        self.commit_timeout_s = commit_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUDITED_PATHS:
            await self.app(scope, receive, send)
            return
        audit = RequestAudit.begin(scope)
        scope.setdefault("state", {})["audit"] = audit
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        try:
            await self.app(scope, receive, hold)
        except Exception:
            log.exception("unhandled error [request %s]", audit.id)
            audit.add_codes([INTERNAL])
            held = _json_messages(500, error_payload(INTERNAL, "Internal server error", audit.id))
        status = int(held[0]["status"]) if held else 500
        record = audit.record(status)
        try:
            await asyncio.wait_for(self.record(record), self.commit_timeout_s)
        except Exception as error:  # whatever stopped the commit, the answer must not leave
            log.error("audit record not written [request %s]: %r", audit.id, error)
            message = "the request could not be recorded; nothing was stored, retry later"
            if isinstance(error, TimeoutError):  # the commit may still land: do not promise
                message = "the database did not confirm the write in time; retry later"
            held = _json_messages(503, error_payload(UNAVAILABLE, message, audit.id))
            held[0]["headers"].append((b"retry-after", b"1"))
            audit.predictions.clear()
            audit.add_codes([UNAVAILABLE])
            status, record = 503, audit.record(503)
        self.finished(audit, record, status)
        await _send_held(held, audit.id, send)


def _json_messages(status: int, payload: dict[str, Any]) -> list[Message]:
    body = orjson.dumps(payload)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


async def _send_held(held: list[Message], request_id: uuid.UUID, send: Send) -> None:
    start = dict(held[0])
    start["headers"] = [*start.get("headers", []), (b"x-request-id", str(request_id).encode())]
    await send(start)
    for message in held[1:]:
        await send(message)
