"""Real uvicorn processes on loopback, a bounded load generator, and checks of what was stored.

Shared by the suites that test the service as it runs in production: one `failcast serve`
process (uvicorn behind the connection guard) serving the app factory over TCP, with real
tokens, killed or signalled like a real deployment would be.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from support import ORIGINAL_EXAMPLE, REPO_ROOT

from auth import ALL_SCOPES, AuthConfig, mint_token

SECRET = "uvicorn-suite-" + "k" * 40
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
PREDICT = "mutation P($i: PredictInput!) { predict(input: $i) { id label } }"
PREDICT_BATCH = "mutation B($is: [PredictInput!]!) { predictBatch(inputs: $is) { id } }"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on a loopback address right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def make_token(subject: str = "load") -> str:
    """A token with every scope, signed with the servers' secret."""
    return mint_token(AuthConfig(secret=SECRET), subject, ALL_SCOPES, timedelta(minutes=10))


@dataclass
class Server:
    """A running uvicorn process and where it answers."""

    process: subprocess.Popen[bytes]
    base: str
    log_path: Path | None = None

    def get(self, path: str, timeout: float = 5.0) -> httpx.Response:
        """GET a path of the server."""
        return httpx.get(f"{self.base}{path}", timeout=timeout)

    def wait_status(self, path: str, status: int, timeout: float) -> httpx.Response:
        """Poll `path` (every 0.1 s, at most `timeout` s) until it answers `status`."""
        deadline = time.monotonic() + timeout
        last: httpx.Response | str | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log()[-3000:]
                raise AssertionError(f"uvicorn exited ({self.process.returncode})\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                last = self.get(path, timeout=4)
                if last.status_code == status:
                    return last
            time.sleep(0.1)
        detail = last.text if isinstance(last, httpx.Response) else last
        raise AssertionError(f"{path} did not answer {status} within {timeout} s: {detail}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> float:
        """Send a signal and wait for the exit (killed after `timeout`); seconds it took."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        return time.monotonic() - started

    def log(self) -> str:
        """What the process wrote to stdout and stderr so far (when captured)."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def run_server(
    database_url: str,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    ready: bool = True,
    host: str = "127.0.0.1",
) -> Iterator[Server]:
    """`failcast serve` on a free loopback port: the app factory behind the connection guard.

    `host` is a loopback address (127.0.0.0/8): servers of one test may each have their own.

    Waits until /readyz answers 200 (`ready`) or /healthz does (the process is up but may be
    unready, e.g. without its database); stops the process at the end, killing it if needed.
    """
    if not host.startswith("127."):
        raise ValueError("test servers listen on loopback addresses only")
    port = free_port(host)
    full_env = {
        **os.environ,
        "FAILCAST_DATABASE_URL": database_url,
        "FAILCAST_JWT_SECRET": SECRET,
        "FAILCAST_LOG_LEVEL": "warning",
        **(env or {}),
    }
    serve = ["failcast", "serve", "--host", host, "--port", str(port)]
    command = [sys.executable, "-m", *serve]
    with contextlib.ExitStack() as stack:
        out: TextIO | None = None
        if log_path is not None:
            out = stack.enter_context(log_path.open("w", encoding="utf-8"))
        process = subprocess.Popen(
            command,
            env=full_env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )
        server = Server(process, f"http://{host}:{port}", log_path)
        try:
            server.wait_status("/readyz" if ready else "/healthz", 200, START_TIMEOUT_S)
            yield server
        finally:
            server.stop()


# -- load -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one client request got back."""

    device_ids: list[str]
    started: float  # time.monotonic() when sent
    elapsed: float
    status: int | None = None  # None: no HTTP answer (refused, reset, timed out)
    code: str | None = None  # the first error's extensions.code
    prediction_ids: list[str] = field(default_factory=list)
    request_id: str | None = None  # X-Request-ID: the audit row's id
    error: str | None = None  # the transport error, when there was no answer
    body: str = ""

    @property
    def finished(self) -> float:
        """time.monotonic() when the answer (or the error) came."""
        return self.started + self.elapsed

    @property
    def ok(self) -> bool:
        """A 200 carrying predictions: the client saw them, so they must be stored."""
        return self.status == 200 and bool(self.prediction_ids)


def _body(device_ids: list[str]) -> dict[str, Any]:
    inputs = [{**ORIGINAL_EXAMPLE, "deviceId": device} for device in device_ids]
    if len(inputs) == 1:
        return {"query": PREDICT, "variables": {"i": inputs[0]}}
    return {"query": PREDICT_BATCH, "variables": {"is": inputs}}


def _read(outcome: Outcome, response: httpx.Response) -> None:
    outcome.status = response.status_code
    outcome.request_id = response.headers.get("x-request-id")
    outcome.body = response.text[:500]
    try:
        payload = response.json()
    except ValueError:
        return
    errors = payload.get("errors") or [] if isinstance(payload, dict) else []
    if errors:
        outcome.code = (errors[0].get("extensions") or {}).get("code")
    data = payload.get("data") if isinstance(payload, dict) else None
    if data and data.get("predict"):
        outcome.prediction_ids = [data["predict"]["id"]]
    elif data and data.get("predictBatch"):
        outcome.prediction_ids = [p["id"] for p in data["predictBatch"]]


class Load:
    """Client threads sending predictions in a loop until stopped (bounded in count and time).

    Every input carries a unique deviceId (`<prefix>-<worker>-<n>[-<k>]`), so each request can
    be found in the database whatever the client saw.
    """

    def __init__(
        self,
        base: str,
        workers: int = 8,
        prefix: str = "load",
        batch_size: int = 1,
        timeout: httpx.Timeout | None = None,
        max_seconds: float = 30.0,
        max_requests_per_worker: int = 2000,
    ) -> None:
        self.base = base
        self.prefix = prefix
        self.batch_size = batch_size
        self.timeout = timeout or httpx.Timeout(20.0, connect=2.0)
        self.deadline = time.monotonic() + max_seconds
        self.max_requests = max_requests_per_worker
        self.token = make_token(prefix)
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(n,), name=f"load-{n}", daemon=True)
            for n in range(workers)
        ]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout: float = 25.0) -> list[Outcome]:
        """Stop sending, wait (bounded) for the requests in flight; every outcome so far."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "load threads still running"
        return self.snapshot()

    def snapshot(self) -> list[Outcome]:
        """The outcomes so far, in completion order."""
        with self._lock:
            return list(self.outcomes)

    def wait_ok(self, count: int, timeout: float = 10.0) -> None:
        """Wait until `count` requests got their predictions (traffic is flowing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(o.ok for o in self.snapshot()) >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f"fewer than {count} predictions answered in {timeout} s")

    def _work(self, worker: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=self.timeout) as client:
            for n in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() > self.deadline:
                    return
                outcome = self._send(client, f"{self.prefix}-{worker}-{n}")
                with self._lock:
                    self.outcomes.append(outcome)
                if outcome.status is None:
                    time.sleep(0.05)  # the server is away: do not spin

    def _send(self, client: httpx.Client, name: str) -> Outcome:
        if self.batch_size == 1:
            devices = [name]
        else:
            devices = [f"{name}-{k}" for k in range(self.batch_size)]
        outcome = Outcome(devices, time.monotonic(), 0.0)
        try:
            _read(outcome, client.post("/graphql", json=_body(devices)))
        except httpx.HTTPError as error:
            outcome.error = f"{type(error).__name__}: {error}"
        outcome.elapsed = time.monotonic() - outcome.started
        return outcome


