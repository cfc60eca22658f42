"""Webhooks in GraphQL: the receivers of failure alerts, and the deliveries made to them."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from graph.errors import bad_input
from graph.runtime import webhooks
from graph.schema.cursors import scope_of
from graph.schema.history import newest_first
from graph.schema.types import PageInfoType
from persistence import Webhook, WebhookDelivery


@strawberry.type(name="Webhook", description="A receiver of failure alerts (POSTed, signed).")
class WebhookType:
    id: strawberry.ID = strawberry.field(description="Stable id of the webhook.")
    url: str = strawberry.field(description="Where alerts are POSTed.")
    min_probability: float | None = strawberry.field(
        description="Least failureProbability; null: the predicting version's threshold."
    )
    device_id_prefix: str | None = strawberry.field(
        description="Only devices whose id starts with this; null: every prediction."
    )
    created_at: datetime = strawberry.field(description="When it was created.")
    created_by: str | None = strawberry.field(description="The subject that created it.")

    @classmethod
    def from_row(cls, row: Webhook) -> "WebhookType":
        """Build from a stored row (the secret is never part of it)."""
        return cls(
            id=strawberry.ID(str(row.id)),
            url=row.url,
            min_probability=row.min_probability,
            device_id_prefix=row.device_id_prefix,
            created_at=row.created_at,
            created_by=row.subject,
        )


@strawberry.type(
    name="CreateWebhookPayload", description="The webhook created, and its signing secret."
)
class CreateWebhookPayloadType:
    webhook: WebhookType = strawberry.field(description="The new webhook.")
    secret: str = strawberry.field(
        description="The key of Failcast-Signature: shown this once, never again."
    )


@strawberry.enum(name="WebhookDeliveryStatus", description="Where a delivery stands.")
class WebhookDeliveryStatusEnum(Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@strawberry.type(name="WebhookDelivery", description="One prediction POSTed to one webhook.")
class WebhookDeliveryType:
    id: strawberry.ID = strawberry.field(description="Also sent as Failcast-Delivery.")
    webhook_id: strawberry.ID = strawberry.field(description="The webhook.")
    prediction_id: strawberry.ID = strawberry.field(description="The prediction POSTed.")
    status: WebhookDeliveryStatusEnum = strawberry.field(
        description="PENDING (to send or retry), DELIVERED, or DEAD (attempts used up)."
    )
    attempts: int = strawberry.field(description="POSTs made so far.")
    created_at: datetime = strawberry.field(description="When the prediction was stored.")
    next_attempt_at: datetime | None = strawberry.field(
        description="When it is sent (again), while PENDING."
    )
    last_attempt_at: datetime | None = strawberry.field(description="When it was last POSTed.")
    last_status_code: int | None = strawberry.field(
        description="The receiver's HTTP status at the last attempt (null: no answer)."
    )
    last_error: str | None = strawberry.field(description="Why the last attempt failed.")
    delivered_at: datetime | None = strawberry.field(description="When a 2xx answer came.")

    @classmethod
    def from_row(cls, row: WebhookDelivery) -> "WebhookDeliveryType":
        """Build from a stored row."""
        return cls(
            id=strawberry.ID(str(row.id)),
            webhook_id=strawberry.ID(str(row.webhook_id)),
            prediction_id=strawberry.ID(str(row.prediction_id)),
            status=WebhookDeliveryStatusEnum(row.status),
            attempts=row.attempts,
            created_at=row.created_at,
            next_attempt_at=row.next_attempt_at,
            last_attempt_at=row.last_attempt_at,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            delivered_at=row.delivered_at,
        )


@strawberry.type(name="WebhookDeliveryEdge", description="A delivery and its cursor.")
class WebhookDeliveryEdgeType:
    cursor: str
    node: WebhookDeliveryType


@strawberry.type(
    name="WebhookDeliveryConnection", description="A page of a webhook's deliveries, newest first."
)
class WebhookDeliveryConnectionType:
    edges: list[WebhookDeliveryEdgeType]
    nodes: list[WebhookDeliveryType]
    page_info: PageInfoType
    counter: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many deliveries the webhook has, on every page.")
    async def total_count(self) -> int:
        return await self.counter()


def webhook_id(value: str, argument: str) -> uuid.UUID:
    """A webhook id; BAD_USER_INPUT naming the argument when malformed."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise bad_input(f"`{argument}` is not a webhook id", argument) from None


async def delivery_connection(
    info: Info, webhook: str, first: int | None, after: str | None
) -> WebhookDeliveryConnectionType:
    """`webhookDeliveries(webhookId, first, after)`: newest first, Relay-paged."""
    ident = webhook_id(webhook, "webhookId")
    engine = info.context.runtime.engine
    return await newest_first(  # type: ignore[no-any-return]
        info,
        scope_of("webhookDeliveries", ident),
        first,
        after,
        lambda size, before: webhooks.delivery_page(engine, ident, size, before),
        WebhookDeliveryType.from_row,
        (WebhookDeliveryEdgeType, WebhookDeliveryConnectionType),
        lambda: webhooks.delivery_count(engine, ident),
    )
