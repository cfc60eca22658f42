"""Reading history through Relay connections: page arguments, signed cursors, filters, devices.

`first`/`after` page forward and `last`/`before` backward, in pages of 1..FAILCAST_MAX_PAGE_SIZE
(20 by default). Positions are keyset positions (sort value and id), so pages stay put while
predictions are added; cursors are signed and scoped to their connection, ordering and filter.
"""

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

import strawberry
from strawberry.types import Info

from graph.errors import bad_input
from graph.runtime import usecases
from graph.schema.cursors import scope_of
from graph.schema.inputs import (
    OrderDirectionEnum,
    PredictionFilterInput,
    PredictionOrderFieldEnum,
    PredictionOrderInput,
)
from graph.schema.types import (
    FailureClassEnum,
    PageInfoType,
    PredictionConnectionType,
    PredictionEdgeType,
    PredictionType,
)
from persistence import OrderField, Position, Prediction, PredictionFilter

DEFAULT_PAGE = 20
T = TypeVar("T")


@dataclass(frozen=True)
class PageRequest:
    """What page a client asked for: size, direction and the position it starts from."""

    size: int
    backward: bool
    position: Position | None


def page_request(
    info: Info,
    scope: str,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> PageRequest:
    """The page `first`/`after` or `last`/`before` describe; BAD_USER_INPUT when they clash."""
    if first is not None and last is not None:
        raise bad_input("give `first` or `last`, not both", "last")
    backward = last is not None or before is not None
    if backward and (first is not None or after is not None):
        raise bad_input("page forward with first/after or backward with last/before", "before")
    size = last if backward else first
    size = DEFAULT_PAGE if size is None else size
    limit = info.context.runtime.settings.max_page_size
    if not 1 <= size <= limit:
        argument = "last" if backward else "first"
        raise bad_input(f"{argument} must be 1..{limit}", argument)
    cursor, argument = (before, "before") if backward else (after, "after")
    position = info.context.cursors.decode(cursor, scope, argument) if cursor else None
    return PageRequest(size, backward, position)


def page_info(request: PageRequest, cursors: Sequence[str], has_more: bool) -> PageInfoType:
    """Relay's PageInfo: a cursor given means there are rows on its side."""
    started_at = request.position is not None
    return PageInfoType(
        has_next_page=started_at if request.backward else has_more,
        has_previous_page=has_more if request.backward else started_at,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )


def aware(value: datetime | None, argument: str) -> datetime | None:
    """A time from a client, refused (not guessed) without a UTC offset."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise bad_input(f"`{argument}` needs a UTC offset (e.g. 2026-11-29T08:00:00Z)", argument)
    return value


def prediction_filter(where: PredictionFilterInput | None) -> PredictionFilter:
    """The persistence filter of the GraphQL filter (times checked for their offset)."""
    if where is None:
        return PredictionFilter()
    is_failure = None if where.label is None else where.label is FailureClassEnum.FAILURE
    return PredictionFilter(
        device_id=where.device_id,
        device_id_prefix=where.device_id_prefix,
        model_version=where.model_version,
        is_failure=is_failure,
        created_from=aware(where.created_from, "filter.createdFrom"),
        created_to=aware(where.created_to, "filter.createdTo"),
        observed_from=aware(where.observed_from, "filter.observedFrom"),
        observed_to=aware(where.observed_to, "filter.observedTo"),
        min_probability=where.min_probability,
        max_probability=where.max_probability,
        subject=where.subject,
    )


_FIELDS = {member: OrderField(member.value) for member in PredictionOrderFieldEnum}


async def prediction_connection(
    info: Info,
    where: PredictionFilter,
    order: PredictionOrderInput | None,
    pages: tuple[int | None, str | None, int | None, str | None],
    name: str = "predictions",
) -> PredictionConnectionType:
    """A page of predictions in an order, as a connection with its total count."""
    order = order or PredictionOrderInput()
    field, descending = _FIELDS[order.field], order.direction is OrderDirectionEnum.DESC
    scope = _scope(name, field, descending, where)
    request = page_request(info, scope, *pages)
    engine = info.context.runtime.engine
    page = await usecases.prediction_page(
        engine, where, field, descending != request.backward, request.size, request.position
    )
    rows = page.items[::-1] if request.backward else page.items
    cursors = [
        info.context.cursors.encode(scope, Position(getattr(row, field.value), row.id))
        for row in rows
    ]
    kinds = (PredictionEdgeType, PredictionConnectionType)
    count = lambda: usecases.prediction_count(engine, where)  # noqa: E731 (counted if asked)
    connected: PredictionConnectionType = connection(
        rows, cursors, request, page.has_more, PredictionType.from_values, kinds, count
    )
    return connected


def _scope(name: str, field: OrderField, descending: bool, where: PredictionFilter) -> str:
    return scope_of(name, field, descending, where)


@strawberry.type(name="Device", description="A device, as its predictions describe it.")
class DeviceType:
    id: strawberry.ID = strawberry.field(description="Stable id: the device id.")
    device_id: str = strawberry.field(description="The device id clients send.")

    @strawberry.field(description="The prediction with the latest observation time.")
    async def latest_prediction(self, info: Info) -> PredictionType | None:
        row: Prediction | None = await info.context.latest.load(self.device_id)
        return None if row is None else PredictionType.from_values(row)

    @strawberry.field(description="The device's predictions by observation time, oldest first.")
    async def timeline(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
    ) -> PredictionConnectionType:
        where = PredictionFilter(
            device_id=self.device_id,
            observed_from=aware(from_, "from"),
            observed_to=aware(to, "to"),
        )
        order = PredictionOrderInput(
            field=PredictionOrderFieldEnum.OBSERVED_AT, direction=OrderDirectionEnum.ASC
        )
        return await prediction_connection(
            info, where, order, (first, after, None, None), "timeline"
        )

    @strawberry.field(description="The highest failureProbability observed in [from, to).")
    async def max_failure_probability(
        self,
        info: Info,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
    ) -> float | None:
        engine = info.context.runtime.engine
        return await usecases.device_max_probability(
            engine, self.device_id, aware(from_, "from"), aware(to, "to")
        )

    @strawberry.field(description="How many predictions the device has.")
    async def prediction_count(self, info: Info) -> int:
        where = PredictionFilter(device_id=self.device_id)
        return await usecases.prediction_count(info.context.runtime.engine, where)


def connection(
    rows: list[T],
    cursors: list[str],
    request: PageRequest,
    has_more: bool,
    node: Callable[[T], Any],
    kinds: tuple[Any, Any],
    counter: Callable[[], Any],
) -> Any:
    """A connection object of rows already in their order, with their cursors."""
    edge_type, connection_type = kinds
    nodes = [node(row) for row in rows]
    return connection_type(
        edges=[edge_type(cursor=c, node=n) for c, n in zip(cursors, nodes, strict=True)],
        nodes=nodes,
        page_info=page_info(request, cursors, has_more),
        counter=counter,
    )


async def newest_first(
    info: Info,
    scope: str,
    first: int | None,
    after: str | None,
    read: Callable[[int, uuid.UUID | None], Awaitable[usecases.Page[T]]],
    node: Callable[[T], Any],
    kinds: tuple[Any, Any],
    counter: Callable[[], Any],
    key: Callable[[T], uuid.UUID] = lambda row: row.id,  # type: ignore[attr-defined]
) -> Any:
    """A connection of rows newest first by id (`first`/`after`): audit events, deliveries.

    `read(size, before)` reads one page of rows older than the id `before` (None: the newest);
    `key` is a row's id as a cursor holds it.
    """
    request = page_request(info, scope, first, after, None, None)
    before = request.position.id if request.position else None
    page = await read(request.size, before)
    cursors = [info.context.cursors.encode(scope, Position(None, key(r))) for r in page.items]
    return connection(page.items, cursors, request, page.has_more, node, kinds, counter)
