"""The one alert matcher (subscriptions and webhooks), its argument checks, and the hub."""

import asyncio
import math
from datetime import UTC, datetime

import pytest

from graph.errors import ErrorCode, FailcastError
from graph.runtime.alerts import (
    AlertFilter,
    AlertHub,
    AlertsDropped,
    AnnouncedBlock,
    Announcement,
    alert_filter,
)
from persistence import METRIC_COLUMNS, PredictionBlock, new_id, new_ids, notifications


def block(probabilities, device_ids=None, threshold=0.5) -> PredictionBlock:
    count = len(probabilities)
    now = datetime.now(UTC)
    return PredictionBlock(
        audit_event_id=new_id(),
        model_version_id=1,
        threshold=threshold,
        created_at=now,
        ids=new_ids(count),
        device_ids=device_ids or [f"dev-{i}" for i in range(count)],
        observed_at=[now] * count,
        metrics={m: [1.0] * count for m in METRIC_COLUMNS},
        failure_probability=list(probabilities),
        is_failure=[p >= threshold for p in probabilities],
    )


@pytest.mark.parametrize(
    ("where", "probability", "threshold", "device", "expected"),
    [
        (AlertFilter(), 0.5, 0.5, "a", True),  # at the threshold: FAILURE
        (AlertFilter(), 0.4999, 0.5, "a", False),
        (AlertFilter(), 0.2, 0.1, None, True),  # the threshold of the version that predicted
        (AlertFilter(0.0), 0.0, 0.9, "a", True),  # an explicit floor replaces the threshold
        (AlertFilter(0.95), 0.9, 0.5, "a", False),
        (AlertFilter(0.3), 0.3, 0.9, "a", True),
        (AlertFilter(None, "S1F"), 0.9, 0.5, "S1F01085", True),
        (AlertFilter(None, "S1F"), 0.9, 0.5, "W1F01085", False),
        (AlertFilter(None, "S1F"), 0.9, 0.5, None, False),  # no device id: only without prefix
        (AlertFilter(None, "S1F01085"), 0.9, 0.5, "S1F01085", True),  # the whole id
        (AlertFilter(None, "s1f"), 0.9, 0.5, "S1F01085", False),  # case matters
    ],
)
def test_the_matcher(where, probability, threshold, device, expected):
    assert where.matches(probability, threshold, device) is expected


def test_could_match_never_misses_a_block_the_matcher_would_take():
    for where in (AlertFilter(), AlertFilter(0.2), AlertFilter(0.9, "x")):
        for highest in (0.0, 0.2, 0.5, 0.9, 1.0):
            matched = where.matches(highest, 0.5, "x")
            assert not matched or where.could_match(highest, 0.5)


@pytest.mark.parametrize(
    ("minimum", "prefix", "field"),
    [
        (-0.01, None, "minProbability"),
        (1.01, None, "minProbability"),
        (math.nan, None, "minProbability"),
        (math.inf, None, "minProbability"),
        (None, "", "deviceIdPrefix"),
        (None, "x" * 65, "deviceIdPrefix"),
        (None, "a\nb", "deviceIdPrefix"),
        (None, "a\x7fb", "deviceIdPrefix"),
    ],
)
def test_bad_arguments_are_refused_naming_the_argument(minimum, prefix, field):
    with pytest.raises(FailcastError) as caught:
        alert_filter(minimum, prefix)
    assert caught.value.code is ErrorCode.BAD_USER_INPUT
    assert caught.value.field == field


def test_good_arguments_make_the_filter():
    assert alert_filter(None, None) == AlertFilter()
    assert alert_filter(0.0, "x" * 64) == AlertFilter(0.0, "x" * 64)
    assert alert_filter(1.0, "é") == AlertFilter(1.0, "é")


