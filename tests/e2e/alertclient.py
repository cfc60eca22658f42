"""Subscribing to failureAlerts through a real client library (gql's websockets transport),
and reading what a closed connection was closed with."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from gql import Client, GraphQLRequest, gql
from gql.transport.websockets import WebsocketsTransport
from websockets.exceptions import ConnectionClosed

ALERTS = """subscription A($min: Float, $prefix: String) {
  failureAlerts(minProbability: $min, deviceIdPrefix: $prefix) {
    id deviceId label failureProbability threshold modelVersion { version } } }"""
# The demo model's highest-risk row of its training fleet: predicted FAILURE.
FAILURE_EXAMPLE = {
    "metric1": 109641527, "metric2": 0, "metric3": 0, "metric4": 237, "metric5": 18,
    "metric6": 33842, "metric7": 0, "metric9": 0,
}  # fmt: skip


def ws_url(base: str) -> str:
    """The WebSocket URL of a server's /graphql."""
    return base.replace("http://", "ws://", 1) + "/graphql"


def transport(
    base: str, init_payload: dict[str, Any] | None, **options: Any
) -> WebsocketsTransport:
    """gql's websockets transport, speaking graphql-transport-ws only."""
    return WebsocketsTransport(
        url=ws_url(base),
        init_payload=init_payload,
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        **options,
    )


def bearer(token: str) -> dict[str, str]:
    """The connection_init payload carrying a token."""
    return {"Authorization": f"Bearer {token}"}


def close_code(error: BaseException) -> tuple[int | None, str]:
    """The close code and reason the server sent, found in an exception's chain."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ConnectionClosed) and seen.rcvd is not None:
            return seen.rcvd.code, seen.rcvd.reason
        seen = seen.__cause__ or seen.__context__
    return None, repr(error)


async def refused_with(base: str, init_payload: dict[str, Any] | None) -> tuple[int | None, str]:
    """Connect and subscribe with gql; the close code it was refused with."""
    try:
        async with Client(transport=transport(base, init_payload)) as session:
            async for _ in session.subscribe(gql(ALERTS)):
                break
    except Exception as error:
        return close_code(error)
    raise AssertionError("the subscription was not refused")


@dataclass
class Alerts:
    """What one subscriber received: (time.monotonic() on receipt, the prediction)."""

    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    error: BaseException | None = None

    def ids(self) -> list[str]:
        return [prediction["id"] for _, prediction in self.received]


@asynccontextmanager
async def subscribed(
    base: str, token: str, engine: sa.Engine, variables: dict[str, Any] | None = None
) -> AsyncIterator[Alerts]:
    """A subscriber of failureAlerts on a server, started (its start row committed) when
    entered; it stops when the block ends."""
    alerts = Alerts()
    before = _starts(engine)

    async def listen() -> None:
        try:
            async with Client(transport=transport(base, bearer(token))) as session:
                request = GraphQLRequest(ALERTS, variable_values=variables)
                async for result in session.subscribe(request):
                    alerts.received.append((time.monotonic(), result["failureAlerts"]))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            alerts.error = error

    task = asyncio.create_task(listen())
    deadline = time.monotonic() + 10
    while _starts(engine) <= before:  # the server subscribes before it commits the start row
        assert time.monotonic() < deadline, f"the subscription did not start: {alerts.error!r}"
        assert not task.done(), f"the subscriber stopped: {alerts.error!r}"
        await asyncio.sleep(0.02)
    try:
        yield alerts
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _starts(engine: sa.Engine) -> int:
    query = sa.text("SELECT count(*) FROM audit_event WHERE subscription_event = 'start'")
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


async def wait_for(alerts: Alerts, count: int, timeout: float = 10.0) -> None:
    """Wait until a subscriber received `count` alerts."""
    deadline = time.monotonic() + timeout
    while len(alerts.received) < count:
        assert time.monotonic() < deadline, f"{len(alerts.received)} of {count} alerts arrived"
        await asyncio.sleep(0.01)
