"""The audit record of one request: filled in through a small interface, written once at the end.

The edge opens it (`begin`), notes who called (`authenticated` / `token_refused`), what ran
(`describe`) and which errors the answer carries (`answered_with`); the predict use case adds its
predictions (`add_predictions`), a model switch or an outcome its change (`add_effect`).
`record(status)` turns it into the rows to commit. A request whose answer carries any error
stores no prediction and makes no change: the client only ever learns of an answer without
errors, so rows behind an error answer would be rows nobody was told about. What must follow a
change once it is committed (serving the new model) runs from `committed()`, which the edge
calls after COMMIT.
"""

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from auth import Principal
from graph.errors import outcome_of
from persistence import Effect, PredictionBlock, RequestRecord, new_id

log = logging.getLogger("failcast.audit")


@dataclass(frozen=True)
class Made:
    """Predictions one call made, and the name of the model version that made them."""

    block: PredictionBlock
    model_version: str


@dataclass
class RequestAudit:
    """What a request did, as the audit trail will hold it."""

    id: uuid.UUID
    received_at: datetime
    started: float
    method: str
    path: str
    client_addr: str | None
    user_agent: str | None
    client_request_id: str | None = None
    principal: Principal | None = None
    auth_failure: str | None = None
    operation_type: str | None = None
    operation_name: str | None = None
    query_sha256: str | None = None
    idempotency_key: str | None = None
    replay_of: uuid.UUID | None = None  # the request whose stored answer this one replays
    subscription_event: str | None = None  # 'start' or 'end' of a subscription
    subscription_id: uuid.UUID | None = None  # the subscription's id: its start row's
    _codes: list[str] = field(default_factory=list)
    _made: list[Made] = field(default_factory=list)
    _effects: list[tuple[Effect, bool]] = field(default_factory=list)  # (effect, with errors)
    _on_commit: list[Callable[[], None]] = field(default_factory=list)
    _on_finish: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def begin(
        cls,
        method: str,
        path: str,
        client_addr: str | None,
        user_agent: str | None,
        client_request_id: str | None = None,
    ) -> "RequestAudit":
        """Start the audit of a request as it arrives."""
        return cls(
            id=new_id(),
            received_at=datetime.now(UTC),
            started=time.perf_counter(),
            method=method[:16],
            path=path[:255],
            client_addr=client_addr[:64] if client_addr else None,
            user_agent=user_agent[:512] if user_agent else None,
            client_request_id=client_request_id,
        )

    @property
    def subject(self) -> str | None:
        """The token's subject, when the request carried a valid token."""
        return self.principal.subject if self.principal else None

    @property
    def error_codes(self) -> list[str]:
        """The codes of the errors the answer carries, each once, in order."""
        return list(self._codes)

    @property
    def made(self) -> Sequence[Made]:
        """The predictions the request made (stored only if its answer has no error)."""
        return tuple(self._made)

    def authenticated(self, principal: Principal) -> None:
        """The request carried a valid token."""
        self.principal = principal

    def token_refused(self, reason: str) -> None:
        """The request carried no valid token; `reason` is auth's stable reason (or missing)."""
        self.auth_failure = reason[:32]

    def describe(
        self, operation_type: str | None, name: str | None, query_sha256: str | None
    ) -> None:
        """Name the operation the request ran."""
        self.operation_type = operation_type
        self.operation_name = name[:255] if name else None
        self.query_sha256 = query_sha256

    def answered_with(self, codes: Sequence[str]) -> None:
        """Note the error codes the answer carries."""
        for code in codes:
            if code not in self._codes:
                self._codes.append(code)

    def add_predictions(self, block: PredictionBlock, model_version: str) -> None:
        """Queue predictions to be committed with this request's audit row."""
        self._made.append(Made(block, model_version))

    def add_effect(
        self,
        effect: Effect,
        on_commit: Callable[[], None] | None = None,
        with_errors: bool = False,
    ) -> None:
        """Queue a change to be committed with this request's audit row.

        A change is dropped if the answer carries an error, unless `with_errors` (a record of
        the answer itself, like the one an Idempotency-Key keeps).
        """
        self._effects.append((effect, with_errors))
        if on_commit is not None:
            self._on_commit.append(on_commit)

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run `hook` once this request's rows are committed (never if they are not)."""
        self._on_commit.append(hook)

    def answer_replaced(self) -> None:
        """The answer was replaced by a refusal of the edge (a 503, a 409): nothing it did or
        said may be committed, not even a record of the answer."""
        self._effects.clear()
        self._on_commit.clear()

    def committed(self) -> None:
        """The request's rows and changes are committed: run what must follow them."""
        if self._codes:
            return
        for hook in self._on_commit:
            try:
                hook()
            except Exception:  # the change is committed; pollers and listeners catch up
                log.exception("after-commit step failed [request %s]", self.id)

    def on_finish(self, hook: Callable[[], None]) -> None:
        """Run `hook` when the request is over, whatever its fate (committed or not)."""
        self._on_finish.append(hook)

    def finish(self) -> None:
        """The request is over: its answer is decided and its rows committed or given up."""
        hooks, self._on_finish = self._on_finish, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("end-of-request step failed [request %s]", self.id)

    def subscription_started(self) -> None:
        """This request starts a subscription: its row is the start row, and names it."""
        self.subscription_event, self.subscription_id = "start", self.id

    def subscription_ended(self, codes: Sequence[str]) -> "RequestAudit":
        """The audit of the end of the subscription this request started: a row of its own,
        naming the subscription, from its start to now, with the codes of why it ended."""
        end = RequestAudit(
            id=new_id(),
            received_at=self.received_at,
            started=self.started,
            method=self.method,
            path=self.path,
            client_addr=self.client_addr,
            user_agent=self.user_agent,
            client_request_id=self.client_request_id,
            principal=self.principal,
            operation_type=self.operation_type,
            operation_name=self.operation_name,
            query_sha256=self.query_sha256,
            subscription_event="end",
            subscription_id=self.subscription_id,
        )
        end.answered_with(codes)
        return end

    def stored(self) -> list[Made]:
        """The predictions that will be stored: all of them, unless the answer has errors."""
        return [] if self._codes else list(self._made)

    def record(self, status: int) -> RequestRecord:
        """The rows this request leaves: its audit event and, if it answered them, predictions."""
        elapsed = time.perf_counter() - self.started
        blocks = [made.block for made in self.stored()]
        row = {
            "id": self.id,
            "received_at": self.received_at,
            "finished_at": self.received_at + timedelta(seconds=elapsed),
            "duration_ms": round(elapsed * 1000, 3),
            "subject": self.subject[:255] if self.subject else None,
            "client_addr": self.client_addr,
            "client_request_id": self.client_request_id,
            "user_agent": self.user_agent,
            "http_method": self.method,
            "http_path": self.path,
            "http_status": status,
            "operation_type": self.operation_type,
            "operation_name": self.operation_name,
            "query_sha256": self.query_sha256,
            "outcome": str(outcome_of(self._codes, status)),
            "error_codes": list(self._codes),
            "auth_failure": self.auth_failure,
            "idempotency_key": self.idempotency_key,
            "replay_of": self.replay_of,
            "subscription_event": self.subscription_event,
            "subscription_id": self.subscription_id,
            "predictions_created": sum(len(block) for block in blocks),
        }
        effects = [effect for effect, kept in self._effects if kept or not self._codes]
        return RequestRecord(audit=row, predictions=blocks, effects=effects)
