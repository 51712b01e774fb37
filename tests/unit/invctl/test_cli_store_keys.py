"""`invctl store keys STORE_ID`: a store's API keys with the ids `revoke-key` takes."""

from __future__ import annotations

import json

import pytest

from tests.support.invctl_fakes import FAKE_CENTRAL as CENTRAL
from tests.support.invctl_fakes import CliHarness, FakeServer, error_body

pytestmark = pytest.mark.unit

API = f"{CENTRAL}/api/v1"
KEYS = {
    "items": [
        {
            "id": 3,
            "prefix": "ik_AbCdEfG",
            "created_at": "2026-11-01T09:00:00+00:00",
            "revoked_at": "2026-11-29T09:30:00+00:00",
            "active": False,
        },
        {
            "id": 8,
            "prefix": "ik_HiJkLmN",
            "created_at": "2026-11-29T09:00:00+00:00",
            "revoked_at": None,
            "active": True,
        },
    ]
}


def central(cli: CliHarness, *args: str):
    return cli("--central", CENTRAL, *args, env={"INVCTL_TOKEN": "t"})


def test_keys_lists_id_prefix_created_and_status(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/stores/store-042/keys", 200, KEYS)

    result = central(cli, "store", "keys", "store-042")

    assert result.exit_code == 0, result.output
    header, _, revoked, active = result.stdout.splitlines()[:4]
    assert header.split() == ["id", "prefix", "created", "status"]
    created, revoked_at = ["2026-11-01", "09:00:00"], ["2026-11-29", "09:30:00"]
    assert revoked.split() == ["3", "ik_AbCdEfG", *created, "revoked", *revoked_at]
    assert active.split() == ["8", "ik_HiJkLmN", "2026-11-29", "09:00:00", "active"]


def test_keys_json_is_centrals_list(cli: CliHarness, server: FakeServer) -> None:
    server.on("GET", f"{API}/stores/store-042/keys", 200, KEYS)

    result = central(cli, "--json", "store", "keys", "store-042")

    assert json.loads(result.stdout) == KEYS["items"]


def test_keys_of_an_unknown_store_exit_3(cli: CliHarness, server: FakeServer) -> None:
    body = error_body("store.not_found", "No such store.", store_id="nope")
    server.on("GET", f"{API}/stores/nope/keys", 404, body)

    result = central(cli, "store", "keys", "nope")

    assert result.exit_code == 3
    assert "[store.not_found]" in result.stderr


def test_rotate_key_points_at_the_list_of_key_ids(cli: CliHarness, server: FakeServer) -> None:
    issued = {"id": "store-042", "api_key": "ik_x", "key_id": 9, "kafka_username": None}
    server.on("POST", f"{API}/stores/store-042/keys", 201, issued)

    result = central(cli, "store", "rotate-key", "store-042")

    assert result.exit_code == 0, result.output
    assert "invctl store keys store-042" in result.stderr
