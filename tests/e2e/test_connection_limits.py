"""A real `failcast serve` attacked over raw loopback sockets: slow and huge headers, too many
connections. Each is refused with a clean JSON answer while the server keeps serving others."""

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from servers import (
    SECRET,
    HealthPoller,
    Server,
    free_port,
    make_token,
    run_server,
    wait_audit_row,
)
from support import REPO_ROOT

from failcast.workers import reuse_port_available

HEADER_TIMEOUT_S = 1.5
BODY_TIMEOUT_S = 1.5
MAX_HEADER_BYTES = 4096
MAX_CONNECTIONS = 8
KEEP_ALIVE_S = 5.0  # uvicorn's default, which failcast serve keeps
ENV = {
    "FAILCAST_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_S),
    "FAILCAST_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
    "FAILCAST_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "FAILCAST_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_S),
}
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture
def server(db_url, db_engine, tmp_path: Path) -> Iterator[Server]:
    """`failcast serve` with small connection limits; its log must hold no traceback."""
    with run_server(db_url, ENV, tmp_path / "uvicorn.log", ready=False) as running:
        yield running
        log = running.log()
    assert "Traceback" not in log, log


@dataclass
class Answer:
    """One HTTP response read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def code(self) -> str:
        """The first error's extensions.code, checked to carry the X-Request-ID."""
        payload = json.loads(self.body)
        assert payload["data"] is None
        extensions = payload["errors"][0]["extensions"]
        assert extensions["requestId"] == self.headers["x-request-id"]
        return str(extensions["code"])


def _port(server: Server) -> int:
    return int(server.base.rsplit(":", 1)[1])


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", _port(server)), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head_of(size: int, path: str = "/healthz") -> bytes:
    """A GET whose request line and headers (the blank line included) are exactly `size` bytes."""
    start = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ".encode()
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    return sock.recv(65536)


def read_answer(sock: socket.socket, timeout: float = 5.0) -> Answer:
    """Read one response (its body by content-length), waiting at most `timeout` s."""
    deadline, data = time.monotonic() + timeout, b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock, deadline)
        assert chunk, f"closed before a complete answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = _recv(sock, deadline)
        assert chunk, "closed in the middle of the body"
        body += chunk
    return Answer(int(lines[0].split()[1]), headers, body)


