"""GraphQL types of the audit trail (read-only: there is no way to change it through the API)."""

from collections.abc import Awaitable, Callable
from datetime import datetime

import strawberry

from graph.schema.types import PageInfoType
from persistence import AuditEvent


@strawberry.type(name="AuditEvent", description="One API request, as the audit trail holds it.")
class AuditEventType:
    id: strawberry.ID = strawberry.field(description="Stable id: the request id.")
    request_id: strawberry.ID = strawberry.field(description="Also sent back as X-Request-ID.")
    received_at: datetime = strawberry.field(description="When the request arrived.")
    finished_at: datetime = strawberry.field(description="When its answer was ready.")
    duration_ms: float = strawberry.field(description="Time spent, in milliseconds.")
    subject: str | None = strawberry.field(description="The token's subject, when valid.")
    client_address: str | None = strawberry.field(description="The peer address.")
    user_agent: str | None = strawberry.field(description="The User-Agent header.")
    http_method: str = strawberry.field(description="GET or POST; WS for WebSocket.")
    http_path: str = strawberry.field(description="/graphql or /predict.")
    http_status: int = strawberry.field(description="The HTTP status answered.")
    operation_type: str | None = strawberry.field(
        description="query, mutation, subscription, rest or export."
    )
    operation_name: str | None = strawberry.field(description="The operation's name, if any.")
    query_sha256: str | None = strawberry.field(description="sha256 of the query document.")
    outcome: str = strawberry.field(description="ok, denied, invalid or error.")
    error_codes: list[str] = strawberry.field(description="extensions.code of each error.")
    predictions_created: int = strawberry.field(description="Predictions stored by it.")
    client_request_id: str | None = strawberry.field(
        description="The client's own X-Request-ID, when it sent a valid one."
    )
    auth_failure: str | None = strawberry.field(
        description="Why the request had no valid token (missing, expired, bad_signature...)."
    )
    idempotency_key: str | None = strawberry.field(
        description="The Idempotency-Key the request carried, if any."
    )
    replay_of: strawberry.ID | None = strawberry.field(
        description="The request whose stored answer this one was given (a retry), if any."
    )
    subscription_event: str | None = strawberry.field(
        description="start or end, for the two rows a `failureAlerts` subscription leaves."
    )
    subscription_id: strawberry.ID | None = strawberry.field(
        description="The subscription both of its rows belong to (the id of its start row)."
    )

    @classmethod
    def from_row(cls, row: AuditEvent) -> "AuditEventType":
        """Build from a stored audit row."""
        return cls(
            id=strawberry.ID(str(row.id)),
            request_id=strawberry.ID(str(row.id)),
            received_at=row.received_at,
            finished_at=row.finished_at,
            duration_ms=row.duration_ms,
            subject=row.subject,
            client_address=row.client_addr,
            user_agent=row.user_agent,
            http_method=row.http_method,
            http_path=row.http_path,
            http_status=row.http_status,
            operation_type=row.operation_type,
            operation_name=row.operation_name,
            query_sha256=row.query_sha256,
            outcome=row.outcome,
            error_codes=list(row.error_codes),
            predictions_created=row.predictions_created,
            client_request_id=row.client_request_id,
            auth_failure=row.auth_failure,
            idempotency_key=row.idempotency_key,
            replay_of=strawberry.ID(str(row.replay_of)) if row.replay_of else None,
            subscription_event=row.subscription_event,
            subscription_id=strawberry.ID(str(row.subscription_id))
            if row.subscription_id
            else None,
        )


@strawberry.type(name="AuditEventEdge", description="An audit event and its cursor.")
class AuditEventEdgeType:
    cursor: str
    node: AuditEventType


@strawberry.type(name="AuditEventConnection", description="A page of audit events, newest first.")
class AuditEventConnectionType:
    edges: list[AuditEventEdgeType]
    nodes: list[AuditEventType]
    page_info: PageInfoType
    counter: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many events the filter matches, on every page.")
    async def total_count(self) -> int:
        return await self.counter()


@strawberry.input(name="AuditEventFilter", description="Narrow the audit trail.")
class AuditEventFilterInput:
    subject: str | None = strawberry.field(default=None, description="Only this subject.")
    outcome: str | None = strawberry.field(default=None, description="ok|denied|invalid|error.")
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="Received at or after."
    )
    to: datetime | None = strawberry.field(default=None, description="Received before.")
    operation_name: str | None = strawberry.field(default=None, description="Only this name.")
    client_request_id: str | None = strawberry.field(
        default=None, description="Only the request the client tagged with this X-Request-ID."
    )
