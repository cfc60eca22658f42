"""Connection guards for uvicorn's httptools protocol: header timeout, header size, connection cap.

uvicorn starts no timer until a request's headers are complete (its keep-alive timeout covers
only the idle time between requests), its httptools protocol accepts headers of any size, and a
worker accepts any number of connections. `GuardedHttpToolsProtocol` closes those gaps before
the application sees a request. Every refusal is a complete HTTP/1.1 answer with failcast's
JSON error body, counted per reason (`connection_refusals()`), and logged at most once per
reason per `LOG_EVERY_SECONDS`, so an attacker cannot flood the log.
"""

import asyncio
import functools
import http
import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from graph.errors import ErrorCode, FailcastError, error_body
from graph.settings import Settings
from persistence import new_id

if TYPE_CHECKING or importlib.util.find_spec("httptools") is not None:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    HTTPTOOLS = True
else:  # pragma: no cover - uvicorn without its [standard] extra: http_options() picks h11
    HttpToolsProtocol = asyncio.Protocol  # the class below is then defined but never used
    HTTPTOOLS = False

log = logging.getLogger("failcast.edge")

# Refusal reasons, as counted by connection_refusals().
HEADER_TIMEOUT = "header_timeout"
HEADER_SIZE = "headers_too_large"
CONNECTION_CAP = "too_many_connections"
REASONS = (HEADER_TIMEOUT, HEADER_SIZE, CONNECTION_CAP)

PROTOCOL = "graph.edge.connections:GuardedHttpToolsProtocol"  # an import string reaches workers
LOG_EVERY_SECONDS = 10.0
LINGER_SECONDS = 1.0  # how long a refused connection may still send what we discard
# A request line "M U HTTP/V\r\n" and the blank line ending the headers, besides M, U and V.
_HEAD_OVERHEAD = len(b"  HTTP/\r\n\r\n")
_HEADER_OVERHEAD = len(b": \r\n")  # per header line, besides its name and value


@dataclass(frozen=True)
class EdgeLimits:
    """The three connection guards of one worker process."""

    header_timeout_seconds: float = 10.0
    max_header_bytes: int = 32768
    max_connections: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> "EdgeLimits":
        """The limits the FAILCAST_* settings describe."""
        return cls(
            settings.header_timeout_seconds, settings.max_header_bytes, settings.max_connections
        )


@functools.cache
def environment_limits() -> EdgeLimits:
    """This process's limits, read once from its environment as the app factory reads it."""
    return EdgeLimits.from_settings(Settings())


def http_options(settings: Settings) -> dict[str, Any]:
    """uvicorn options serving through the guard; h11 with a header cap if httptools is missing."""
    if HTTPTOOLS:
        return {"http": PROTOCOL}
    log.warning(
        "httptools is not installed: serving with uvicorn's h11 protocol, which caps an "
        "incomplete request at %d bytes but has no header timeout or connection cap",
        settings.max_header_bytes,
    )
    return {"http": "h11", "h11_max_incomplete_event_size": settings.max_header_bytes}


class RefusalCounter:
    """Refusals per reason, thread-safe; logs at most one line per reason per `period`."""

    def __init__(
        self, period: float = LOG_EVERY_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._period, self._clock = period, clock
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(REASONS, 0)
        self._unlogged = dict.fromkeys(REASONS, 0)
        self._logged_at: dict[str, float] = {}

    def add(self, reason: str, peer: object) -> None:
        """Count one refusal, and log it unless this reason was logged less than `period` ago."""
        with self._lock:
            self._counts[reason] += 1
            self._unlogged[reason] += 1
            now, last = self._clock(), self._logged_at.get(reason)
            if last is not None and now - last < self._period:
                return
            self._logged_at[reason] = now
            count, self._unlogged[reason] = self._unlogged[reason], 0
        log.warning(
            "refused %d connection(s) since the last such line (%s), the latest from %s",
            count,
            reason,
            peer,
            extra={"reason": reason, "refusals": count},
        )

    def snapshot(self) -> dict[str, int]:
        """Refusals per reason since the process started."""
        with self._lock:
            return dict(self._counts)


_refusals = RefusalCounter()


def connection_refusals() -> dict[str, int]:
    """How many connections this process refused, per reason (for /metrics)."""
    return _refusals.snapshot()


class RefusalCollector(Collector):
    """`failcast_connections_refused_total` by reason, read from the guard when scraped."""

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "failcast_connections_refused",
            "Connections refused before a request reached the app",
            labels=["reason"],
        )
        counts = connection_refusals()
        for reason in REASONS:
            family.add_metric([reason], float(counts.get(reason, 0)))
        yield family


