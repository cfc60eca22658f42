"""`failureAlerts` over WebSocket at /graphql: the graphql-transport-ws protocol, and only it.

The audit middleware passes WebSocket connections through, so this endpoint audits them itself:

- The handshake: a browser's `Origin` must be the server's own or one of FAILCAST_CORS_ORIGINS
  (else HTTP 403, before the upgrade); the client must offer the `graphql-transport-ws`
  subprotocol (else close 4406).
- `connection_init` must arrive within FAILCAST_SUBSCRIPTION_INIT_TIMEOUT_SECONDS (else 4408)
  and carry the token in its payload, `{"Authorization": "Bearer <token>"}`; a missing or
  invalid token, or one without `predictions:read`, is closed with 4403. Beyond
  FAILCAST_SUBSCRIPTION_CONNECTIONS_PER_SUBJECT open connections of one subject (per server
  process) the connection is closed with 4429. Each refusal leaves an audit row (refusals
  without a valid token beyond the address's anonymous rate limit are counted instead, as on
  HTTP). A `subscribe` before `connection_ack` is closed with 4401, a second
  `connection_init` with 4429, a malformed message with 4400, a reused id with 4409, and an
  expired token ends the connection with 4403.
- Each `subscribe` runs through the app's executor (the same document cache, limits, cost and
  permission as HTTP; queries and mutations are refused: they belong to POST /graphql). A
  subscription that starts leaves an audit row (`subscriptionEvent` `start`), committed before
  its first event, and one when it ends (`end`: by `complete`, a closed connection, a dropped
  subscriber or a server shutdown), both naming it (`subscriptionId`).
"""

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

import orjson
from graphql import ExecutionResult
from starlette.websockets import WebSocket

from auth import AuthError, Scope
from graph.edge.audit import log_line
from graph.edge.cors import AllowedOrigins
from graph.edge.identity import ClientAddresses, client_request_id, header
from graph.errors import (
    MISSING_TOKEN,
    SPECS,
    ErrorCode,
    FailcastError,
    error_dict,
    graphql_error_dict,
)
from graph.runtime import Runtime
from graph.runtime.audit import RequestAudit
from graph.runtime.recorder import Stored
from graph.schema.context import GraphContext
from graph.schema.execution import GraphQLExecutor, OperationRequest

log = logging.getLogger("failcast.subscriptions")

PROTOCOL = "graphql-transport-ws"
MAX_ID = 256
MAX_REASON_BYTES = 123  # what a WebSocket close frame can carry
SCOPE = Scope.PREDICTIONS_READ


class Close(IntEnum):
    """The close codes of graphql-transport-ws."""

    BAD_MESSAGE = 4400
    UNAUTHORIZED = 4401  # subscribe before connection_ack
    FORBIDDEN = 4403  # no valid token, no predictions:read, or the token expired
    SUBPROTOCOL = 4406
    INIT_TIMEOUT = 4408
    DUPLICATE_ID = 4409
    TOO_MANY = 4429  # a second connection_init, or the subject's connection cap


class _Closed(Exception):
    """The connection is over: the client left, or we closed it."""


class SubscriptionEndpoint:
    """The WebSocket side of /graphql, for one application."""

    def __init__(self, runtime: Runtime, executor: GraphQLExecutor) -> None:
        self.runtime = runtime
        self.executor = executor
        self.origins = AllowedOrigins(runtime.settings.cors_origins)
        self.addresses = ClientAddresses(runtime.settings.trusted_proxies)
        self.open: Counter[str] = Counter()  # connections per subject, in this process

    async def handle(self, websocket: WebSocket) -> None:
        """Serve one WebSocket connection until it closes."""
        await _Connection(self, websocket).run()


