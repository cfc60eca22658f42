"""The model lifecycle in GraphQL: switching versions and the history of switches."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

import strawberry
from strawberry.types import Info

from graph.runtime import lifecycle
from graph.schema.cursors import scope_of
from graph.schema.history import newest_first
from graph.schema.types import PageInfoType
from persistence.lifecycle import ActivationEntry


@strawberry.type(
    name="ModelActivation",
    description="One switch of the active model version: who, when, from which to which, why.",
)
class ModelActivationType:
    id: strawberry.ID = strawberry.field(description="Stable id of the switch.")
    activated_at: datetime = strawberry.field(description="When the switch was committed.")
    subject: str | None = strawberry.field(
        description="Who made it: the token's subject (null from the command line or training)."
    )
    from_version: str | None = strawberry.field(
        description="The version active before (null when none was)."
    )
    to_version: str = strawberry.field(description="The version active after.")
    reason: str | None = strawberry.field(description="Why, as its author said.")
    via: str = strawberry.field(
        description="api (this API), cli (`failcast models`) or train (`train --activate`)."
    )
    request_id: strawberry.ID | None = strawberry.field(
        description="The audit event of the API request that made it (null outside the API)."
    )

    @classmethod
    def from_entry(cls, entry: ActivationEntry) -> "ModelActivationType":
        """Build from a history entry."""
        return cls(
            id=strawberry.ID(str(entry.id)),
            activated_at=entry.activated_at,
            subject=entry.subject,
            from_version=entry.from_version,
            to_version=entry.to_version,
            reason=entry.reason,
            via=entry.via,
            request_id=strawberry.ID(str(entry.request_id)) if entry.request_id else None,
        )


@strawberry.type(name="ModelActivationEdge", description="A switch and its cursor.")
class ModelActivationEdgeType:
    cursor: str
    node: ModelActivationType


@strawberry.type(
    name="ModelActivationConnection", description="A page of model switches, newest first."
)
class ModelActivationConnectionType:
    edges: list[ModelActivationEdgeType]
    nodes: list[ModelActivationType]
    page_info: PageInfoType
    counter: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many switches the history holds, on every page.")
    async def total_count(self) -> int:
        return await self.counter()


async def activation_connection(
    info: Info, first: int | None, after: str | None
) -> ModelActivationConnectionType:
    """`modelActivations(first, after)`: newest first, Relay-paged."""
    engine = info.context.runtime.engine
    return await newest_first(  # type: ignore[no-any-return]
        info,
        scope_of("modelActivations"),
        first,
        after,
        # Cursors carry a UUID; an entry's integer id travels as the UUID of that integer.
        lambda size, before: lifecycle.activation_page(
            engine, size, before.int if before else None
        ),
        ModelActivationType.from_entry,
        (ModelActivationEdgeType, ModelActivationConnectionType),
        lambda: lifecycle.activation_count(engine),
        key=lambda entry: uuid.UUID(int=entry.id),
    )
