"""The connection guard in-process: a fake transport, uvicorn's parser, the real protocol class."""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from graph.edge import connections
from graph.edge.connections import (
    CONNECTION_CAP,
    HEADER_SIZE,
    HEADER_TIMEOUT,
    PROTOCOL,
    EdgeLimits,
    RefusalCounter,
    connection_refusals,
    guarded_protocol,
    http_options,
    refusal_bytes,
)
from graph.errors import ErrorCode, FailcastError
from graph.settings import Settings

LIMITS = EdgeLimits(header_timeout_seconds=5.0, max_header_bytes=1024, max_connections=4)


class FakeTransport(asyncio.Transport):
    """Collects what the protocol writes; closes and half-closes on request."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.eof = False

    def write(self, data: Any) -> None:
        self.written += data

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        extra = {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}
        return extra.get(name, default)


class App:
    """An ASGI app answering 200 "ok"; `gate` (when set) holds the answer back."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        if self.gate is not None:
            await self.gate.wait()
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})


def _protocol(
    limits: EdgeLimits, app: App, state: ServerState | None = None, keep_alive: int = 5
) -> Any:
    config = Config(app=app, log_config=None, timeout_keep_alive=keep_alive, lifespan="off")
    protocol_class = guarded_protocol(limits)
    return protocol_class(
        config=config,
        server_state=state or ServerState(),
        app_state={},
        _loop=asyncio.get_running_loop(),
    )


def _connect(limits: EdgeLimits, **kwargs: Any) -> tuple[Any, FakeTransport, App]:
    app = App()
    protocol, transport = _protocol(limits, app, **kwargs), FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport, app


def head_of(size: int, path: str = "/") -> bytes:
    """A GET whose request line and headers (blank line included) are exactly `size` bytes."""
    start = f"GET {path} HTTP/1.1\r\nHost: test\r\nX-Pad: ".encode()
    pad = size - len(start) - len(b"\r\n\r\n")
    assert pad >= 0
    return start + b"a" * pad + b"\r\n\r\n"


