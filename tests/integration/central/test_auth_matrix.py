"""Every role against every route: allowed or refused as designed; bad tokens refused."""

from datetime import timedelta

import jwt
import pytest

from central.models import ApiKey, User, utcnow
from central.security import TokenClaims, TokenConfig, issue_token
from tests.support.central_harness import SECRET, running_central

PASSWORDS = {"ops": "ops-password-1", "staff": "staff-password-1"}

# (method, path, body, roles allowed). "store" is a store's API key.
RECOVERED_SALE = {
    "id": "0b6f3c4e-5d7a-4c8e-9f10-2a3b4c5d6e7f",
    "idempotency_key": "recovered-1",
    "created_at": "2026-11-29T10:00:00+00:00",
    "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": "1.00"}],
}
ROUTES = [
    ("GET", "/api/v1/auth/me", None, {"admin", "ops", "staff", "store"}),
    (
        "POST",
        "/api/v1/users",
        {"username": "u{n}", "password": "password-{n}", "role": "ops"},
        {"admin"},
    ),
    ("GET", "/api/v1/users", None, {"admin"}),
    # No such user or store: an admin gets 404, proving it got past the role check without
    # changing the world the other roles are tested in.
    ("POST", "/api/v1/users/999999/disable", None, {"admin"}),
    ("POST", "/api/v1/users/999999/enable", None, {"admin"}),
    ("POST", "/api/v1/users/999999/role", {"role": "ops"}, {"admin"}),
    ("POST", "/api/v1/users/999999/password", {"password": "password-{n}"}, {"admin"}),
    ("POST", "/api/v1/users/999999/revoke-tokens", None, {"admin"}),
    (
        "POST",
        "/api/v1/auth/password",
        {"current_password": "not-it-{n}", "new_password": "new-password-{n}"},
        {"admin", "ops", "staff"},
    ),
    ("POST", "/api/v1/stores", {"id": "s{n}", "name": "Store {n}"}, {"admin"}),
    ("GET", "/api/v1/stores", None, {"admin", "ops"}),
    ("POST", "/api/v1/stores/store-1/keys", None, {"admin"}),
    ("DELETE", "/api/v1/stores/store-1/keys/999", None, {"admin"}),
    ("POST", "/api/v1/stores/no-such-store/deactivate", None, {"admin"}),
    ("POST", "/api/v1/stores/no-such-store/activate", None, {"admin"}),
    ("POST", "/api/v1/categories", {"name": "Cat {n}"}, {"admin"}),
    ("GET", "/api/v1/categories", None, {"admin", "ops", "staff", "store"}),
    (
        "POST",
        "/api/v1/products",
        {"sku": "P{n}", "name": "P", "price": "1.00", "category_id": 1},
        {"admin"},
    ),
    ("GET", "/api/v1/products", None, {"admin", "ops", "staff", "store"}),
    ("GET", "/api/v1/products/SKU-1", None, {"admin", "ops", "staff", "store"}),
    ("PATCH", "/api/v1/products/SKU-1", {"name": "Renamed"}, {"admin"}),
    ("GET", "/api/v1/stock/SKU-1", None, {"admin", "ops", "staff", "store"}),
    ("PUT", "/api/v1/stock/SKU-1", {"quantity": 5}, {"admin"}),
    ("POST", "/api/v1/stock/SKU-1/adjustments", {"delta": 1}, {"admin"}),
    ("GET", "/api/v1/stock/SKU-1/movements", None, {"admin", "ops"}),
    ("POST", "/api/v1/import", {"rows": [{"kind": "category", "name": "Imported"}]}, {"admin"}),
    ("POST", "/api/v1/import/batches", None, {"admin"}),
    ("POST", "/api/v1/import/batches/no-such-batch/rows", {"rows": []}, {"admin"}),
    ("POST", "/api/v1/import/batches/no-such-batch/commit", None, {"admin"}),
    ("DELETE", "/api/v1/import/batches/no-such-batch", None, {"admin"}),
    ("PATCH", "/api/v1/categories/999999", {"name": "Renamed {n}"}, {"admin"}),
    ("POST", "/api/v1/orders", {"lines": [{"sku": "SKU-1", "quantity": 1}]}, {"staff", "store"}),
    ("GET", "/api/v1/orders", None, {"admin", "ops", "staff", "store"}),
    ("GET", "/api/v1/orders/no-such-order", None, {"admin", "ops", "staff", "store"}),
    ("POST", "/api/v1/orders/no-such-order/cancel", None, {"admin", "staff", "store"}),
    ("POST", "/api/v1/stores/heartbeat", {"ready": True, "lag": 0}, {"store"}),
    # a store sends back its sales after a restore (this central was not: 409 for it)
    ("POST", "/api/v1/orders/recover", {"orders": [RECOVERED_SALE]}, {"store"}),
    ("GET", "/api/v1/sync/stores", None, {"admin", "ops"}),
    # a store's key and its staff see their own store's (reports, movements)
    ("GET", "/api/v1/reports/sales", None, {"admin", "ops", "staff", "store"}),
    ("GET", "/api/v1/movements", None, {"admin", "ops", "staff", "store"}),
    ("GET", "/api/v1/exports/products", None, {"admin", "ops", "staff", "store"}),
    # after the orders: the unit an admin sets aside for store-1 changes no later route
    (
        "POST",
        "/api/v1/allowances",
        {"store": "store-1", "sku": "SKU-1", "units": 1, "ttl_s": 600},
        {"admin"},
    ),
    ("GET", "/api/v1/allowances", None, {"admin"}),
    ("GET", "/api/v1/allowances/mine", None, {"store"}),
    ("POST", "/api/v1/allowances/no-such-allowance/return", None, {"admin"}),
    # last: a rule tops store-1 up when it next reads its allowances
    (
        "PUT",
        "/api/v1/allowance-rules/sku/SKU-1",
        {"units": 1, "threshold": 1, "ttl_s": 600},
        {"admin"},
    ),
    (
        "PUT",
        "/api/v1/allowance-rules/category/999999",
        {"units": 1, "threshold": 1, "ttl_s": 600},
        {"admin"},
    ),
    ("GET", "/api/v1/allowance-rules", None, {"admin"}),
    ("DELETE", "/api/v1/allowance-rules/sku/NO-SUCH", None, {"admin"}),
    ("DELETE", "/api/v1/allowance-rules/category/999999", None, {"admin"}),
]
ROLES = ["admin", "ops", "staff", "store"]


