"""Live alerts: which committed predictions an alert is for, and how they reach every process.

One matcher (`AlertFilter`) decides for the `failureAlerts` subscription and for webhooks alike:
a prediction matches when its failure probability is at least `minProbability` (when omitted:
the threshold of the model version that made it, i.e. FAILURE predictions) and its device id
starts with `deviceIdPrefix` (a prediction without a device id matches only filters without a
prefix).

How a committed prediction reaches the subscribers (`AlertHub`, one per process):

- the predict use case queues an `AnnouncedBlock` effect with its block (`Alerts.announce`),
  so it is applied in the request's own transaction, and only if the predictions are stored;
- in this process, the block is published to the hub from `RequestAudit.committed()`, which
  the edge calls after COMMIT: never before, never for a rolled-back write;
- on PostgreSQL the effect also sends one NOTIFY per block (persistence/alerts.py) naming the
  block, with its observations (device, time, counters) when they fit in a notification (a
  `predict`'s do, a large batch's do not); every other process hears it (`Alerts.follow`, one
  reconnecting listener each), passes it to its device histories (graph.runtime.histories),
  and, when one of its subscribers could want the block, reads the rows back and publishes
  them. The origin process skips its own notifications.

SQLite has no notifications: there a subscriber hears the predictions committed by the process
it is connected to. A subscriber that reads too slowly is ended (`AlertsDropped`) once
QUEUE_SIZE alerts wait for it, rather than holding memory without bound.
"""

import asyncio
import logging
import math
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import orjson
from sqlalchemy.engine import Connection, Engine

from graph.errors import bad_input
from graph.runtime import listening
from graph.runtime.audit import RequestAudit
from graph.runtime.strings import has_control_characters
from persistence import Prediction, PredictionBlock, alerts, new_id, notifications, session_scope
from persistence.records import DeviceObservation

log = logging.getLogger("failcast.alerts")

MAX_PREFIX = 64  # a device id is at most 64 characters
QUEUE_SIZE = 1000  # alerts waiting for one subscriber before it is ended as too slow


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which predictions an alert is for (shared by subscriptions and webhooks)."""

    min_probability: float | None = None  # None: the threshold of the version that predicted
    device_id_prefix: str | None = None

    def floor(self, threshold: float) -> float:
        """The least probability that matches, for a prediction made with `threshold`."""
        return threshold if self.min_probability is None else self.min_probability

    def matches(self, probability: float, threshold: float, device_id: str | None) -> bool:
        """Whether one prediction matches."""
        if probability < self.floor(threshold):
            return False
        prefix = self.device_id_prefix
        return prefix is None or (device_id is not None and device_id.startswith(prefix))

    def could_match(self, max_probability: float, threshold: float) -> bool:
        """Whether any prediction of a block with this highest probability could match."""
        return max_probability >= self.floor(threshold)


def alert_filter(min_probability: float | None, device_id_prefix: str | None) -> AlertFilter:
    """The filter of client arguments; BAD_USER_INPUT naming the argument that is wrong."""
    if min_probability is not None and not (
        math.isfinite(min_probability) and 0.0 <= min_probability <= 1.0
    ):
        raise bad_input("minProbability must be between 0 and 1", "minProbability")
    if device_id_prefix is not None:
        if not 1 <= len(device_id_prefix) <= MAX_PREFIX:
            message = f"deviceIdPrefix must be 1..{MAX_PREFIX} characters"
            raise bad_input(message, "deviceIdPrefix")
        if has_control_characters(device_id_prefix):
            raise bad_input("deviceIdPrefix must not contain control characters", "deviceIdPrefix")
    return AlertFilter(min_probability, device_id_prefix)


class AlertsDropped(Exception):
    """A subscriber read too slowly: alerts were dropped for it, and its stream ends."""


class AlertStream:
    """One subscriber's alerts, in commit order; iterate it, and close it when done."""

    def __init__(self, hub: "AlertHub", where: AlertFilter, capacity: int) -> None:
        self.hub = hub
        self.filter = where
        self._queue: asyncio.Queue[Prediction] = asyncio.Queue(capacity)
        self._dropped = 0

    def offer(self, prediction: Prediction) -> None:
        """Queue an alert (on the event loop); counted as dropped when the queue is full."""
        try:
            self._queue.put_nowait(prediction)
        except asyncio.QueueFull:
            self._dropped += 1

    def __aiter__(self) -> "AlertStream":
        return self

    async def __anext__(self) -> Prediction:
        if self._dropped and self._queue.empty():
            raise AlertsDropped(
                f"{self._dropped} alert(s) were dropped because this subscriber read more than "
                f"{self._queue.maxsize} behind: subscribe again, and read what was missed with "
                "`predictions`"
            )
        return await self._queue.get()

    def close(self) -> None:
        """Stop receiving alerts."""
        self.hub.unsubscribe(self)


