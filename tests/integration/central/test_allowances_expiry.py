"""Expiry: once a grant's expiry plus the clock margin has passed, central's sweep moves it
to settling; its units stay held, and its store no longer reads it as its own to sell."""

import pytest

from central.allowance_sweep import AllowanceSweeper
from central.models import Allowance
from harness.waiting import eventually
from tests.integration.central.test_allowances import give, seed, stock_row
from tests.support.central_fakes import FakeClock
from tests.support.central_harness import running_central

pytestmark = pytest.mark.integration


def state_of(h, grant_id):
    with h.central.db.connection_context():
        return Allowance.get(Allowance.id == grant_id).state


def mine(h, key):
    answer = h.client.get("/api/v1/allowances/mine", headers={"X-API-Key": key})
    return [item["id"] for item in answer.json()["items"]]


def test_a_grant_settles_only_once_its_expiry_and_the_margin_have_passed(database_url):
    clock = FakeClock()
    with running_central(database_url, clock=clock, allowance_margin_s=300) as h:
        keys = seed(h, {"MILK": 5})
        granted = give(h, "north", "MILK", 3, ttl_s=60)
        sweep = AllowanceSweeper(h.central.uow, 300)

        clock.advance(60 + 299)
        sweep.run_once()
        assert state_of(h, granted["id"]) == "live"
        assert mine(h, keys["north"]) == [granted["id"]]

        clock.advance(2)
        sweep.run_once()
        assert state_of(h, granted["id"]) == "settling"
        assert stock_row(h, "MILK") == (2, 3)  # still held: nobody else gets them
        assert mine(h, keys["north"]) == []
        assert sweep.run_once() == 0


def test_a_store_stops_reading_a_grant_past_its_margin_before_any_sweep(database_url):
    clock = FakeClock()
    with running_central(database_url, clock=clock, allowance_margin_s=120) as h:
        keys = seed(h, {"MILK": 5})
        granted = give(h, "north", "MILK", 3, ttl_s=60)

        clock.advance(60 + 121)

        assert mine(h, keys["north"]) == []
        assert state_of(h, granted["id"]) == "live"  # the sweep has not run since


def test_the_sweep_runs_in_the_background_until_stopped(database_url):
    clock = FakeClock()
    with running_central(database_url, clock=clock) as h:
        seed(h, {"MILK": 5})
        granted = give(h, "north", "MILK", 3, ttl_s=60)
        clock.advance(3600)
        sweep = AllowanceSweeper(h.central.uow, 300, poll_seconds=0.05)
        sweep.start()
        try:
            eventually(lambda: state_of(h, granted["id"]) == "settling", what="the grant settled")
        finally:
            sweep.join(10)
        assert stock_row(h, "MILK") == (2, 3)


def test_a_grant_past_its_margin_is_not_returned_but_written_off(database_url):
    clock = FakeClock()
    with running_central(database_url, clock=clock) as h:
        seed(h, {"MILK": 5})
        granted = give(h, "north", "MILK", 3, ttl_s=60)
        admin = h.admin()  # a token issued by the fake clock is checked by the real one
        clock.advance(60 + 300)
        path = f"/api/v1/allowances/{granted['id']}"

        refused = h.client.post(f"{path}/return", headers=admin)
        written_off = h.client.post(f"{path}/write-off", headers=admin)

        assert refused.status_code == 409
        assert refused.json()["error"]["details"]["state"] == "settling"
        assert written_off.status_code == 200, written_off.text
        assert stock_row(h, "MILK") == (5, 0)