def test_the_hub_offers_each_subscriber_what_it_matches_in_order():
    async def run() -> tuple[list, list, list]:
        hub = AlertHub()
        failures = hub.subscribe(AlertFilter())
        everything = hub.subscribe(AlertFilter(0.0))
        pumps = hub.subscribe(AlertFilter(None, "pump-"))
        made = block([0.9, 0.1, 0.6, 0.7], ["pump-1", "pump-2", "fan-1", None])
        hub.publish_block(made)
        got = []
        for stream, count in ((failures, 3), (everything, 4), (pumps, 1)):
            got.append([(await stream.__anext__()).device_id for _ in range(count)])
            stream.close()
        assert hub.subscribers == 0
        return got

    failures, everything, pumps = asyncio.run(run())
    assert failures == ["pump-1", "fan-1", None]
    assert everything == ["pump-1", "pump-2", "fan-1", None]
    assert pumps == ["pump-1"]


def test_a_published_prediction_carries_the_stored_values():
    async def run():
        hub = AlertHub()
        stream = hub.subscribe(AlertFilter())
        made = block([0.75])
        hub.publish_block(made)
        return made, await stream.__anext__()

    made, got = asyncio.run(run())
    assert got.id == made.ids[0]
    assert got.audit_event_id == made.audit_event_id
    assert got.failure_probability == 0.75 and got.threshold == 0.5 and got.is_failure
    assert got.metric1 == 1.0 and got.device_id == "dev-0"


def test_a_subscriber_that_reads_too_slowly_is_ended_after_what_was_queued():
    async def run():
        hub = AlertHub(capacity=3)
        stream = hub.subscribe(AlertFilter(0.0))
        hub.publish_block(block([0.1] * 5))
        got = [await stream.__anext__() for _ in range(3)]
        with pytest.raises(AlertsDropped, match="2 alert"):
            await stream.__anext__()
        return got

    assert len(asyncio.run(run())) == 3


def test_announcements_name_the_block_compactly_and_read_back():
    made = block([0.25] * 1000, threshold=0.3)
    effect = AnnouncedBlock(made, "v1", "origin-1")
    assert len(effect.payload.encode()) < 200  # 1,000 observations do not fit: only the names
    heard = Announcement.parse(effect.payload)
    assert heard.origin == "origin-1"
    assert heard.request_id == made.audit_event_id
    assert (heard.first, heard.last) == (made.ids[0], made.ids[-1])
    assert heard.max_probability == 0.25 and heard.threshold == 0.3
    assert heard.observations is None  # to be read back by who needs them
    with pytest.raises(ValueError):
        Announcement.parse("not one")


def test_a_small_blocks_announcement_carries_its_observations_exactly():
    made = block([0.25, 0.5, 0.75], device_ids=["dev-é", None, "dev b"])
    made.metrics["metric1"][0] = 0.1 + 0.2  # not a short decimal: must come back bit for bit
    made.metrics["metric9"][2] = 215630672.0
    heard = Announcement.parse(AnnouncedBlock(made, "v1", "origin-1").payload)
    assert heard.observations == made.observations()
    assert [o[0] for o in heard.observations] == ["dev-é", "dev b"]  # no device: no history
    assert heard.observations[0][2][0] == 0.1 + 0.2
    assert heard.observations[0][1] == made.observed_at[0]  # the same aware time


def test_observations_are_carried_only_while_the_notification_stays_under_its_limit():
    def payload(rows: int) -> str:
        return AnnouncedBlock(
            block([0.5] * rows, [f"device-{i:040d}" for i in range(rows)]), "v1", "o"
        ).payload

    sizes = {rows: len(payload(rows).encode()) for rows in (1, 20, 40, 200)}
    assert all(size <= notifications.MAX_PAYLOAD_BYTES for size in sizes.values())
    assert Announcement.parse(payload(20)).observations is not None
    assert Announcement.parse(payload(200)).observations is None
    with pytest.raises(ValueError, match="observations"):
        Announcement.parse(payload(1).rsplit(" ", 1)[0] + ' [["d", "not a time", [1.0]]]')
