"""Allowances over HTTP: admins grant, list and return them; a store's key reads only its
own live ones; every refusal has its stable code."""

import uuid

import pytest

from tests.support.central_harness import running_central

pytestmark = pytest.mark.integration

STORES = ("north", "south")


@pytest.fixture
def world(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        cat = h.call("POST", "/api/v1/categories", admin, json={"name": "Held"})
        for sku in ("MILK", "EGGS"):
            product = {"sku": sku, "name": sku, "price": "2.00", "category_id": cat["id"]}
            h.call("POST", "/api/v1/products", admin, json=product)
            h.call("PUT", f"/api/v1/stock/{sku}", admin, json={"quantity": 10})
        keys = {
            s: {
                "X-API-Key": h.call("POST", "/api/v1/stores", admin, json={"id": s, "name": s})[
                    "api_key"
                ]
            }
            for s in STORES
        }
        yield h, admin, keys


def grant(h, admin, store="north", sku="MILK", units=3, ttl_s=600):
    body = {"store": store, "sku": sku, "units": units, "ttl_s": ttl_s}
    return h.client.post("/api/v1/allowances", json=body, headers=admin)


def error_of(response):
    return response.status_code, response.json()["error"]["code"]


def test_an_admin_grants_and_the_store_sees_it_as_its_own(world):
    h, admin, keys = world
    created = grant(h, admin)

    assert created.status_code == 201, created.text
    body = created.json()
    assert list(body) == [
        "id", "store_id", "sku", "units", "remaining", "expires_at", "state",
        "created_at", "updated_at", "version",
    ]  # fmt: skip
    assert (body["store_id"], body["sku"], body["units"], body["remaining"]) == (
        "north",
        "MILK",
        3,
        3,
    )
    assert body["expires_at"].endswith("+00:00") and body["state"] == "live"
    assert h.call("GET", "/api/v1/stock/MILK", admin)["quantity"] == 7
    assert h.call("GET", "/api/v1/allowances/mine", keys["north"])["items"] == [body]
    assert h.call("GET", "/api/v1/allowances/mine", keys["south"])["items"] == []


def test_a_returned_grant_leaves_the_stores_list_and_cannot_be_returned_again(world):
    h, admin, keys = world
    made = grant(h, admin).json()

    returned = h.client.post(f"/api/v1/allowances/{made['id']}/return", headers=admin)

    assert returned.status_code == 200
    assert (returned.json()["state"], returned.json()["remaining"]) == ("closed", 0)
    assert h.call("GET", "/api/v1/stock/MILK", admin)["quantity"] == 10
    assert h.call("GET", "/api/v1/allowances/mine", keys["north"])["items"] == []
    again = h.client.post(f"/api/v1/allowances/{made['id']}/return", headers=admin)
    assert error_of(again) == (409, "allowance.closed")


def test_the_admin_list_is_paged_and_says_when_it_was_cut(world):
    h, admin, _ = world
    made = [grant(h, admin, store, sku, 1).json() for store in STORES for sku in ("MILK", "EGGS")]

    first = h.call("GET", "/api/v1/allowances?limit=3", admin)
    rest = h.call("GET", f"/api/v1/allowances?limit=3&before={first['next_before']}", admin)
    south_eggs = h.call("GET", "/api/v1/allowances?store=south&sku=EGGS&state=live", admin)

    assert [g["id"] for g in first["items"] + rest["items"]] == [g["id"] for g in reversed(made)]
    assert first["next_before"] is not None and rest["next_before"] is None
    assert [g["id"] for g in south_eggs["items"]] == [made[3]["id"]]


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"units": 11}, 409, "stock.insufficient"),
        ({"units": 0}, 422, "quantity.invalid"),
        ({"ttl_s": 5}, 422, "request.invalid"),
        ({"sku": "milk 1l"}, 422, "sku.invalid"),
        ({"sku": "NO-SUCH"}, 404, "product.not_found"),
        ({"store": "nowhere"}, 404, "store.not_found"),
    ],
)
def test_bad_grants_get_stable_codes_and_set_nothing_aside(world, overrides, status, code):
    h, admin, _ = world
    refused = grant(h, admin, **overrides)

    assert error_of(refused) == (status, code)
    assert h.call("GET", "/api/v1/stock/MILK", admin)["quantity"] == 10
    assert h.call("GET", "/api/v1/allowances", admin)["items"] == []


def test_unknown_allowances_and_states_are_refused_with_their_codes(world):
    h, admin, _ = world
    missing = h.client.post(f"/api/v1/allowances/{uuid.uuid4()}/return", headers=admin)
    bad_state = h.client.get("/api/v1/allowances?state=gone", headers=admin)

    assert error_of(missing) == (404, "allowance.not_found")
    assert error_of(bad_state) == (422, "request.invalid")


def test_only_admins_grant_and_only_stores_read_their_own(world):
    h, admin, keys = world
    assert error_of(grant(h, keys["north"])) == (403, "auth.forbidden")
    assert error_of(h.client.get("/api/v1/allowances", headers=keys["north"])) == (
        403,
        "auth.forbidden",
    )
    assert error_of(h.client.get("/api/v1/allowances/mine", headers=admin)) == (
        403,
        "auth.forbidden",
    )
