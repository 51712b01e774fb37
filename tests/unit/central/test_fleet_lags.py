"""The fleet's lag reading: one Kafka read for every store's group, kept LAG_CACHE_S for
every request on central's clock, and dated (`as_of`) so an answer says how old it is."""

from __future__ import annotations

import pytest

from central.app import Central
from central.models import as_utc
from central.services import accounts, fleet
from central.services.fleet_lags import LAG_CACHE_S, FleetLags, lag_reading
from tests.support.central_fakes import FakeClock, FakeLagReader

pytestmark = pytest.mark.unit

GROUPS = ["invctl-store-north", "invctl-store-south"]


@pytest.fixture
def reader() -> FakeLagReader:
    return FakeLagReader(lag=4)


@pytest.fixture
def lags(reader: FakeLagReader, clock: FakeClock) -> FleetLags:
    return FleetLags(reader, clock)


def test_one_read_covers_every_group(lags: FleetLags, reader: FakeLagReader) -> None:
    reading = lags.reading(GROUPS)

    assert reader.asked == [GROUPS]
    assert reading.kafka == "ok"
    assert {group: lag.lag for group, lag in reading.lags.items()} == dict.fromkeys(GROUPS, 4)


def test_a_reading_is_kept_for_the_cache_time_and_carries_when_it_was_read(
    lags: FleetLags, reader: FakeLagReader, clock: FakeClock
) -> None:
    read_at = clock.now()
    lags.reading(GROUPS)
    reader.lag_now = 9
    clock.advance(LAG_CACHE_S - 0.1)

    kept = lags.reading(GROUPS)

    assert (kept.as_of, kept.lags[GROUPS[0]].lag, len(reader.asked)) == (read_at, 4, 1)


def test_kafka_is_read_again_once_the_reading_is_cache_time_old(
    lags: FleetLags, reader: FakeLagReader, clock: FakeClock
) -> None:
    lags.reading(GROUPS)
    reader.lag_now = 9
    clock.advance(LAG_CACHE_S)

    fresh = lags.reading(GROUPS)

    assert (fresh.as_of, fresh.lags[GROUPS[0]].lag, len(reader.asked)) == (clock.now(), 9, 2)


def test_a_store_added_meanwhile_is_read_at_once(
    lags: FleetLags, reader: FakeLagReader, clock: FakeClock
) -> None:
    lags.reading(GROUPS[:1])
    clock.advance(0.1)

    reading = lags.reading(GROUPS)

    assert reader.asked == [GROUPS[:1], GROUPS]
    assert set(reading.lags) == set(GROUPS)


def test_a_clock_set_back_does_not_keep_a_reading_longer(
    lags: FleetLags, reader: FakeLagReader, clock: FakeClock
) -> None:
    lags.reading(GROUPS)
    clock.advance(-60)

    lags.reading(GROUPS)

    assert len(reader.asked) == 2


def test_kafka_down_is_said_and_kept_so_requests_do_not_each_wait_for_it(
    lags: FleetLags, reader: FakeLagReader, clock: FakeClock
) -> None:
    reader.down = ConnectionError("no broker")
    failed = lags.reading(GROUPS)
    again = lags.reading(GROUPS)
    reader.down = None
    clock.advance(LAG_CACHE_S)
    recovered = lags.reading(GROUPS)

    assert (failed.kafka, failed.lags) == ("unavailable: ConnectionError", {})
    assert again is failed
    assert (recovered.kafka, len(reader.asked)) == ("ok", 2)


def test_without_kafka_the_reading_says_not_configured_and_has_no_time() -> None:
    reading = lag_reading(None, GROUPS)

    assert (reading.kafka, reading.lags, reading.as_of) == ("not configured", {}, None)


def test_the_fleet_answer_gives_each_store_its_lag_and_says_when_it_was_read(
    central: Central, reader: FakeLagReader, clock: FakeClock
) -> None:
    for store in ("north", "south"):
        accounts.create_store(central.uow(), store, store)
    lags = FleetLags(reader, clock)
    read_at = clock.now()
    fleet.fleet_status(central.uow(), lags)
    clock.advance(1)

    answer = fleet.fleet_status(central.uow(), lags)

    assert answer["kafka"] == "ok"
    assert answer["lag_as_of"] == as_utc(read_at)
    assert [item["lag"] for item in answer["items"]] == [4, 4]
    assert reader.asked == [[fleet.group_of("north"), fleet.group_of("south")]]