def fill(body, n):
    if body is None:
        return None
    return {k: v.format(n=n) if isinstance(v, str) else v for k, v in body.items()}


@pytest.fixture
def world(database_url):
    with running_central(database_url) as h:
        admin = h.admin()
        store = h.call("POST", "/api/v1/stores", admin, json={"id": "store-1", "name": "One"})
        for role, password in PASSWORDS.items():
            h.call(
                "POST",
                "/api/v1/users",
                admin,
                json={
                    "username": role,
                    "password": password,
                    "role": role,
                    "store_id": "store-1" if role == "staff" else None,
                },
            )
        cat = h.call("POST", "/api/v1/categories", admin, json={"name": "Base"})
        h.call(
            "POST",
            "/api/v1/products",
            admin,
            json={"sku": "SKU-1", "name": "One", "price": "1", "category_id": cat["id"]},
        )
        headers = {
            "admin": admin,
            "ops": h.as_user("ops", PASSWORDS["ops"]),
            "staff": h.as_user("staff", PASSWORDS["staff"]),
            "store": {"X-API-Key": store["api_key"]},
        }
        yield h, headers, store["api_key"]


def test_every_role_against_every_route(world):
    h, headers, _ = world
    n = 0
    for method, path, body, allowed in ROUTES:
        for role in ROLES:
            n += 1
            request_headers = {**headers[role], "Idempotency-Key": f"key-{n}"}
            response = h.client.request(method, path, headers=request_headers, json=fill(body, n))
            if role in allowed:
                assert response.status_code not in (401, 403), (method, path, role, response.text)
            else:
                assert response.status_code == 403, (method, path, role, response.text)
                assert response.json()["error"]["code"] == "auth.forbidden"
        anonymous = h.client.request(method, path, json=fill(body, n))
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.json()["error"]["code"] == "auth.required"


def _token(h, **changes):
    config = TokenConfig(**{**h.central.tokens.__dict__, **changes.pop("config", {})})
    now = changes.pop("now", utcnow())
    return issue_token(config, TokenClaims("admin", "admin", None), now)


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "tampered",
        "wrong_audience",
        "wrong_issuer",
        "wrong_secret",
        "garbage",
        "without_user_id",
        "revoked_key",
        "unknown_key",
    ],
)
def test_bad_credentials_are_refused_with_401(world, case):
    h, _, api_key = world
    if case in ("revoked_key", "unknown_key"):
        if case == "revoked_key":
            with h.central.db.connection_context():
                key_id = ApiKey.get().id
            h.call("DELETE", f"/api/v1/stores/store-1/keys/{key_id}", h.admin())
        headers = {"X-API-Key": api_key if case == "revoked_key" else "ik_" + "x" * 43}
    else:
        token = {
            "expired": lambda: _token(h, now=utcnow() - timedelta(hours=2)),
            "tampered": lambda: _tampered(_token(h)),
            "wrong_audience": lambda: _token(h, config={"audience": "other"}),
            "wrong_issuer": lambda: _token(h, config={"issuer": "other"}),
            "wrong_secret": lambda: _token(h, config={"secret": "another-secret-" + "y" * 32}),
            "garbage": lambda: "not.a.jwt",
            # well signed, but without the user id and token version every token now carries
            "without_user_id": lambda: _token(h),
        }[case]()
        headers = {"Authorization": f"Bearer {token}"}
    response = h.client.get("/api/v1/categories", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "auth.invalid"


def _tampered(token):
    claims = jwt.decode(token, options={"verify_signature": False})
    header, _, signature = token.split(".")
    forged = jwt.encode({**claims, "role": "admin", "sub": "ops"}, "x" * 40, algorithm="HS256")
    return ".".join([header, forged.split(".")[1], signature])


def test_wrong_password_and_unknown_user_get_the_same_answer(world):
    h, _, _ = world
    a = h.client.post("/api/v1/auth/token", data={"username": "admin", "password": "nope-nope"})
    b = h.client.post("/api/v1/auth/token", data={"username": "ghost", "password": "nope-nope"})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()


def test_no_password_or_api_key_is_stored_or_logged_in_clear(world, caplog):
    h, _, api_key = world
    with h.central.db.connection_context():
        dump = " ".join(
            " ".join(str(v) for v in row)
            for model in (User, ApiKey)
            for row in model.select().tuples()
        )
        outbox = " ".join(r[0] for r in h.central.db.execute_sql("SELECT payload FROM outbox"))
    for secret in [*PASSWORDS.values(), "admin-password-1", api_key, SECRET]:
        assert secret not in dump and secret not in outbox
        assert secret not in caplog.text