class AlertHub:
    """The subscribers of one process, and the publishing of committed predictions to them."""

    def __init__(self, capacity: int = QUEUE_SIZE) -> None:
        self.capacity = capacity
        # Weak: a stream dropped without being closed (a subscription that never started)
        # leaves the hub with it.
        self._streams: weakref.WeakSet[AlertStream] = weakref.WeakSet()

    @property
    def subscribers(self) -> int:
        """How many streams are open."""
        return len(self._streams)

    def subscribe(self, where: AlertFilter) -> AlertStream:
        """A new stream of the committed predictions `where` matches, from now on."""
        stream = AlertStream(self, where, self.capacity)
        self._streams.add(stream)
        return stream

    def unsubscribe(self, stream: AlertStream) -> None:
        """Forget a stream."""
        self._streams.discard(stream)

    def wants(self, max_probability: float, threshold: float) -> bool:
        """Whether any subscriber could want a block with this highest probability."""
        return any(s.filter.could_match(max_probability, threshold) for s in self._streams)

    def publish_block(self, block: PredictionBlock) -> None:
        """Offer each prediction of a committed block to the subscribers it matches."""
        if not self._streams or not len(block):
            return
        if not self.wants(max(block.failure_probability), block.threshold):
            return
        self.publish(Prediction(**row) for row in block.rows())

    def publish(self, predictions: Iterable[Prediction]) -> None:
        """Offer committed predictions to the subscribers they match, in order."""
        streams = list(self._streams)
        for prediction in predictions:
            for stream in streams:
                if stream.filter.matches(
                    prediction.failure_probability, prediction.threshold, prediction.device_id
                ):
                    stream.offer(prediction)


# Writes the webhook deliveries of a block on the transaction storing it; how many.
Outbox = Callable[[Connection, PredictionBlock, str], int]


@dataclass
class AnnouncedBlock:
    """The effect of a block of predictions on the alerts: applied with the request's rows."""

    block: PredictionBlock
    model_version: str
    origin: str  # the process that made it, which publishes it itself after COMMIT
    outbox: Outbox | None = None
    enqueued: int = 0  # webhook deliveries written by the last application
    # what `apply` sets that `Alerts.announce` reads after COMMIT: carried back from a writer
    # process (persistence/writer.py)
    carried: ClassVar[tuple[str, ...]] = ("enqueued",)

    @property
    def payload(self) -> str:
        """The notification: origin, request, first and last id, highest probability,
        threshold and, when the whole payload fits in one notification, the block's
        observations (`encode_observations`)."""
        block = self.block
        head = " ".join(
            [
                self.origin,
                block.audit_event_id.hex,
                block.ids[0].hex,
                block.ids[-1].hex,
                repr(float(max(block.failure_probability))),
                repr(float(block.threshold)),
            ]
        )
        carried = encode_observations(block, notifications.MAX_PAYLOAD_BYTES - len(head) - 1)
        return head if carried is None else f"{head} {carried}"

    def apply(self, connection: Connection) -> None:
        """Write the block's webhook deliveries and announce it to the other processes
        (PostgreSQL), in the transaction that stores it."""
        if not len(self.block):
            return
        if self.outbox is not None:
            self.enqueued = self.outbox(connection, self.block, self.model_version)
        alerts.announce(connection, lambda: self.payload)