class _Connection:
    """One WebSocket connection: its handshake, initialisation and subscriptions."""

    def __init__(self, endpoint: SubscriptionEndpoint, websocket: WebSocket) -> None:
        self.endpoint = endpoint
        self.runtime = endpoint.runtime
        self.settings = endpoint.runtime.settings
        self.websocket = websocket
        scope = websocket.scope
        self.client_addr = endpoint.addresses.of(scope)
        self.principal: Any = None
        self.running: dict[str, asyncio.Task[None]] = {}
        self.sending = asyncio.Lock()

    def audit(self) -> RequestAudit:
        """A new audit of something this connection did."""
        scope = self.websocket.scope
        audit = RequestAudit.begin(
            "WS",
            scope.get("path", "/graphql"),
            self.client_addr,
            header(scope, b"user-agent"),
            client_request_id(scope),
        )
        if self.principal is not None:
            audit.authenticated(self.principal)
        return audit

    async def run(self) -> None:
        """The connection from handshake to close."""
        if not self._origin_allowed():
            origin = header(self.websocket.scope, b"origin")
            message = f"the Origin {origin!r} may not open WebSockets (FAILCAST_CORS_ORIGINS)"
            self._record_refusal(self.audit(), FailcastError(ErrorCode.FORBIDDEN, message))
            await self.websocket.close(1008)  # before accepting: the upgrade is answered 403
            return
        if PROTOCOL not in self.websocket.scope.get("subprotocols", []):
            await self.websocket.accept()
            message = f"the {PROTOCOL} subprotocol is the only one served"
            await self._refuse(
                self.audit(), FailcastError(ErrorCode.BAD_REQUEST, message), Close.SUBPROTOCOL
            )
            return
        await self.websocket.accept(subprotocol=PROTOCOL)
        try:
            if await self._initialise():
                await self._serve_counted()
        except _Closed:
            pass
        finally:
            tasks = list(self.running.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _origin_allowed(self) -> bool:
        """No Origin (not a browser), the server's own, or one of FAILCAST_CORS_ORIGINS."""
        scope = self.websocket.scope
        origin = header(scope, b"origin")
        if origin is None or self.endpoint.origins.allowed_origin(origin) is not None:
            return True
        host = (header(scope, b"host") or "").lower()
        return bool(host) and origin.lower() in (f"http://{host}", f"https://{host}")

    # -- initialisation ---------------------------------------------------------------------

    async def _initialise(self) -> bool:
        """Wait for connection_init and authenticate it; False when the connection was closed."""
        wait = self.settings.subscription_init_timeout_seconds
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await self._receive()
            except TimeoutError:
                refusal = FailcastError(
                    ErrorCode.REQUEST_TIMEOUT, f"connection_init did not arrive within {wait:g} s"
                )
                await self._refuse(self.audit(), refusal, Close.INIT_TIMEOUT)
                return False
            kind = message["type"]
            if kind in ("ping", "pong"):
                await self._pong(message)
                continue
            if kind == "connection_init":
                return await self._authenticate(message.get("payload"))
            if kind == "subscribe":
                refusal = FailcastError(
                    ErrorCode.UNAUTHENTICATED, "send connection_init before subscribe"
                )
                await self._refuse(self.audit(), refusal, Close.UNAUTHORIZED)
                return False
            await self._bad_message(f"unexpected {kind!r} before connection_init")
            return False

    async def _authenticate(self, payload: object) -> bool:
        audit = self.audit()
        if payload is not None and not isinstance(payload, dict):
            await self._bad_message("the connection_init payload must be an object")
            return False
        authorization = _authorization(payload or {})
        if authorization is None:
            audit.token_refused("missing")
            message = (
                f'{MISSING_TOKEN}: send {{"Authorization": "Bearer <token>"}} in connection_init'
            )
            await self._refuse(audit, FailcastError(ErrorCode.UNAUTHENTICATED, message))
            return False
        try:
            principal = await self.runtime.verifier.authenticate_async(authorization)
        except AuthError as error:
            audit.token_refused(error.reason)
            await self._refuse(audit, FailcastError(ErrorCode.UNAUTHENTICATED, error.message))
            return False
        if principal is None:  # pragma: no cover - a value was given, so a principal or error
            return False
        audit.authenticated(principal)
        if not principal.has(SCOPE):
            message = f"the token lacks the '{SCOPE.value}' scope"
            await self._refuse(audit, FailcastError(ErrorCode.FORBIDDEN, message))
            return False
        self.principal = principal
        return True

    async def _serve_counted(self) -> None:
        """Acknowledge, within the subject's connection cap, and serve."""
        subject = self.principal.subject
        cap = self.settings.subscription_connections_per_subject
        if self.endpoint.open[subject] >= cap:
            message = f"at most {cap} open subscription connections per subject (per server)"
            refusal = FailcastError(ErrorCode.RATE_LIMITED, message, retry_after=1)
            await self._refuse(self.audit(), refusal, Close.TOO_MANY)
            return
        self.endpoint.open[subject] += 1
        try:
            await self._send({"type": "connection_ack"})
            await self._serve()
        finally:
            self.endpoint.open[subject] -= 1
            if self.endpoint.open[subject] <= 0:
                del self.endpoint.open[subject]

    # -- serving ------------------------------------------------------------------------------

    async def _serve(self) -> None:
        expires = self.principal.expires_at
        while True:
            left = None if expires is None else (expires - datetime.now(UTC)).total_seconds()
            if left is not None and left <= 0:
                await self._close(Close.FORBIDDEN, "the token expired: connect with a new one")
                return
            try:
                async with asyncio.timeout(left):
                    message = await self._receive()
            except TimeoutError:
                continue  # the token's expiry: checked above
            kind = message["type"]
            if kind in ("ping", "pong"):
                await self._pong(message)
            elif kind == "subscribe":
                if not await self._start(message):
                    return
            elif kind == "complete":
                task = self.running.get(str(message.get("id")))
                if task is not None:
                    task.cancel()
            elif kind == "connection_init":
                await self._close(Close.TOO_MANY, "Too many initialisation requests")
                return
            else:
                await self._bad_message(f"unexpected message type {kind!r}")
                return

    async def _start(self, message: dict[str, Any]) -> bool:
        """Start a subscription task; False when the message closed the connection."""
        ident, payload = message.get("id"), message.get("payload")
        if not isinstance(ident, str) or not 1 <= len(ident) <= MAX_ID:
            await self._bad_message(f"subscribe needs an id of 1..{MAX_ID} characters")
            return False
        if not isinstance(payload, dict):
            await self._bad_message("subscribe needs a payload object")
            return False
        if ident in self.running:
            await self._close(Close.DUPLICATE_ID, f"Subscriber for {ident[:64]} already exists")
            return False
        most = self.settings.subscriptions_per_connection
        if len(self.running) >= most:
            message_ = f"at most {most} subscriptions per connection"
            await self._refused(
                ident, self.audit(), FailcastError(ErrorCode.RATE_LIMITED, message_)
            )
            return True
        task = asyncio.create_task(self._subscription(ident, payload))
        self.running[ident] = task
        task.add_done_callback(lambda done: self._forget(ident, done))
        return True

    def _forget(self, ident: str, task: "asyncio.Task[None]") -> None:
        if self.running.get(ident) is task:
            del self.running[ident]

    async def _subscription(self, ident: str, payload: dict[str, Any]) -> None:
        """One subscription, from `subscribe` to its end (its task; nothing escapes it)."""
        audit = self.audit()
        try:
            await self._subscribe(ident, payload, audit)
        except _Closed:
            pass  # the connection is gone: there is nobody to tell
        except Exception:  # a bug: masked for the client, logged in full
            log.exception("subscription failed [request %s]", audit.id)
            error = FailcastError(ErrorCode.INTERNAL_SERVER_ERROR, "Internal server error")
            await self._send_error(ident, audit, error, quietly=True)

    async def _subscribe(self, ident: str, payload: dict[str, Any], audit: RequestAudit) -> None:
        executor = self.endpoint.executor
        context = GraphContext(
            self.runtime, audit, self.principal, executor.cursors, loader_cache=False
        )
        try:
            started = await executor.subscribe(_operation(payload), context)
        except FailcastError as error:
            await self._refused(ident, audit, error)
            return
        except TimeoutError:
            message = f"the subscription did not start within {executor.timeout_s:g} s"
            await self._refused(ident, audit, FailcastError(ErrorCode.TIMEOUT, message))
            return
        if isinstance(started, ExecutionResult):
            await self._rejected(ident, audit, started)
            return
        await self._stream(ident, audit, started)

    async def _stream(
        self, ident: str, audit: RequestAudit, stream: AsyncIterator[ExecutionResult]
    ) -> None:
        """Record the start, send each result, and record the end, whatever ends it."""
        audit.subscription_started()
        if not await self._committed(audit):
            await _aclose(stream)
            error = FailcastError(
                ErrorCode.SERVICE_UNAVAILABLE,
                "the subscription could not be recorded, so it did not start: retry later",
            )
            await self._send_error(ident, audit, error, quietly=True)
            return
        ended_with: list[str] = []
        self.runtime.metrics.alert_subscriptions.inc()
        try:
            async for result in stream:
                await self._send(
                    {"id": ident, "type": "next", "payload": self._result(result, audit)}
                )
            await self._send({"id": ident, "type": "complete"})
        except FailcastError as error:  # the stream ended with an error (a dropped subscriber)
            ended_with = [error.code]
            await self._send_error(ident, audit, error, quietly=True)
        except _Closed:
            pass
        finally:
            self.runtime.metrics.alert_subscriptions.dec()
            await _aclose(stream)
            end = audit.subscription_ended(ended_with)
            self._write(end, 200 if not ended_with else SPECS[ErrorCode(ended_with[0])].status)

    async def _committed(self, audit: RequestAudit) -> bool:
        """Commit the start row (before any event is sent); whether it was stored."""
        record = audit.record(200)
        try:
            stored = await self.runtime.recorder.record(
                record, self.settings.commit_timeout_seconds
            )
        except Exception as error:
            log.error("subscription start not recorded [request %s]: %r", audit.id, error)
            return False
        if stored is not Stored.YES:
            return False
        audit.finish()
        log_line(audit, record, 200)
        return True

    async def _rejected(self, ident: str, audit: RequestAudit, result: ExecutionResult) -> None:
        """A subscription graphql-core refused to start (validation, arguments, permission)."""
        production = self.settings.production
        errors = [graphql_error_dict(e, audit.id, production) for e in result.errors or ()]
        codes = [e["extensions"]["code"] for e in errors]
        audit.answered_with(codes)
        status = max((SPECS[ErrorCode(c)].status for c in codes if c in SPECS), default=400)
        self._write(audit, status)
        await self._send({"id": ident, "type": "error", "payload": errors})

    async def _refused(self, ident: str, audit: RequestAudit, error: FailcastError) -> None:
        audit.answered_with([error.code])
        self._write(audit, error.status)
        await self._send_error(ident, audit, error)

    def _result(self, result: ExecutionResult, audit: RequestAudit) -> dict[str, Any]:
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            production = self.settings.production
            payload["errors"] = [graphql_error_dict(e, audit.id, production) for e in result.errors]
        return payload

    async def _send_error(
        self, ident: str, audit: RequestAudit, error: FailcastError, quietly: bool = False
    ) -> None:
        """The `error` message ending subscription `ident` (quietly: unless the client left)."""
        message = {"id": ident, "type": "error", "payload": [error_dict(error, audit.id)]}
        if quietly:
            await self._send_quietly(message)
        else:
            await self._send(message)

    # -- refusals and the audit ---------------------------------------------------------------

    async def _refuse(
        self, audit: RequestAudit, error: FailcastError, code: int = Close.FORBIDDEN
    ) -> None:
        """Audit a refused connection (or count it), then close it with `code`."""
        self._record_refusal(audit, error)
        await self._close(code, error.message)

    def _record_refusal(self, audit: RequestAudit, error: FailcastError) -> None:
        audit.answered_with([error.code])
        runtime = self.runtime
        if audit.principal is None:
            address = audit.client_addr or "?"
            if runtime.anonymous.acquire(address, "anonymous") is not None:
                runtime.tally.count(audit.client_addr, "anonymous_rate_limit")
                runtime.metrics.rate_limited.labels("anonymous").inc()
                return
        self._write(audit, error.status)

    def _write(self, audit: RequestAudit, status: int) -> None:
        """Queue an audit row (nothing waits for it) and log its line."""
        record = audit.record(status)
        audit.finish()
        self.runtime.recorder.write_later(record)
        log_line(audit, record, status)

    async def _bad_message(self, reason: str) -> None:
        await self._refuse(
            self.audit(), FailcastError(ErrorCode.BAD_REQUEST, reason), Close.BAD_MESSAGE
        )

    # -- the socket ---------------------------------------------------------------------------

    async def _receive(self) -> dict[str, Any]:
        """The next protocol message; _Closed when the client left or the message was bad."""
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise _Closed
        text = message.get("text")
        if text is None:
            await self._bad_message("messages must be text (JSON)")
            raise _Closed
        if len(text) > self.settings.max_body_bytes:
            await self._bad_message(
                f"a message may hold at most {self.settings.max_body_bytes} bytes"
            )
            raise _Closed
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self._bad_message("a message must be a JSON object")
            raise _Closed from None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            await self._bad_message("a message must be a JSON object with a string `type`")
            raise _Closed
        return data

    async def _pong(self, message: dict[str, Any]) -> None:
        if message["type"] == "ping":
            await self._send({"type": "pong"})

    async def _send(self, message: dict[str, Any]) -> None:
        """Send one message (one at a time); _Closed when the connection is gone."""
        async with self.sending:
            try:
                await self.websocket.send_text(orjson.dumps(message).decode())
            except Exception as error:  # closed under us: the client left, or we closed it
                raise _Closed from error

    async def _send_quietly(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(_Closed):
            await self._send(message)

    async def _close(self, code: int, reason: str) -> None:
        encoded = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
        with contextlib.suppress(Exception):  # already closed by the client
            await self.websocket.close(code, encoded)


def _authorization(payload: dict[str, Any]) -> str | None:
    """The `Authorization` value of a connection_init payload (any letter case)."""
    for key, value in payload.items():
        if isinstance(key, str) and key.lower() == "authorization" and isinstance(value, str):
            return value
    return None


def _operation(payload: dict[str, Any]) -> OperationRequest:
    query, variables = payload.get("query"), payload.get("variables")
    name = payload.get("operationName")
    if not isinstance(query, str) or not query.strip():
        raise FailcastError(ErrorCode.BAD_REQUEST, "`query` must be a non-empty string")
    if variables is not None and not isinstance(variables, dict):
        raise FailcastError(ErrorCode.BAD_REQUEST, "`variables` must be an object")
    if name is not None and not isinstance(name, str):
        raise FailcastError(ErrorCode.BAD_REQUEST, "`operationName` must be a string")
    return OperationRequest(query, variables, name)


async def _aclose(stream: AsyncIterator[ExecutionResult]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