def _answers(written: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The responses in `written`, each (status, headers, body); bodies by content-length."""
    answers, rest = [], bytes(written)
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers["content-length"])
        answers.append((int(lines[0].split()[1]), headers, rest[:length]))
        rest = rest[length:]
    return answers


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


async def _settle() -> None:
    for _ in range(5):  # let the application task run to its end
        await asyncio.sleep(0)


def test_a_head_exactly_at_the_limit_is_served():
    async def scenario() -> None:
        protocol, transport, app = _connect(LIMITS)
        protocol.data_received(head_of(1024))
        await _settle()
        assert app.paths == ["/"]
        assert [status for status, _, _ in _answers(transport.written)] == [200]
        assert not transport.closed
        protocol.connection_lost(None)

    _run(scenario)


def test_one_byte_past_the_limit_is_refused_with_431_and_counted():
    async def scenario() -> None:
        before = connection_refusals()[HEADER_SIZE]
        protocol, transport, app = _connect(LIMITS)
        protocol.data_received(head_of(1025))
        await _settle()
        assert app.paths == []
        [(status, headers, body)] = _answers(transport.written)
        assert status == 431
        assert headers["connection"] == "close"
        payload = json.loads(body)
        assert payload["errors"][0]["extensions"]["code"] == "HEADERS_TOO_LARGE"
        assert transport.eof  # half-closed at once, then lingering
        assert connection_refusals()[HEADER_SIZE] == before + 1
        protocol.connection_lost(None)

    _run(scenario)


def test_heads_sent_in_small_pieces_are_measured_exactly():
    async def scenario() -> None:
        for size, served in ((1024, True), (1025, False)):
            protocol, transport, app = _connect(LIMITS)
            head = head_of(size)
            for start in range(0, len(head), 7):
                protocol.data_received(head[start : start + 7])
            await _settle()
            assert (app.paths == ["/"]) is served
            assert _answers(transport.written)[0][0] == (200 if served else 431)
            protocol.connection_lost(None)

    _run(scenario)


def test_headers_that_never_end_are_refused_once_past_the_limit():
    async def scenario() -> None:
        protocol, transport, _ = _connect(LIMITS)
        protocol.data_received(b"GET / HTTP/1.1\r\nX-Pad: ")
        fed = 0
        while not transport.written and fed < 10 * 1024:  # bounded: refused after ~1 KiB
            protocol.data_received(b"a" * 256)
            fed += 256
        assert fed <= 1024 + 256
        assert _answers(transport.written)[0][0] == 431
        protocol.data_received(b"a" * 4096)  # lingering: discarded, no second answer
        assert len(_answers(transport.written)) == 1
        protocol.connection_lost(None)

    _run(scenario)


def test_a_silent_connection_is_answered_408_after_the_header_timeout():
    async def scenario() -> None:
        before = connection_refusals()[HEADER_TIMEOUT]
        protocol, transport, _ = _connect(EdgeLimits(0.05, 1024, 4))
        await asyncio.sleep(0.2)
        [(status, _, body)] = _answers(transport.written)
        assert status == 408
        assert json.loads(body)["errors"][0]["extensions"]["code"] == "REQUEST_TIMEOUT"
        assert connection_refusals()[HEADER_TIMEOUT] == before + 1
        protocol.connection_lost(None)

    _run(scenario)


def test_the_next_request_on_a_kept_alive_connection_is_timed_from_its_first_byte():
    async def scenario() -> None:
        protocol, transport, app = _connect(EdgeLimits(0.1, 1024, 4))
        protocol.data_received(head_of(200))
        await _settle()
        await asyncio.sleep(0.3)  # idle between requests: the keep-alive timeout's business
        assert [a[0] for a in _answers(transport.written)] == [200]
        protocol.data_received(b"GET / HT")
        await asyncio.sleep(0.3)
        assert [a[0] for a in _answers(transport.written)] == [200, 408]
        assert app.paths == ["/"]
        protocol.connection_lost(None)

    _run(scenario)


def test_an_idle_kept_alive_connection_is_still_closed_silently_by_uvicorn():
    async def scenario() -> None:
        protocol, transport, _ = _connect(EdgeLimits(0.1, 1024, 4), keep_alive=1)
        protocol.data_received(head_of(200))
        await _settle()
        await asyncio.sleep(1.3)
        assert transport.closed
        assert [a[0] for a in _answers(transport.written)] == [200]  # closed, no 408
        protocol.connection_lost(None)

    _run(scenario)


def test_a_connection_past_the_cap_gets_503_with_retry_after_and_no_app():
    async def scenario() -> None:
        before = connection_refusals()[CONNECTION_CAP]
        state = ServerState()
        opened = [_connect(LIMITS, state=state) for _ in range(LIMITS.max_connections)]
        assert len(state.connections) == LIMITS.max_connections
        protocol, transport, app = _connect(LIMITS, state=state)
        [(status, headers, body)] = _answers(transport.written)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert json.loads(body)["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert protocol not in state.connections
        assert connection_refusals()[CONNECTION_CAP] == before + 1
        protocol.data_received(head_of(100))  # whatever it sends now is discarded
        await _settle()
        assert app.paths == []
        opened[0][0].connection_lost(None)  # one leaves: the next is served
        protocol, transport, app = _connect(LIMITS, state=state)
        protocol.data_received(head_of(100))
        await _settle()
        assert _answers(transport.written)[0][0] == 200
        for other, _, _ in [*opened[1:], (protocol, None, None)]:
            other.connection_lost(None)

    _run(scenario)


def test_a_pipelined_refusal_waits_for_the_response_in_flight():
    async def scenario() -> None:
        protocol, transport, app = _connect(LIMITS)
        app.gate = asyncio.Event()
        protocol.data_received(head_of(100) + head_of(1025))
        await _settle()
        assert transport.written == b""  # nothing written into the first response's place
        app.gate.set()
        await _settle()
        assert [a[0] for a in _answers(transport.written)] == [200, 431]
        protocol.connection_lost(None)

    _run(scenario)


def test_refusals_are_logged_at_most_once_per_reason_per_period(caplog):
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    counter = RefusalCounter(period=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="failcast.edge"):
        for _ in range(500):
            counter.add(HEADER_TIMEOUT, "peer")
        counter.add(HEADER_SIZE, "peer")
        clock.now = 10.0
        counter.add(HEADER_TIMEOUT, "peer")
    lines = [r for r in caplog.records if r.name == "failcast.edge"]
    assert [r.reason for r in lines] == [HEADER_TIMEOUT, HEADER_SIZE, HEADER_TIMEOUT]
    assert [r.refusals for r in lines] == [1, 1, 500]  # the suppressed ones are told later
    assert counter.snapshot() == {HEADER_TIMEOUT: 501, HEADER_SIZE: 1, CONNECTION_CAP: 0}


def test_a_refusal_is_a_complete_answer_whose_request_id_matches_its_body():
    raw = refusal_bytes(FailcastError(ErrorCode.REQUEST_TIMEOUT, "slow"), [(b"server", b"uvicorn")])
    [(status, headers, body)] = _answers(raw)
    payload = json.loads(body)
    assert status == 408 and raw.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert payload["data"] is None
    error = payload["errors"][0]
    assert error == {
        "message": "slow",
        "extensions": {"code": "REQUEST_TIMEOUT", "requestId": headers["x-request-id"]},
    }
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"


def test_serve_uses_the_guard_and_falls_back_to_h11_with_a_header_cap(monkeypatch, caplog):
    settings = Settings(max_header_bytes=4096)
    assert http_options(settings) == {"http": PROTOCOL}
    monkeypatch.setattr(connections, "HTTPTOOLS", False)
    with caplog.at_level(logging.WARNING, logger="failcast.edge"):
        options = http_options(settings)
    assert options == {"http": "h11", "h11_max_incomplete_event_size": 4096}
    assert "httptools is not installed" in caplog.text


@pytest.mark.parametrize(
    ("name", "value"),
    [("header_timeout_seconds", 0), ("max_header_bytes", 1023), ("max_connections", 0)],
)
def test_settings_refuse_limits_out_of_bounds(name, value):
    with pytest.raises(ValueError):
        Settings(**{name: value})


def test_the_import_string_class_reads_its_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("FAILCAST_MAX_HEADER_BYTES", "2048")
    monkeypatch.setenv("FAILCAST_HEADER_TIMEOUT_SECONDS", "1.5")
    connections.environment_limits.cache_clear()
    try:
        assert connections.environment_limits() == EdgeLimits(1.5, 2048, 1000)
    finally:
        connections.environment_limits.cache_clear()
