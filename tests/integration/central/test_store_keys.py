"""GET /api/v1/stores/{store_id}/keys, on SQLite and on MariaDB: an admin reads a store's API
keys (id, prefix, when issued, revoked or active) to find the one to revoke; never a key nor
its hash; 404 for an unknown store; every other role refused."""

from __future__ import annotations

import pytest

from central.models import ApiKey
from tests.support.accounts import PASSWORD, unique
from tests.support.central_harness import Harness, running_central

API = "/api/v1"


@pytest.fixture
def h(database_url):
    with running_central(database_url) as harness:
        yield harness


def add_store(h: Harness, store_id: str) -> dict:
    return h.call("POST", f"{API}/stores", h.admin(), json={"id": store_id, "name": store_id})


def test_an_admin_lists_every_key_of_the_store_active_and_revoked(h):
    first = add_store(h, "store-1")
    second = h.call("POST", f"{API}/stores/store-1/keys", h.admin())
    add_store(h, "store-2")  # another store's key is not listed
    h.call("DELETE", f"{API}/stores/store-1/keys/{first['key_id']}", h.admin())

    body = h.call("GET", f"{API}/stores/store-1/keys", h.admin())

    old, new = body["items"]
    assert (old["id"], new["id"]) == (first["key_id"], second["key_id"])
    assert (old["prefix"], new["prefix"]) == (first["api_key"][:10], second["api_key"][:10])
    assert (old["active"], new["active"]) == (False, True)
    assert old["revoked_at"] is not None and new["revoked_at"] is None
    assert set(new) == {"id", "prefix", "created_at", "revoked_at", "active"}
    assert new["created_at"].endswith("+00:00")


def test_the_list_never_holds_a_key_or_its_hash(h):
    store = add_store(h, "store-1")

    text = h.client.get(f"{API}/stores/store-1/keys", headers=h.admin()).text

    with h.central.db.connection_context():
        key_hash = ApiKey.get(ApiKey.id == store["key_id"]).key_hash
    assert store["api_key"] not in text
    assert key_hash not in text


def test_a_deactivated_store_lists_its_keys_all_revoked(h):
    add_store(h, "store-1")
    h.call("POST", f"{API}/stores/store-1/deactivate", h.admin())

    [key] = h.call("GET", f"{API}/stores/store-1/keys", h.admin())["items"]

    assert key["active"] is False


def test_an_unknown_store_is_404_store_not_found(h):
    response = h.client.get(f"{API}/stores/no-such-store/keys", headers=h.admin())

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "store.not_found"


def test_a_store_id_too_long_is_422_never_500(h):
    response = h.client.get(f"{API}/stores/{'s' * 65}/keys", headers=h.admin())

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "request.invalid"


def test_only_an_admin_reads_a_stores_keys(h):
    store = add_store(h, "store-1")
    path = f"{API}/stores/store-1/keys"
    refused = {}
    for role in ("ops", "staff"):
        username = unique(role)
        fields = {"store_id": "store-1"} if role == "staff" else {}
        user = {"username": username, "password": PASSWORD, "role": role, **fields}
        h.call("POST", f"{API}/users", h.admin(), json=user)
        refused[role] = h.client.get(path, headers=h.as_user(username, PASSWORD))
    refused["store"] = h.client.get(path, headers={"X-API-Key": store["api_key"]})
    anonymous = h.client.get(path)

    for role, response in refused.items():
        assert response.status_code == 403, role
        assert response.json()["error"]["code"] == "auth.forbidden"
    assert anonymous.status_code == 401
