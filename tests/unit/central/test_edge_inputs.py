"""Central's HTTP edge: hostile values get a 4xx with a stable code, never a 500; unknown
fields are refused; names hold no control or format characters; integers stay in range."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central.api import create_app
from central.services import accounts

pytestmark = pytest.mark.unit

BEYOND_64_BITS = "99999999999999999999999"
SURROGATE = "\\ud800"  # as written in JSON: a lone surrogate, which UTF-8 cannot encode


@dataclass
class Api:
    client: TestClient
    admin: dict[str, str]
    store: dict[str, str]
    category_id: int

    def send(self, method: str, path: str, who: str, raw: str | None = None, **kw: Any) -> Any:
        headers = {**self.admin} if who == "admin" else {**self.store, "Idempotency-Key": "k1"}
        if raw is not None:
            kw["content"] = raw.encode()
            headers["Content-Type"] = "application/json"
        return self.client.request(method, path, headers=headers, **kw)


@pytest.fixture
def api(central):
    accounts.create_user(central.uow(), accounts.NewUser("root", "root-password-1", "admin"))
    app = create_app(central, manage_relay=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        form = {"username": "root", "password": "root-password-1"}
        token = client.post("/api/v1/auth/token", data=form).json()["access_token"]
        admin = {"Authorization": f"Bearer {token}"}
        category = client.post("/api/v1/categories", json={"name": "Dairy"}, headers=admin)
        product = {"sku": "MILK", "name": "Milk", "price": "1.25", "category_id": 1}
        assert client.post("/api/v1/products", json=product, headers=admin).status_code == 201
        store = client.post("/api/v1/stores", json={"id": "s1", "name": "S1"}, headers=admin)
        yield Api(client, admin, {"X-API-Key": store.json()["api_key"]}, category.json()["id"])


def refusal(response: Any) -> tuple[int, str, dict[str, Any]]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["details"]


def fields_named(details: dict[str, Any]) -> list[str]:
    return [problem["field"] for problem in details["errors"]]


# --- 4xx, never 500 --------------------------------------------------------------------------


def test_an_order_cursor_beyond_64_bits_is_refused(api):
    answer = api.send("GET", f"/api/v1/orders?before={BEYOND_64_BITS}", "admin")
    status, code, details = refusal(answer)
    assert (status, code, fields_named(details)) == (422, "request.invalid", ["query.before"])


def test_a_movements_cursor_beyond_64_bits_is_refused(api):
    answer = api.send("GET", f"/api/v1/stock/MILK/movements?before={BEYOND_64_BITS}", "admin")
    status, code, details = refusal(answer)
    assert (status, code, fields_named(details)) == (422, "request.invalid", ["query.before"])


@pytest.mark.parametrize(
    ("name", "moment"),
    [
        ("since", "0001-01-01T00:00:00+14:00"),  # before year 1 in UTC
        ("until", "9999-12-31T23:59:59-14:00"),  # after year 9999 in UTC
    ],
)
def test_a_moment_outside_the_calendar_in_utc_is_refused(api, name, moment):
    answer = api.send("GET", "/api/v1/orders", "admin", params={name: moment})
    status, code, details = refusal(answer)
    assert (status, code, fields_named(details)) == (422, "request.invalid", [f"query.{name}"])


def test_the_earliest_and_latest_moments_in_utc_are_fine(api):
    answer = api.send(
        "GET",
        "/api/v1/orders",
        "admin",
        params={"since": "0001-01-01T00:00:00+00:00", "until": "9999-12-31T23:59:59+00:00"},
    )
    assert answer.status_code == 200


def test_a_category_id_beyond_64_bits_is_refused_on_create(api):
    raw = f'{{"sku": "TEA", "name": "Tea", "price": "1", "category_id": {BEYOND_64_BITS}}}'
    status, code, details = refusal(api.send("POST", "/api/v1/products", "admin", raw))
    assert (status, code, fields_named(details)) == (422, "request.invalid", ["category_id"])


def test_a_category_id_beyond_64_bits_is_refused_on_patch(api):
    raw = f'{{"category_id": {BEYOND_64_BITS}}}'
    status, code, details = refusal(api.send("PATCH", "/api/v1/products/MILK", "admin", raw))
    assert (status, code, fields_named(details)) == (422, "request.invalid", ["category_id"])


def test_a_lone_surrogate_in_an_order_sku_is_refused_and_echoed_escaped(api):
    raw = f'{{"lines": [{{"sku": "{SURROGATE}", "quantity": 1}}]}}'
    status, code, details = refusal(api.send("POST", "/api/v1/orders", "store", raw))
    assert (status, code, details) == (422, "sku.invalid", {"sku": "\\ud800"})


def test_a_lone_surrogate_in_a_product_price_is_refused(api):
    raw = f'{{"sku": "TEA", "name": "Tea", "price": "{SURROGATE}", "category_id": 1}}'
    status, code, details = refusal(api.send("POST", "/api/v1/products", "admin", raw))
    assert (status, code, details) == (422, "price.invalid", {"price": "\\ud800"})


def test_a_lone_surrogate_in_a_product_name_is_refused(api):
    raw = f'{{"sku": "TEA", "name": "Te{SURROGATE}a", "price": "1", "category_id": 1}}'
    status, code, _ = refusal(api.send("POST", "/api/v1/products", "admin", raw))
    assert (status, code) == (422, "name.invalid")


def test_a_lone_surrogate_in_a_category_name_is_refused(api):
    raw = f'{{"name": "{SURROGATE}"}}'
    status, code, _ = refusal(api.send("POST", "/api/v1/categories", "admin", raw))
    assert (status, code) == (422, "name.invalid")


def test_a_lone_surrogate_in_an_imported_name_is_a_row_error(api):
    raw = f'{{"rows": [{{"line": 7, "kind": "category", "name": "{SURROGATE}"}}]}}'
    status, code, details = refusal(api.send("POST", "/api/v1/import", "admin", raw))
    assert (status, code) == (422, "import.invalid")
    assert [(e["line"], e["code"]) for e in details["errors"]] == [(7, "name.invalid")]


def test_heartbeat_values_are_bounded_and_clean(api):
    too_big = api.send("POST", "/api/v1/stores/heartbeat", "store", f'{{"lag": {BEYOND_64_BITS}}}')
    negative = api.send("POST", "/api/v1/stores/heartbeat", "store", '{"dead_letters": -1}')
    dirty = api.send(
        "POST", "/api/v1/stores/heartbeat", "store", f'{{"last_event_at": "{SURROGATE}"}}'
    )
    assert [refusal(a)[:2] for a in (too_big, negative, dirty)] == [(422, "request.invalid")] * 3
    assert api.send("GET", "/api/v1/sync/stores", "admin").status_code == 200


def test_an_imported_line_number_beyond_reason_is_replaced_by_the_rows_position(api):
    raw = f'{{"rows": [{{"line": {BEYOND_64_BITS}, "kind": "stock", "sku": "MILK"}}]}}'
    _, _, details = refusal(api.send("POST", "/api/v1/import", "admin", raw))
    assert [e["line"] for e in details["errors"]] == [1]


# --- unknown fields --------------------------------------------------------------------------

UNKNOWN_FIELD_CASES = [
    ("POST", "/api/v1/categories", "admin", {"name": "Tea"}),
    ("POST", "/api/v1/products", "admin", {"sku": "T", "name": "T", "price": 1, "category_id": 1}),
    ("PATCH", "/api/v1/products/MILK", "admin", {"name": "Milk"}),
    ("PUT", "/api/v1/stock/MILK", "admin", {"quantity": 3}),
    ("POST", "/api/v1/stock/MILK/adjustments", "admin", {"delta": 3}),
    ("POST", "/api/v1/import", "admin", {"rows": []}),
    ("POST", "/api/v1/orders", "store", {"lines": [{"sku": "MILK", "quantity": 1}]}),
    ("POST", "/api/v1/stores/heartbeat", "store", {"ready": True}),
]


@pytest.mark.parametrize(("method", "path", "who", "body"), UNKNOWN_FIELD_CASES)
def test_an_unknown_field_is_refused_and_named(api, method, path, who, body):
    raw = json.dumps({**body, "quantitty": 1})
    status, code, details = refusal(api.send(method, path, who, raw))
    assert (status, code) == (422, "request.invalid")
    assert details["errors"] == [{"field": "quantitty", "message": "unknown field"}]


def test_an_unknown_field_named_like_a_known_one_elsewhere_is_still_request_invalid(api):
    raw = json.dumps({"lines": [{"sku": "MILK", "quantity": 1}], "sku": "MILK"})
    status, code, _ = refusal(api.send("POST", "/api/v1/orders", "store", raw))
    assert (status, code) == (422, "request.invalid")


def test_an_unknown_field_in_an_order_line_is_refused_and_named(api):
    raw = json.dumps({"lines": [{"sku": "MILK", "quantity": 1, "price": "0.01"}]})
    status, code, details = refusal(api.send("POST", "/api/v1/orders", "store", raw))
    assert (status, code) == (422, "request.invalid")
    assert details["errors"] == [{"field": "lines.0.price", "message": "unknown field"}]


def test_an_unknown_field_in_an_import_row_is_a_row_error(api):
    raw = json.dumps({"rows": [{"line": 2, "kind": "category", "name": "Tea", "colour": "red"}]})
    status, code, details = refusal(api.send("POST", "/api/v1/import", "admin", raw))
    assert (status, code) == (422, "import.invalid")
    assert [(e["line"], e["code"]) for e in details["errors"]] == [(2, "field.unknown")]
    assert "colour" in details["errors"][0]["message"]


def test_a_field_name_holding_a_surrogate_is_refused(api):
    raw = f'{{"name": "Tea", "x{SURROGATE}": 1}}'
    status, code, _ = refusal(api.send("POST", "/api/v1/categories", "admin", raw))
    assert (status, code) == (422, "request.invalid")


def test_an_unknown_order_line_field_holding_a_surrogate_is_named_escaped(api):
    raw = f'{{"lines": [{{"sku": "MILK", "quantity": 1, "x{SURROGATE}": 1}}]}}'
    status, code, details = refusal(api.send("POST", "/api/v1/orders", "store", raw))
    assert (status, code, fields_named(details)) == (422, "request.invalid", ["lines.0.x\\ud800"])


# --- names, descriptions and notes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("Milk\x1b[2J", 4),  # ESC clears a terminal
        ("\u202eklim", 0),  # a right-to-left override
        ("Mi\u200blk", 2),  # a zero-width space
        ("Milk\nTea", 4),
        ("  Milk\x07", 6),  # the index is into the text as sent
    ],
)
def test_a_product_name_with_a_control_or_format_character_is_refused(api, name, index):
    body = {"sku": "TEA", "name": name, "price": "1", "category_id": 1}
    status, code, details = refusal(
        api.client.post("/api/v1/products", json=body, headers=api.admin)
    )
    assert (status, code, details) == (422, "name.invalid", {"field": "name", "index": index})


def test_names_with_joiners_accents_and_trimmed_spaces_are_accepted(api):
    body = {"sku": "TEA", "name": " Thé 👩\u200d👩\u200d👧 ", "price": "1", "category_id": 1}
    created = api.client.post("/api/v1/products", json=body, headers=api.admin)
    assert (created.status_code, created.json()["name"]) == (201, "Thé 👩\u200d👩\u200d👧")


def test_a_category_name_and_a_patched_name_are_held_to_the_same_rule(api):
    category = api.client.post("/api/v1/categories", json={"name": "Te\ta"}, headers=api.admin)
    patched = api.client.patch("/api/v1/products/MILK", json={"name": "M\x00"}, headers=api.admin)
    assert refusal(category) == (422, "name.invalid", {"field": "name", "index": 2})
    assert refusal(patched) == (422, "name.invalid", {"field": "name", "index": 1})


def test_a_description_with_a_control_character_is_refused(api):
    patch = {"description": "fresh\x1b]0;pwned\x07"}
    answer = api.client.patch("/api/v1/products/MILK", json=patch, headers=api.admin)
    assert refusal(answer) == (422, "name.invalid", {"field": "description", "index": 5})


def test_an_imported_name_category_or_description_with_a_control_character_is_a_row_error(api):
    product = {"kind": "product", "sku": "TEA", "price": "1", "category": "Dairy"}
    rows = [
        {"line": 2, "kind": "category", "name": "Te\u202ea"},
        {"line": 3, **product, "name": "Tea", "description": "a\x1bb"},
        {"line": 4, **product, "name": "Tea", "category": "Dai\x85ry"},
    ]
    answer = api.client.post("/api/v1/import", json={"rows": rows}, headers=api.admin)
    status, code, details = refusal(answer)
    assert (status, code) == (422, "import.invalid")
    assert [(e["line"], e["code"]) for e in details["errors"]] == [
        (2, "name.invalid"),
        (3, "name.invalid"),
        (4, "name.invalid"),
    ]


def test_a_stock_note_with_a_control_character_is_refused(api):
    body = {"quantity": 3, "note": "recount\x1b[1A"}
    answer = api.client.put("/api/v1/stock/MILK", json=body, headers=api.admin)
    assert refusal(answer) == (422, "request.invalid", {"field": "note", "index": 7})


# --- strings are bounded too -----------------------------------------------------------------


def test_a_price_longer_than_any_price_is_refused_with_its_own_code(api):
    body = {"sku": "TEA", "name": "Tea", "price": "1" + "0" * 40, "category_id": 1}
    status, code, _ = refusal(api.client.post("/api/v1/products", json=body, headers=api.admin))
    assert (status, code) == (422, "price.invalid")


@pytest.mark.parametrize(
    "path",
    ["/api/v1/products/{sku}", "/api/v1/stock/{sku}", "/api/v1/stock/{sku}/movements"],
)
def test_a_sku_in_a_path_longer_than_any_sku_is_refused(api, path):
    answer = api.client.get(path.format(sku="A" * 65), headers=api.admin)
    assert refusal(answer)[:2] == (422, "sku.invalid")


def test_an_order_id_longer_than_any_order_id_is_refused(api):
    answer = api.client.get(f"/api/v1/orders/{'a' * 65}", headers=api.admin)
    assert refusal(answer)[:2] == (422, "request.invalid")