# -- what the database holds ------------------------------------------------------------------


@dataclass(frozen=True)
class StoredPrediction:
    """A prediction row, joined to its audit row (None when the audit row is missing)."""

    id: uuid.UUID
    device_id: str | None
    audit_event_id: uuid.UUID
    audit_id: uuid.UUID | None
    predictions_created: int | None


def stored_predictions(engine: Engine) -> list[StoredPrediction]:
    """Every prediction LEFT JOINed to its audit row."""
    from persistence import AuditEvent, Prediction

    query = sa.select(
        Prediction.id,
        Prediction.device_id,
        Prediction.audit_event_id,
        AuditEvent.id,
        AuditEvent.predictions_created,
    ).outerjoin(AuditEvent, AuditEvent.id == Prediction.audit_event_id)  # type: ignore[arg-type]
    with engine.connect() as connection:
        return [StoredPrediction(*row) for row in connection.execute(query)]


def audit_ids(engine: Engine) -> set[uuid.UUID]:
    """The ids of every audit row."""
    from persistence import AuditEvent

    with engine.connect() as connection:
        return set(connection.execute(sa.select(AuditEvent.id)).scalars())  # type: ignore[arg-type]


def missing_from_store(outcomes: list[Outcome], engine: Engine) -> list[str]:
    """Why any answered prediction is not stored exactly as the client was told (empty: ok)."""
    by_id = {str(row.id): row for row in stored_predictions(engine)}
    problems = []
    for outcome in (o for o in outcomes if o.ok):
        for prediction_id, device in zip(outcome.prediction_ids, outcome.device_ids, strict=True):
            row = by_id.get(prediction_id)
            if row is None:
                problems.append(f"{prediction_id} ({device}) answered but not stored")
            elif row.audit_id is None:
                problems.append(f"{prediction_id} ({device}) stored without its audit row")
            elif str(row.audit_id) != outcome.request_id or row.device_id != device:
                problems.append(f"{prediction_id} ({device}) stored under another request/device")
    return problems


class HealthPoller:
    """GET /healthz every 50 ms on its own kept-alive connection, timing each answer."""

    def __init__(self, server: Server, max_seconds: float = 15.0) -> None:
        self.base, self.deadline = server.base, time.monotonic() + max_seconds
        self.answers: list[tuple[int | None, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "HealthPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive()

    def assert_fast(self, at_least: int = 5) -> None:
        """Every probe answered 200 within 250 ms, and at most one in twenty took 100 ms or more.
        The pauses these tests guard against stopped the loop for 300 ms and more on every
        costly request; the suite runs on every core (pytest-xdist), so a probe may also wait
        for a core now and then (CI once saw one at 124 ms)."""
        failed = [(status, round(s, 3)) for status, s in self.answers if status != 200 or s >= 0.25]
        slow = [round(s, 3) for _, s in self.answers if s >= 0.1]
        assert len(self.answers) >= at_least and not failed, failed
        assert len(slow) <= len(self.answers) // 20, slow

    def _poll(self) -> None:
        with httpx.Client(base_url=self.base, timeout=2.0) as client:
            for _ in range(400):
                if self._stop.is_set() or time.monotonic() > self.deadline:
                    return
                started = time.monotonic()
                try:
                    status: int | None = client.get("/healthz").status_code
                except httpx.HTTPError:
                    status = None
                self.answers.append((status, time.monotonic() - started))
                time.sleep(0.05)


def audit_rows(engine: Engine) -> dict[str, dict[str, Any]]:
    """Every audit row, keyed by its request id without dashes (SQLite stores them so)."""
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM audit_event")).all()
    return {str(r.id).replace("-", ""): dict(r._mapping) for r in rows}


def wait_audit_row(engine: Engine, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The audit row of a request, waiting (polling) up to `timeout` s for it to be written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = audit_rows(engine).get(request_id.replace("-", ""))
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no audit row for request {request_id} within {timeout} s")
