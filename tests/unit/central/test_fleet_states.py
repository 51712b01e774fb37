"""Each store's state in the fleet view (`state`, `healthy`), on central's clock: ok,
not_ready, stale, down, auth_failed (a revoked key or a deactivated store's key, recorded at
most every 5 s; an unknown key names no store), never_seen and inactive; and the fleet
metrics central exports from its database at scrape time."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import peewee
import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from central.api import create_app
from central.metrics import Metrics
from central.models import StoreRefusal
from central.services import accounts
from central.services.fleet import (
    ACTIVE_STATES,
    DOWN_FLOOR_S,
    REFUSAL_RESOLUTION,
    Heard,
    StoreState,
    down_window_s,
    live_window_s,
    store_state,
)
from tests.support.central_fakes import FakeClock

pytestmark = pytest.mark.unit

EVERY_S = 1.0  # live 3 s (2 intervals + 1 s), down after 30 s (6 intervals, floor 30 s)
NOW = datetime(2026, 11, 29, 10, 0, 0)


# --- the rule ------------------------------------------------------------------------------


def heard(**overrides: Any) -> Heard:
    base = Heard(
        active=True,
        last_seen=NOW,
        every_s=10.0,
        says_ready=True,
        has_problems=False,
        last_refused=None,
    )
    return replace(base, **overrides)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        (heard(), StoreState.OK),
        (heard(last_seen=ago(21)), StoreState.OK),  # 2 x 10 s + 1 s: still live
        (heard(last_seen=ago(21.5)), StoreState.STALE),
        (heard(last_seen=ago(60)), StoreState.STALE),  # 6 x 10 s: not yet down
        (heard(last_seen=ago(60.5)), StoreState.DOWN),
        (heard(says_ready=False), StoreState.NOT_READY),
        (heard(has_problems=True), StoreState.NOT_READY),
        (heard(last_seen=ago(30), says_ready=False), StoreState.STALE),  # silence first
        (heard(last_seen=None), StoreState.NEVER_SEEN),
        (heard(last_seen=None, last_refused=ago(1)), StoreState.AUTH_FAILED),
        (heard(last_seen=ago(5), last_refused=ago(1)), StoreState.AUTH_FAILED),
        (heard(last_seen=ago(1), last_refused=ago(5)), StoreState.OK),  # accepted since
        (heard(last_seen=ago(600), last_refused=ago(1)), StoreState.AUTH_FAILED),
        (heard(active=False), StoreState.INACTIVE),
        (heard(active=False, last_seen=ago(600), last_refused=ago(1)), StoreState.INACTIVE),
    ],
)
def test_the_state_rule(what: Heard, expected: StoreState) -> None:
    assert store_state(what, NOW) is expected


def test_down_comes_after_six_intervals_and_never_before_the_floor() -> None:
    assert down_window_s(10.0) == 60.0
    assert down_window_s(0.5) == DOWN_FLOOR_S == 30.0
    for every_s in (0.01, 0.25, 0.5, 1.0, 10.0, 60.0, 86400.0):
        assert down_window_s(every_s) > live_window_s(every_s), "stale comes before down"


# --- through the API ----------------------------------------------------------------------


@dataclass
class Fleet:
    client: TestClient
    admin: dict[str, str]
    keys: dict[str, dict[str, str]]
    key_ids: dict[str, int]
    clock: FakeClock

    def beat(self, store: str, key: dict[str, str] | None = None, **report: Any) -> Any:
        body = {"ready": True, "every_s": EVERY_S, "instance_id": f"{store}-agent", **report}
        headers = key or self.keys[store]
        return self.client.post("/api/v1/stores/heartbeat", headers=headers, json=body)

    def row(self, store: str) -> dict[str, Any]:
        items = self.client.get("/api/v1/sync/stores", headers=self.admin).json()["items"]
        return next(item for item in items if item["store_id"] == store)

    def state(self, store: str) -> tuple[str, bool]:
        row = self.row(store)
        return row["state"], row["healthy"]

    def revoke(self, store: str) -> None:
        url = f"/api/v1/stores/{store}/keys/{self.key_ids[store]}"
        assert self.client.delete(url, headers=self.admin).status_code == 204

    def metrics(self) -> dict[str, dict[tuple[str, ...], float]]:
        text = self.client.get("/metrics").text
        found: dict[str, dict[tuple[str, ...], float]] = {}
        for family in text_string_to_metric_families(text):
            if family.name in ("invctl_store_state", "invctl_store_heartbeat_age_seconds"):
                for sample in family.samples:
                    labels = tuple(sample.labels[k] for k in sorted(sample.labels))
                    found.setdefault(family.name, {})[labels] = sample.value
        return found


@pytest.fixture
def fleet(central, clock):
    accounts.create_user(central.uow(), accounts.NewUser("root", "root-password-1", "admin"))
    with TestClient(create_app(central, manage_relay=False)) as client:
        form = {"username": "root", "password": "root-password-1"}
        token = client.post("/api/v1/auth/token", data=form).json()["access_token"]
        admin = {"Authorization": f"Bearer {token}"}
        keys, key_ids = {}, {}
        for store in ("north", "south"):
            made = client.post("/api/v1/stores", json={"id": store, "name": store}, headers=admin)
            keys[store] = {"X-API-Key": made.json()["api_key"]}
            key_ids[store] = made.json()["key_id"]
        yield Fleet(client, admin, keys, key_ids, clock)


def test_a_live_ready_agent_is_ok_and_healthy(fleet):
    fleet.beat("north")

    row = fleet.row("north")

    assert (row["state"], row["healthy"], row["ready"], row["last_refused"]) == (
        "ok",
        True,
        True,
        None,
    )


def test_a_stopped_agent_goes_stale_then_down(fleet):
    fleet.beat("north")

    fleet.clock.advance(live_window_s(EVERY_S) + 0.1)
    stale = fleet.row("north")
    fleet.clock.advance(DOWN_FLOOR_S)
    down = fleet.row("north")

    assert (stale["state"], stale["healthy"], stale["ready"]) == ("stale", False, False)
    assert (down["state"], down["healthy"], down["ready"]) == ("down", False, False)


def test_an_agent_that_says_it_is_not_ready_is_not_ready(fleet):
    fleet.beat("north", ready=False)

    assert fleet.state("north") == ("not_ready", False)


def test_two_agents_at_once_make_the_store_not_ready(fleet):
    fleet.beat("north", instance_id="a" * 32)
    fleet.beat("north", instance_id="b" * 32)
    fleet.beat("north", instance_id="a" * 32)

    assert fleet.state("north") == ("not_ready", False)


def test_a_store_never_heard_from_is_never_seen_and_unhealthy(fleet):
    row = fleet.row("south")

    assert (row["state"], row["healthy"], row["ready"]) == ("never_seen", False, None)


def test_a_deactivated_store_is_inactive_and_not_an_alarm(fleet):
    fleet.beat("north")
    fleet.client.post("/api/v1/stores/north/deactivate", headers=fleet.admin)

    refused = fleet.beat("north")

    assert refused.status_code == 401
    assert fleet.state("north") == ("inactive", True)
    assert fleet.row("north")["last_refused"] is not None, "its key was refused, and noted"


def test_a_revoked_key_shows_auth_failed_until_a_heartbeat_is_accepted(fleet):
    fleet.beat("north")
    fleet.revoke("north")
    fleet.clock.advance(1)

    refused = fleet.beat("north")

    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "auth.invalid"
    row = fleet.row("north")
    assert (row["state"], row["healthy"], row["ready"]) == ("auth_failed", False, False)
    assert row["last_refused"] == fleet.clock.current.isoformat() + "+00:00"

    new_key = fleet.client.post("/api/v1/stores/north/keys", headers=fleet.admin).json()
    fleet.clock.advance(1)
    assert fleet.beat("north", {"X-API-Key": new_key["api_key"]}).status_code == 200
    assert fleet.state("north") == ("ok", True)


def test_a_refused_key_answers_exactly_as_an_unknown_key(fleet):
    fleet.revoke("north")

    revoked = fleet.beat("north")
    unknown = fleet.beat("north", {"X-API-Key": "ik_" + "x" * 43})

    assert (revoked.status_code, revoked.json()) == (unknown.status_code, unknown.json())


def test_a_store_refused_before_its_first_heartbeat_is_auth_failed(fleet):
    fleet.revoke("south")

    fleet.beat("south")

    assert fleet.state("south") == ("auth_failed", False)


def test_an_unknown_key_records_nothing(fleet, central):
    answer = fleet.beat("north", {"X-API-Key": "ik_" + "x" * 43})

    assert answer.status_code == 401
    with central.db.connection_context():
        assert StoreRefusal.select().count() == 0
    assert fleet.state("north") == ("never_seen", False)


def refusal_time(central) -> datetime:
    with central.db.connection_context():
        return StoreRefusal.get(StoreRefusal.store_id == "north").last_refused


def test_refusals_are_written_at_most_once_per_resolution(fleet, central):
    fleet.revoke("north")
    fleet.beat("north")
    first = refusal_time(central)

    for _ in range(10):
        fleet.clock.advance(REFUSAL_RESOLUTION.total_seconds() / 20)
        assert fleet.beat("north").status_code == 401
    kept = refusal_time(central)
    fleet.clock.advance(REFUSAL_RESOLUTION.total_seconds() / 2)
    fleet.beat("north")

    assert kept == first, "refusals within the resolution write nothing"
    assert refusal_time(central) == fleet.clock.current, "one after it does"


def test_a_refusal_that_cannot_be_recorded_still_answers_401(fleet, central):
    fleet.revoke("north")
    with central.db.connection_context():
        central.db.drop_tables([StoreRefusal])

    answer = fleet.beat("north")

    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "auth.invalid")


# --- the metrics ---------------------------------------------------------------------------


def test_the_metrics_give_each_active_stores_state_and_heartbeat_age(fleet):
    fleet.client.post("/api/v1/stores", json={"id": "gone", "name": "gone"}, headers=fleet.admin)
    fleet.client.post("/api/v1/stores/gone/deactivate", headers=fleet.admin)
    fleet.beat("north")
    fleet.clock.advance(40)

    metrics = fleet.metrics()

    states = metrics["invctl_store_state"]
    assert {labels for labels, value in states.items() if value == 1.0} == {
        ("down", "north"),
        ("never_seen", "south"),
    }
    assert {labels for labels in states} == {
        (state, store) for state in ACTIVE_STATES for store in ("north", "south")
    }, "every state of every active store, 0 or 1; the deactivated one not at all"
    assert metrics["invctl_store_heartbeat_age_seconds"] == {("north",): 40.0}


def test_the_metrics_follow_a_revoked_key(fleet):
    fleet.beat("north")
    fleet.revoke("north")
    fleet.clock.advance(1)
    fleet.beat("north")

    states = fleet.metrics()["invctl_store_state"]

    assert states[("auth_failed", "north")] == 1.0 and states[("ok", "north")] == 0.0


def test_a_scrape_while_the_database_is_down_serves_the_other_metrics() -> None:
    def database_down() -> list[Any]:
        raise peewee.OperationalError("database is locked")

    metrics = Metrics()
    metrics.watch_fleet(database_down, ACTIVE_STATES)

    text = generate_latest(metrics.registry).decode()

    assert "invctl_central_up 1.0" in text
    assert "invctl_store_state" not in text
