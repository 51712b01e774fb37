"""How a grant's units come back: its store's statement once every sale under it is
replayed, an admin's write-off, or the store's deactivation; each with its ledger row and
event, and nothing given back twice."""

from contextlib import contextmanager

import pytest

from central.models import Allowance
from tests.integration.central.test_allowances import (
    give,
    ledger,
    seed,
    stock_events,
    stock_row,
)
from tests.integration.central.test_allowances_replay import grant_row, line, replay
from tests.support.central_harness import running_central

pytestmark = pytest.mark.integration


def state(h, key, grant, sold):
    return h.client.post(
        f"/api/v1/allowances/{grant['id']}/statement",
        json={"sold": sold},
        headers={"X-API-Key": key},
    )


def write_off(h, grant):
    return h.client.post(f"/api/v1/allowances/{grant['id']}/write-off", headers=h.admin())


def counted(h, outcome):
    return h.central.metrics.allowances.labels(outcome)._value.get()


def test_a_statement_equal_to_what_was_booked_closes_the_grant(database_url):
    with running(database_url) as (h, keys):
        granted = give(h, "north", "MILK", 4)
        assert replay(h, keys["north"], [line(granted, 3)]).status_code == 201

        answer = state(h, keys["north"], granted, 3)

        assert answer.status_code == 200, answer.text
        assert (answer.json()["state"], answer.json()["remaining"]) == ("closed", 0)
        assert stock_row(h, "MILK") == (7, 0)
        assert ledger(h, "MILK")[-1] == ("allowance.returned", 1, 7)
        assert stock_events(h, "MILK")[-1] == ("allowance.returned", 1, 7)


def test_the_same_statement_again_answers_the_closed_grant_and_gives_nothing_back(database_url):
    with running(database_url) as (h, keys):
        granted = give(h, "north", "MILK", 4)
        assert replay(h, keys["north"], [line(granted, 1)]).status_code == 201
        first = state(h, keys["north"], granted, 1)
        rows = ledger(h, "MILK")

        again = state(h, keys["north"], granted, 1)
        other = state(h, keys["north"], granted, 2)

        assert (first.status_code, again.status_code) == (200, 200)
        assert again.json() == first.json()
        assert (other.status_code, other.json()["error"]["code"]) == (409, "allowance.closed")
        assert ledger(h, "MILK") == rows


def test_a_statement_of_more_than_was_booked_asks_for_the_replay_first(database_url):
    with running(database_url) as (h, keys):
        granted = give(h, "north", "MILK", 4)

        answer = state(h, keys["north"], granted, 2)

        assert (answer.status_code, answer.json()["error"]["code"]) == (
            409,
            "allowance.replay_pending",
        )
        assert grant_row(h, granted["id"]) == (4, "live")
        assert stock_row(h, "MILK") == (6, 4)


def test_a_statement_of_less_than_was_booked_is_a_mismatch_and_counted(database_url):
    with running(database_url) as (h, keys):
        granted = give(h, "north", "MILK", 4)
        assert replay(h, keys["north"], [line(granted, 3)]).status_code == 201
        before = counted(h, "statement_mismatch")

        answer = state(h, keys["north"], granted, 1)

        assert (answer.status_code, answer.json()["error"]["code"]) == (
            409,
            "allowance.statement_mismatch",
        )
        assert answer.json()["error"]["details"]["booked"] == 3
        assert counted(h, "statement_mismatch") == before + 1
        assert grant_row(h, granted["id"]) == (1, "live")


def test_only_the_grants_store_sends_its_statement(database_url):
    with running(database_url) as (h, keys):
        granted = give(h, "north", "MILK", 4)

        theirs = state(h, keys["south"], granted, 0)
        admin = h.client.post(
            f"/api/v1/allowances/{granted['id']}/statement", json={"sold": 0}, headers=h.admin()
        )

        assert (theirs.status_code, theirs.json()["error"]["code"]) == (
            404,
            "allowance.not_found",
        )
        assert admin.status_code == 403
        assert grant_row(h, granted["id"]) == (4, "live")


def test_a_write_off_gives_the_units_back_and_a_later_replay_is_a_shortfall(database_url):
    with running(database_url) as (h, keys):
        granted = give(h, "north", "MILK", 4)
        before = counted(h, "written_off")

        answer = write_off(h, granted)

        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "closed"
        assert stock_row(h, "MILK") == (10, 0)
        assert ledger(h, "MILK")[-1] == ("allowance.written_off", 4, 10)
        assert stock_events(h, "MILK")[-1] == ("allowance.written_off", 4, 10)
        assert counted(h, "written_off") == before + 1
        assert write_off(h, granted).json()["error"]["code"] == "allowance.closed"

        late = replay(h, keys["north"], [line(granted, 3)])
        assert (late.status_code, late.json()["review"]) == (201, None)
        assert stock_row(h, "MILK") == (7, 0)


def test_deactivating_a_store_returns_all_its_grants(database_url):
    with running(database_url) as (h, _):
        milk = give(h, "north", "MILK", 4)
        tea = give(h, "north", "TEA", 2)
        more_milk = give(h, "north", "MILK", 1)
        theirs = give(h, "south", "MILK", 1)
        with h.central.db.connection_context():
            Allowance.update(state="settling").where(Allowance.id == tea["id"]).execute()

        h.call("POST", "/api/v1/stores/north/deactivate", h.admin())

        assert [grant_row(h, g["id"]) for g in (milk, tea, more_milk)] == [(0, "closed")] * 3
        assert grant_row(h, theirs["id"]) == (1, "live")
        assert stock_row(h, "MILK") == (9, 1)
        assert stock_row(h, "TEA") == (10, 0)
        assert [r[0] for r in ledger(h, "MILK")[-2:]] == ["allowance.returned"] * 2


@contextmanager
def running(database_url):
    with running_central(database_url) as h:
        yield h, seed(h, {"MILK": 10, "TEA": 10})