def closed_within(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes the connection (EOF) within `timeout` s, sending nothing."""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        return _recv(sock, time.monotonic() + timeout) == b""
    return False


def send_slowly(sock: socket.socket, data: bytes, interval: float, timeout: float) -> bytes:
    """Send one byte every `interval` s until the server answers and closes; what it sent."""
    deadline, received, sent = time.monotonic() + timeout, b"", 0
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], interval)
        if readable:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
        elif sent < len(data):
            with contextlib.suppress(OSError):  # the server may be gone already
                sock.sendall(data[sent : sent + 1])
            sent += 1
    raise AssertionError(f"not closed within {timeout} s; received {received!r}")


def _parse(raw: bytes) -> Answer:
    reader, writer = socket.socketpair()
    with reader, writer:
        writer.sendall(raw)
        return read_answer(reader, timeout=1)


def test_slow_headers_get_408_and_close_while_healthz_stays_fast(server):
    with HealthPoller(server) as poller, _connect(server) as sock:
        started = time.monotonic()
        received = send_slowly(sock, HEALTHZ, 0.5, HEADER_TIMEOUT_S + 3)
        closed_after = time.monotonic() - started
    answer = _parse(received)
    assert answer.status == 408 and answer.code() == "REQUEST_TIMEOUT"
    assert answer.headers["connection"] == "close"
    assert HEADER_TIMEOUT_S - 0.1 <= closed_after <= HEADER_TIMEOUT_S + 1.0, closed_after
    poller.assert_fast(at_least=15)


def test_a_connection_that_sends_nothing_gets_408_after_the_timeout(server):
    with _connect(server) as sock:
        started = time.monotonic()
        answer = read_answer(sock, timeout=HEADER_TIMEOUT_S + 1)
        assert time.monotonic() - started >= HEADER_TIMEOUT_S - 0.1
        assert answer.status == 408 and answer.code() == "REQUEST_TIMEOUT"
        assert closed_within(sock, 1.0)


def test_a_head_exactly_at_the_limit_is_served_and_one_byte_more_is_431(server):
    statuses = {}
    for size in range(MAX_HEADER_BYTES - 2, MAX_HEADER_BYTES + 3):
        with _connect(server) as sock:
            sock.sendall(head_of(size))
            answer = read_answer(sock)
        statuses[size] = answer.status
        if size <= MAX_HEADER_BYTES:
            assert json.loads(answer.body) == {"status": "ok"}
        else:
            assert answer.code() == "HEADERS_TOO_LARGE"
            assert answer.headers["content-type"] == "application/json"
    assert statuses == {
        size: 200 if size <= MAX_HEADER_BYTES else 431
        for size in range(MAX_HEADER_BYTES - 2, MAX_HEADER_BYTES + 3)
    }
    time.sleep(0.2)  # the log line of the first refusal, and no more: one per 10 s
    assert server.log().count("(headers_too_large)") == 1, server.log()


def test_eight_mib_of_headers_get_431_quickly_and_the_server_stays_healthy(server):
    flood = head_of(8 * 1024 * 1024, "/")

    def send() -> None:
        with contextlib.suppress(OSError):  # the server stops reading: reset or broken pipe
            sock.sendall(flood)

    with _connect(server) as sock:
        sender = threading.Thread(target=send, daemon=True)
        started = time.monotonic()
        sender.start()
        answer = read_answer(sock, timeout=5)
        elapsed = time.monotonic() - started
        sock.shutdown(socket.SHUT_RDWR)  # wakes the sender if it is still blocked
        sender.join(timeout=5)
        assert not sender.is_alive()
    assert answer.status == 431 and answer.code() == "HEADERS_TOO_LARGE"
    assert elapsed < 1.0, elapsed
    assert server.get("/healthz").status_code == 200
    metrics = server.get("/metrics").text
    assert 'failcast_connections_refused_total{reason="headers_too_large"} 1.0' in metrics


def _served_connection(server: Server) -> socket.socket:
    """A connection that got a 200 and stays open, kept alive and idle."""
    for _ in range(40):  # the start-up polls' connections may take a moment to go
        sock = _connect(server)
        sock.sendall(HEALTHZ)
        if read_answer(sock).status == 200:
            return sock
        sock.close()
        time.sleep(0.05)
    raise AssertionError("no connection was served")


def test_connections_past_the_cap_get_503_and_a_freed_slot_serves_again(server):
    opened = [_served_connection(server) for _ in range(MAX_CONNECTIONS)]
    try:
        with _connect(server) as extra:
            started = time.monotonic()
            extra.sendall(HEALTHZ)
            answer = read_answer(extra)
            assert time.monotonic() - started < 0.5
            assert answer.status == 503 and answer.code() == "SERVICE_UNAVAILABLE"
            assert answer.headers["retry-after"] == "1"
            assert closed_within(extra, 1.0)
        opened.pop().close()
        for _ in range(40):  # until the server has seen the close (bounded: 2 s)
            with _connect(server) as again:
                again.sendall(HEALTHZ)
                if read_answer(again).status == 200:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("a freed slot was not given to a new connection")
    finally:
        for sock in opened:
            sock.close()


def test_a_slow_second_request_on_a_kept_alive_connection_gets_408(server):
    with _connect(server) as sock:
        sock.sendall(HEALTHZ)
        assert read_answer(sock).status == 200
        started = time.monotonic()
        received = send_slowly(sock, HEALTHZ, 0.5, HEADER_TIMEOUT_S + 3)
        closed_after = time.monotonic() - started
    answer = _parse(received)
    assert answer.status == 408 and answer.code() == "REQUEST_TIMEOUT"
    assert HEADER_TIMEOUT_S - 0.1 <= closed_after <= HEADER_TIMEOUT_S + 1.0, closed_after


def test_an_idle_kept_alive_connection_is_still_closed_by_the_keep_alive_timeout(server):
    with _connect(server) as sock:
        sock.sendall(HEALTHZ)
        assert read_answer(sock).status == 200
        started = time.monotonic()
        assert closed_within(sock, KEEP_ALIVE_S + 2)  # silently: no 408 for an idle client
        assert time.monotonic() - started >= KEEP_ALIVE_S - 0.5


@pytest.mark.skipif(not reuse_port_available(), reason="no SO_REUSEPORT here")
def test_every_worker_of_serve_workers_runs_behind_the_guard(db_url, db_engine):
    port = free_port()
    env = {**os.environ, **ENV, "FAILCAST_DATABASE_URL": db_url, "FAILCAST_JWT_SECRET": SECRET}
    env["FAILCAST_LOG_LEVEL"] = "warning"
    command = [sys.executable, "-m", "failcast", "serve", "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--workers", "2"], env=env, cwd=REPO_ROOT
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        server.wait_status("/healthz", 200, 30)
        # The kernel spreads connections over both workers by a hash of each: with 16, one
        # worker without the guard would answer about half of them.
        for _ in range(16):
            with _connect(server) as sock:
                sock.sendall(head_of(MAX_HEADER_BYTES + 1))
                assert read_answer(sock).status == 431
    finally:
        server.stop(signal.SIGTERM)
    assert process.returncode == 0


def _post_head(length: int) -> bytes:
    return (
        "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {make_token('slow')}\r\ncontent-length: {length}\r\n\r\n"
    ).encode()


def test_a_body_that_arrives_too_slowly_gets_408_and_is_audited(server, db_engine):
    body = json.dumps({"query": "{ me { subject } }"}).encode()
    with HealthPoller(server) as poller, _connect(server) as sock:
        sock.sendall(_post_head(len(body)))
        started = time.monotonic()
        received = send_slowly(sock, body, 0.5, BODY_TIMEOUT_S + 3)
        elapsed = time.monotonic() - started
    answer = _parse(received)
    assert answer.status == 408 and answer.code() == "REQUEST_TIMEOUT"
    assert BODY_TIMEOUT_S - 0.1 <= elapsed <= BODY_TIMEOUT_S + 1.0, elapsed
    poller.assert_fast(at_least=1)
    row = wait_audit_row(db_engine, json.loads(answer.body)["errors"][0]["extensions"]["requestId"])
    assert (row["http_status"], row["outcome"]) == (408, "invalid")


def test_a_dropped_upload_is_audited_as_the_client_leaving_without_a_traceback(server, db_engine):
    before = time.time()
    with _connect(server) as sock:
        sock.sendall(_post_head(1000) + b'{"query": "{ me')
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with db_engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT http_status, outcome, error_codes FROM audit_event")
            ).all()
        if rows:
            break
        time.sleep(0.05)
    assert [(r[0], r[1]) for r in rows] == [(499, "invalid")], rows
    assert "CLIENT_CLOSED_REQUEST" in str(rows[0][2])
    assert "Traceback" not in server.log() and time.time() - before < 6
