"""The fleet view's agents: each heartbeat names its agent process (instance); two running at
once for one store are flagged `duplicate_agents` (in the view and in the metrics), a
restarted agent is not; the answer carries central's time for the agents' clock estimate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from central.api import create_app
from central.services import accounts
from tests.support.central_fakes import FakeClock

pytestmark = pytest.mark.unit

EVERY_S = 1.0  # live for 2 intervals + 1 s of grace: 3 s
A, B = "a" * 32, "b" * 32


@dataclass
class Fleet:
    client: TestClient
    admin: dict[str, str]
    keys: dict[str, dict[str, str]]
    clock: FakeClock

    def beat(self, store: str, instance: str | None, **report: Any) -> Any:
        body = {"ready": True, "every_s": EVERY_S, **report}
        if instance is not None:
            body["instance_id"] = instance
        return self.client.post("/api/v1/stores/heartbeat", headers=self.keys[store], json=body)

    def row(self, store: str) -> dict[str, Any]:
        items = self.client.get("/api/v1/sync/stores", headers=self.admin).json()["items"]
        return next(item for item in items if item["store_id"] == store)

    def duplicate_metric(self) -> dict[str, float]:
        text = self.client.get("/metrics").text
        return {
            sample.labels["store"]: sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "invctl_store_duplicate_agents"
            for sample in family.samples
        }


@pytest.fixture
def fleet(central, clock):
    accounts.create_user(central.uow(), accounts.NewUser("root", "root-password-1", "admin"))
    with TestClient(create_app(central, manage_relay=False)) as client:
        form = {"username": "root", "password": "root-password-1"}
        token = client.post("/api/v1/auth/token", data=form).json()["access_token"]
        admin = {"Authorization": f"Bearer {token}"}
        keys = {}
        for store in ("north", "south"):
            made = client.post("/api/v1/stores", json={"id": store, "name": store}, headers=admin)
            keys[store] = {"X-API-Key": made.json()["api_key"]}
        yield Fleet(client, admin, keys, clock)


def test_the_answer_carries_centrals_time_to_the_millisecond(fleet):
    fleet.clock.current = datetime(2026, 11, 29, 10, 0, 0, 123456)

    answer = fleet.beat("north", A)

    assert (answer.status_code, answer.json()) == (
        200,
        {"server_time": "2026-11-29T10:00:00.123+00:00"},
    )


def test_a_second_agent_is_flagged_by_the_first_ones_next_heartbeat(fleet):
    fleet.beat("north", A)
    fleet.clock.advance(0.5)
    fleet.beat("north", B)
    before = fleet.row("north")
    fleet.clock.advance(0.5)

    fleet.beat("north", A)

    row = fleet.row("north")
    assert before["problems"] == [] and before["ready"] is True, "A has not heartbeated since"
    assert [(p["code"], sorted(p["instance_ids"])) for p in row["problems"]] == [
        ("duplicate_agents", [A, B])
    ]
    assert A in row["problems"][0]["message"] and B in row["problems"][0]["message"]
    assert row["ready"] is False, "both agents say ready; the store is not"
    assert [(i["instance_id"], i["live"]) for i in row["instances"]] == [(A, True), (B, True)]
    assert fleet.duplicate_metric() == {"north": 1.0}


def test_a_restarted_agent_is_not_a_duplicate(fleet):
    for _ in range(3):
        fleet.beat("north", A)
        fleet.clock.advance(EVERY_S)
    fleet.clock.advance(0.5)  # A stopped; B is the same agent started again

    fleet.beat("north", B)

    row = fleet.row("north")
    assert (row["problems"], row["ready"]) == ([], True)
    assert [(i["instance_id"], i["live"]) for i in row["instances"]] == [(B, True), (A, True)]
    assert fleet.duplicate_metric() == {"north": 0.0}


def test_an_agent_gone_quiet_stops_counting_after_two_intervals(fleet):
    fleet.beat("north", A)
    fleet.beat("north", B)
    fleet.beat("north", A)
    assert fleet.row("north")["problems"] != []

    fleet.clock.advance(2 * EVERY_S + 1.0 + 0.1)  # B froze
    fleet.beat("north", A)

    row = fleet.row("north")
    assert (row["problems"], row["ready"]) == ([], True)
    assert [(i["instance_id"], i["live"]) for i in row["instances"]] == [(A, True), (B, False)]


def test_a_store_whose_only_agent_went_quiet_is_not_ready(fleet):
    fleet.beat("north", A)
    assert fleet.row("north")["ready"] is True

    fleet.clock.advance(2 * EVERY_S + 1.0 + 0.1)

    row = fleet.row("north")
    assert row["ready"] is False and row["reported"]["ready"] is True
    assert fleet.row("south")["ready"] is None, "never heard from"


def test_a_heartbeat_without_an_instance_id_is_kept_as_before(fleet):
    answer = fleet.client.post(
        "/api/v1/stores/heartbeat", headers=fleet.keys["north"], json={"ready": True}
    )

    row = fleet.row("north")
    assert answer.status_code == 200
    assert (row["ready"], row["problems"], row["instances"]) == (True, [], [])
    assert row["reported"] == {"ready": True}


def test_an_instance_quiet_for_an_hour_is_forgotten(fleet):
    fleet.beat("north", A)
    fleet.clock.advance(3601)

    fleet.beat("north", B)

    assert [i["instance_id"] for i in fleet.row("north")["instances"]] == [B]


def test_the_reported_clock_figures_are_kept_negative_included(fleet):
    fleet.beat("north", A, staleness_s=-3.25, clock_offset_s=600.125)

    reported = fleet.row("north")["reported"]

    assert (reported["staleness_s"], reported["clock_offset_s"]) == (-3.25, 600.125)
    assert (reported["instance_id"], reported["every_s"]) == (A, EVERY_S)


@pytest.mark.parametrize(
    "field",
    [
        {"instance_id": ""},
        {"instance_id": "a b"},
        {"instance_id": "x" * 65},
        {"every_s": 0},
        {"every_s": 86401},
        {"staleness_s": 1e12},
        {"clock_offset_s": "soon"},
    ],
)
def test_bad_agent_figures_are_refused(fleet, field):
    answer = fleet.client.post(
        "/api/v1/stores/heartbeat", headers=fleet.keys["north"], json={"ready": True, **field}
    )

    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "request.invalid")


def test_a_figure_that_is_not_a_number_is_refused(fleet):
    answer = fleet.client.post(
        "/api/v1/stores/heartbeat",
        headers={**fleet.keys["north"], "Content-Type": "application/json"},
        content=b'{"staleness_s": NaN}',
    )

    assert answer.status_code == 422