def refusal_bytes(error: FailcastError, headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """A complete HTTP/1.1 answer with failcast's error body, closing the connection."""
    request_id = new_id()
    body = orjson.dumps(error_body(error, request_id))
    status = error.status
    phrase = http.HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {phrase}".encode()]
    for name, value in [
        *(headers or []),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-request-id", str(request_id).encode()),
    ]:
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a refused request."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header read timeout, header size and connection caps."""

    limits: ClassVar[EdgeLimits | None] = None  # None: from this process's FAILCAST_* variables

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = type(self).limits or environment_limits()
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # reading a request line and headers (or waiting for the first)
        self._message_done = True  # the parser finished the last request's body
        self._head_raw = 0  # bytes received for the current head, whole chunks only
        self._head_size = 0  # its URL and header bytes as parsed
        self._heads = 0  # heads completed on this connection
        self._refused = False
        self._pending: str | None = None  # a refusal waiting for the response in flight

    # asyncio protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refuse beyond the connection cap; otherwise serve, with the header timer running."""
        if len(self.connections) >= self.guard.max_connections:
            self.transport = transport  # never added to the connections: not counted
            self._refuse(CONNECTION_CAP)
            return
        super().connection_made(transport)
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop this connection's timers, then let uvicorn clean up."""
        self._cancel_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's data_received, with the head timed and measured."""
        if self._refused:
            return  # lingering after a refusal: what comes now is discarded
        self._unset_keepalive_if_required()
        if not self._in_head and self._message_done and self._idle():
            self._begin_head()  # the first byte after a response, even a stray CRLF
        in_head, heads = self._in_head, self._heads
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if not self._refused:  # a callback that refused stopped the parser on purpose
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if in_head and self._in_head and self._heads == heads:  # the whole chunk is head
            self._head_raw += len(data)
            if self._head_raw > self.guard.max_header_bytes:
                self._refuse(HEADER_SIZE)

    # parser callbacks

    def on_message_begin(self) -> None:
        """A request starts; a pipelined one starts its head here."""
        super().on_message_begin()
        self._message_done, self._head_size = False, 0
        if not self._in_head:
            self._begin_head()

    def on_url(self, url: bytes) -> None:
        """Measure the URL (it may come in pieces)."""
        super().on_url(url)
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Measure one header line."""
        super().on_header(name, value)
        self._head_size += len(name) + len(value) + _HEADER_OVERHEAD

    def on_headers_complete(self) -> None:
        """Stop the timer; refuse a head over the limit, else hand the request to uvicorn."""
        self._cancel_header_timer()
        self._in_head, self._heads = False, self._heads + 1
        method, version = self.parser.get_method(), self.parser.get_http_version()
        size = self._head_size + len(method) + len(version) + _HEAD_OVERHEAD
        if size > self.guard.max_header_bytes:
            self._refuse(HEADER_SIZE)
            raise _Refused  # stops the parser: no application task for this request
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The request's body is complete."""
        self._message_done = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """After a response: the deferred refusal, or uvicorn's keep-alive and pipelining."""
        if self._pending is not None and not self.pipeline:
            self.server_state.total_requests += 1
            if not self.transport.is_closing():
                self._answer(self._pending)
            return
        super().on_response_complete()
        if self._in_head and not self._refused and self._idle():
            self._unset_keepalive_if_required()  # the next head has begun: not idle any more
            self._start_header_timer()

    # the guards

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _begin_head(self) -> None:
        self._in_head, self._head_raw, self._head_size = True, 0, 0
        if self._idle():  # a pipelined head is timed once the response before it is sent
            self._start_header_timer()

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            delay = self.guard.header_timeout_seconds
            self._header_timer = self.loop.call_later(delay, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self._refuse(HEADER_TIMEOUT)

    def _refuse(self, reason: str) -> None:
        if self._refused:
            return
        self._refused = True
        self._cancel_header_timer()
        self._unset_keepalive_if_required()
        _refusals.add(reason, self.transport.get_extra_info("peername"))
        if self._idle():
            self._answer(reason)
        else:
            self._pending = reason  # never written into the middle of a response

    def _answer(self, reason: str) -> None:
        error, headers = self._refusal(reason)
        self.transport.write(refusal_bytes(error, headers))
        self.connections.discard(self)  # it no longer counts against the cap
        if self.flow is not None:
            self.flow.resume_reading()  # keep reading, so what we discard leaves the buffer
        if self.transport.can_write_eof():
            # FIN after the answer, then read until the client closes (bounded): closing with
            # unread bytes would send a reset, which can destroy the answer before it is read.
            self.transport.write_eof()
            self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def _refusal(self, reason: str) -> tuple[FailcastError, list[tuple[bytes, bytes]]]:
        headers = list(self.server_state.default_headers)
        if reason == HEADER_TIMEOUT:
            wait = self.guard.header_timeout_seconds
            message = f"the headers did not arrive within {wait:g} s"
            return FailcastError(ErrorCode.REQUEST_TIMEOUT, message), headers
        if reason == HEADER_SIZE:
            message = f"the request line and headers exceed {self.guard.max_header_bytes} bytes"
            return FailcastError(ErrorCode.HEADERS_TOO_LARGE, message), headers
        headers.append((b"retry-after", b"1"))
        message = "too many open connections; retry later"
        return FailcastError(ErrorCode.SERVICE_UNAVAILABLE, message), headers


def guarded_protocol(limits: EdgeLimits) -> type[GuardedHttpToolsProtocol]:
    """The guard with explicit limits (tests, embedding) instead of the environment's."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
