"""A store reads its own last heartbeat (`GET /api/v1/stores/heartbeat` with its API key):
what its agent compares its replica's queue with at start. Only the store itself may."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from central.api import create_app
from central.services import accounts

pytestmark = pytest.mark.unit

PATH = "/api/v1/stores/heartbeat"


@dataclass
class Stores:
    client: TestClient
    admin: dict[str, str]
    keys: dict[str, dict[str, str]]


@pytest.fixture
def stores(central) -> Iterator[Stores]:
    accounts.create_user(central.uow(), accounts.NewUser("root", "root-password-1", "admin"))
    with TestClient(create_app(central, manage_relay=False)) as client:
        form = {"username": "root", "password": "root-password-1"}
        token = client.post("/api/v1/auth/token", data=form).json()["access_token"]
        admin = {"Authorization": f"Bearer {token}"}
        keys = {}
        for store in ("north", "south"):
            made = client.post("/api/v1/stores", json={"id": store, "name": store}, headers=admin)
            keys[store] = {"X-API-Key": made.json()["api_key"]}
        yield Stores(client, admin, keys)


def test_a_store_reads_its_own_last_report_with_its_replica_id(stores, clock):
    clock.current = datetime(2026, 11, 29, 10, 0, 0)
    report = {"offline_queue": 6, "replica_id": "a" * 32, "instance_id": "b" * 32}
    assert stores.client.post(PATH, json=report, headers=stores.keys["north"]).status_code == 200

    north = stores.client.get(PATH, headers=stores.keys["north"]).json()
    south = stores.client.get(PATH, headers=stores.keys["south"]).json()

    assert north["last_seen"] == "2026-11-29T10:00:00+00:00"
    assert north["reported"]["offline_queue"] == 6
    assert north["reported"]["replica_id"] == "a" * 32
    assert south == {"store_id": "south", "last_seen": None, "reported": {}}


def test_only_the_store_itself_reads_it(stores):
    answer = stores.client.get(PATH, headers=stores.admin)

    assert answer.status_code == 403


def test_a_replica_id_is_held_to_the_id_rule(stores):
    bad = {"replica_id": "not an id\u202e"}

    answer = stores.client.post(PATH, json=bad, headers=stores.keys["north"])

    assert answer.status_code == 422
