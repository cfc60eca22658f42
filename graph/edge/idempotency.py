"""Idempotency-Key on POST /graphql (mutations) and POST /predict: repeats get the first answer.

A client that timed out cannot tell whether its prediction was stored; with a key it can simply
send the same request again. The first request with a key (per token subject) runs, and its
answer is stored under the key in the same transaction as its predictions and audit row (a
`Remember` effect), so the key is taken exactly when they are committed. A repeat with the same
key and the same method, path and body bytes within FAILCAST_IDEMPOTENCY_TTL_HOURS gets that
answer byte for byte, marked `Idempotent-Replayed: true`, and stores nothing but its own audit
row (`replay_of` names the original). The same key with another body is IDEMPOTENCY_KEY_REUSED
(422). A repeat arriving while the first is still running on this server waits for it (at most
FAILCAST_IDEMPOTENCY_WAIT_SECONDS), else gets IDEMPOTENCY_KEY_IN_USE (409, Retry-After); two
that run at once on two servers meet at commit, where the second is refused the same way and
stores nothing.

Only answers that say what the request did are stored: a success, or a refusal of its input.
Refusals that may go away (a token, a scope, a rate limit, a timeout, an unavailable model or
database) are not, so a retry after one runs again.
"""

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from auth import Principal
from graph.errors import ErrorCode, FailcastError
from graph.runtime import Runtime
from graph.runtime.audit import RequestAudit
from graph.runtime.usecases import read
from persistence import PersistenceError, idempotency

HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY = 255
# Answers a retry might change: never stored under a key.
TRANSIENT = frozenset(
    {
        ErrorCode.UNAUTHENTICATED,
        ErrorCode.FORBIDDEN,
        ErrorCode.RATE_LIMITED,
        ErrorCode.REQUEST_TIMEOUT,
        ErrorCode.CLIENT_CLOSED_REQUEST,
        ErrorCode.TIMEOUT,
        ErrorCode.MODEL_UNAVAILABLE,
        ErrorCode.SERVICE_UNAVAILABLE,
        ErrorCode.INTERNAL_SERVER_ERROR,
        ErrorCode.IDEMPOTENCY_KEY_IN_USE,
        ErrorCode.CONFLICT,
    }
)
WRITES = frozenset({"mutation", "rest"})  # operation types whose answers keys keep


def key_of(request: Request) -> str | None:
    """The request's Idempotency-Key, checked; None without one (BAD_REQUEST when malformed)."""
    values = request.headers.getlist(HEADER)
    if not values:
        return None
    key = values[0]
    if len(values) > 1 or not 1 <= len(key) <= MAX_KEY or not _printable_ascii(key):
        message = f"Idempotency-Key must be one header of 1..{MAX_KEY} printable ASCII characters"
        raise FailcastError(ErrorCode.BAD_REQUEST, message)
    return key


def _printable_ascii(text: str) -> bool:
    return all(" " <= c <= "~" for c in text)


def fingerprint(request: Request, body: bytes) -> str:
    """sha256 of what makes two requests the same: method, path and body bytes."""
    digest = hashlib.sha256(f"{request.method} {request.url.path}\n".encode())
    digest.update(body)
    return digest.hexdigest()


@dataclass
class Claim:
    """A request that runs under its key: remember its answer if it is one to keep."""

    gate: "IdempotencyGate"
    subject: str
    key: str
    request_sha256: str

    def remember(self, audit: RequestAudit, response: Response) -> None:
        """Store the answer with the request's rows, when it says what the request did."""
        codes = audit.error_codes
        if audit.operation_type not in WRITES or response.status_code >= 500:
            return
        if any(code in TRANSIENT for code in codes):
            return
        now = datetime.now(UTC)
        answer = idempotency.StoredAnswer(
            self.request_sha256,
            audit.id,
            audit.operation_type,
            audit.operation_name,
            response.status_code,
            response.media_type or "application/json",
            bytes(response.body),
            list(codes),
        )
        expires = now + timedelta(hours=self.gate.runtime.settings.idempotency_ttl_hours)
        remember = idempotency.Remember(self.subject, self.key, answer, now, expires)
        audit.add_effect(remember, with_errors=True)  # a refusal of the input is kept too


class IdempotencyGate:
    """One per app: the keys running on this server, and the stored answers."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._running: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def enter(
        self, request: Request, audit: RequestAudit, principal: Principal, body: bytes
    ) -> Claim | Response | None:
        """None without a key; the stored answer (a Response) for a repeat; else a Claim."""
        key = key_of(request)
        if key is None:
            return None
        audit.idempotency_key = key
        subject, digest = principal.subject, fingerprint(request, body)
        slot = (subject, key)
        while (running := self._running.get(slot)) is not None:
            wait = self.runtime.settings.idempotency_wait_seconds
            try:
                await asyncio.wait_for(asyncio.shield(running), wait)
            except TimeoutError:
                raise _in_use() from None
        # Taken with no await since the check: one request per key and subject at a time here.
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[slot] = done

        def release() -> None:
            if self._running.get(slot) is done:
                del self._running[slot]
            if not done.done():
                done.set_result(None)

        audit.on_finish(release)
        stored = await self._find(subject, key)
        if stored is not None:
            return _replay(stored, digest, audit)
        return Claim(self, subject, key, digest)

    async def _find(self, subject: str, key: str) -> idempotency.StoredAnswer | None:
        """The stored answer, read within the commit timeout (a stalled database: 503)."""
        lookup = read(
            self.runtime.engine, lambda s: idempotency.find(s, subject, key, datetime.now(UTC))
        )
        try:
            return await asyncio.wait_for(lookup, self.runtime.settings.commit_timeout_seconds)
        except TimeoutError:
            message = "the database did not answer in time to check the Idempotency-Key; retry"
            raise FailcastError(ErrorCode.SERVICE_UNAVAILABLE, message, stored=False) from None
        except PersistenceError as error:
            raise FailcastError(
                ErrorCode.SERVICE_UNAVAILABLE,
                "the Idempotency-Key could not be checked; retry",
                stored=False,
            ) from error


def _replay(stored: idempotency.StoredAnswer, digest: str, audit: RequestAudit) -> Response:
    if stored.request_sha256 != digest:
        raise FailcastError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was used with another request: use a new key for a new request",
        )
    audit.describe(stored.operation_type, stored.operation_name, None)
    audit.replay_of = stored.request_id
    audit.answered_with(stored.error_codes)
    headers = {REPLAYED: "true"}
    return Response(stored.body, stored.status, headers, media_type=stored.content_type)


def _in_use() -> FailcastError:
    return FailcastError(
        ErrorCode.IDEMPOTENCY_KEY_IN_USE,
        "a request with this Idempotency-Key is still running: retry after Retry-After",
    )