@dataclass(frozen=True)
class Announcement:
    """A notification heard: which block, from which process, whether anyone may want it, and
    the block's observations when the notification carried them (None: read them)."""

    origin: str
    request_id: uuid.UUID
    first: uuid.UUID
    last: uuid.UUID
    max_probability: float
    threshold: float
    observations: list[DeviceObservation] | None = None

    @classmethod
    def parse(cls, payload: str) -> "Announcement":
        """Read a payload written by `AnnouncedBlock.payload` (ValueError if it is not one)."""
        fields = payload.split(" ", 6)
        if len(fields) not in (6, 7):
            raise ValueError("an announcement has six fields and, optionally, observations")
        origin, request, first, last, highest, threshold = fields[:6]
        return cls(
            origin,
            uuid.UUID(hex=request),
            uuid.UUID(hex=first),
            uuid.UUID(hex=last),
            float(highest),
            float(threshold),
            decode_observations(fields[6]) if len(fields) == 7 else None,
        )


# The smallest encoded observation: ["",<32-character time>,[8 one-digit counters]],
_SMALLEST_OBSERVATION = 60


def encode_observations(block: PredictionBlock, room: int) -> str | None:
    """The block's observations as compact JSON ([[device, ISO time, [counters]], ...]), or
    None when they take more than `room` bytes. A block of single rows (`predict`, the bulk of
    the notifications) fits; a 1,000-row batch does not, and its observations are read back in
    one query by those that hold its devices. Floats round-trip exactly through JSON."""
    devices = sum(device is not None for device in block.device_ids)
    if devices * _SMALLEST_OBSERVATION > room:
        return None
    encoded = orjson.dumps(
        [[device, moment.isoformat(), values] for device, moment, values in block.observations()]
    )
    return encoded.decode() if len(encoded) <= room else None


def decode_observations(text: str) -> list[DeviceObservation]:
    """What `encode_observations` wrote (ValueError if it is not that)."""
    try:
        return [
            (str(device), datetime.fromisoformat(moment), tuple(float(v) for v in values))
            for device, moment, values in orjson.loads(text)
        ]
    except (ValueError, TypeError) as error:  # orjson.JSONDecodeError is a ValueError
        raise ValueError(f"announced observations that are not ones: {error}") from error


class Alerts:
    """One per process: the hub of its subscribers, and how committed predictions reach it."""

    def __init__(
        self,
        engine: Engine,
        capacity: int = QUEUE_SIZE,
        outbox: Outbox | None = None,
        on_enqueued: Callable[[], None] | None = None,
        on_foreign: Callable[[Announcement], Awaitable[None]] | None = None,
    ) -> None:
        self.engine = engine
        self.hub = AlertHub(capacity)
        self.origin = new_id().hex  # tells this process's notifications from the others'
        self.outbox = outbox  # webhooks' deliveries, written with the predictions
        self.on_enqueued = on_enqueued  # deliveries were committed: the worker may start
        self.on_foreign = on_foreign  # told of every block another process committed

    def announce(self, audit: RequestAudit, block: PredictionBlock, model_version: str) -> None:
        """Queue the block's effect with the request's rows (webhook deliveries, the
        announcement); publish it to this process's subscribers once committed."""
        effect = AnnouncedBlock(block, model_version, self.origin, self.outbox)

        def committed() -> None:
            self.hub.publish_block(block)
            if effect.enqueued and self.on_enqueued is not None:
                self.on_enqueued()

        audit.add_effect(effect, on_commit=committed)

    async def follow(self) -> None:
        """On PostgreSQL, publish the blocks other processes commit, for ever."""
        if not notifications.listens(self.engine):
            return
        await listening.follow(
            lambda: notifications.heard(self.engine, alerts.CHANNEL, "prediction alerts"),
            "prediction alerts",
            self.heard,
        )

    async def heard(self, payload: str) -> None:
        """Publish the block a notification names, if it is another process's and wanted."""
        if payload.partition(" ")[0] == self.origin:
            return  # this process's own block: published at its commit, its rows already held
        try:
            found = Announcement.parse(payload)
        except ValueError:
            log.warning("an alert notification that is not one: %r", payload[:200])
            return
        if self.on_foreign is not None:
            await self.on_foreign(found)
        if not self.hub.wants(found.max_probability, found.threshold):
            return
        rows = await asyncio.to_thread(self._rows, found)
        self.hub.publish(rows)

    def _rows(self, found: Announcement) -> Sequence[Prediction]:
        with session_scope(self.engine) as session:
            return alerts.announced_rows(session, found.request_id, found.first, found.last)
