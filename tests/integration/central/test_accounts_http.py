"""The lives of users and stores through the HTTP API, on SQLite and on MariaDB: disable,
enable, re-role, reset, revoke, change one's own password, deactivate and activate a store;
login throttling, also under a burst of parallel guesses; ids beyond 64 bits refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from central.models import ApiKey, User
from tests.support.accounts import PASSWORD, unique
from tests.support.central_harness import Harness, running_central, served

API = "/api/v1"


@pytest.fixture
def h(database_url):
    with running_central(database_url) as harness:
        yield harness


def add_user(h: Harness, role: str = "ops", **fields) -> dict:
    body = {"username": unique(role), "password": PASSWORD, "role": role, **fields}
    return h.call("POST", f"{API}/users", h.admin(), json=body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def me(h: Harness, headers: dict[str, str]) -> httpx.Response:
    return h.client.get(f"{API}/auth/me", headers=headers)


def refusal(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_a_disabled_user_is_refused_at_once_and_an_enabled_one_logs_in_again(h):
    user = add_user(h)
    token = bearer(h.token(user["username"], PASSWORD))
    assert me(h, token).status_code == 200

    disabled = h.call("POST", f"{API}/users/{user['id']}/disable", h.admin())

    assert disabled["active"] is False
    assert refusal(me(h, token)) == (401, "auth.invalid")
    login = h.client.post(
        f"{API}/auth/token", data={"username": user["username"], "password": PASSWORD}
    )
    assert refusal(login) == (401, "auth.invalid")
    h.call("POST", f"{API}/users/{user['id']}/enable", h.admin())
    assert refusal(me(h, token)) == (401, "auth.invalid")
    assert me(h, h.as_user(user["username"], PASSWORD)).status_code == 200


def test_a_new_role_takes_effect_with_the_next_login_and_the_old_token_is_revoked(h):
    h.call("POST", f"{API}/stores", h.admin(), json={"id": "store-1", "name": "One"})
    user = add_user(h)
    token = bearer(h.token(user["username"], PASSWORD))

    body = {"role": "staff", "store_id": "store-1"}
    changed = h.call("POST", f"{API}/users/{user['id']}/role", h.admin(), json=body)

    assert (changed["role"], changed["store_id"]) == ("staff", "store-1")
    assert refusal(me(h, token)) == (401, "auth.invalid")
    assert me(h, h.as_user(user["username"], PASSWORD)).json() == {
        "subject": user["username"],
        "role": "staff",
        "store_id": "store-1",
    }


def test_bad_role_changes_keep_their_own_codes(h):
    user = add_user(h)
    admin = h.admin()
    path = f"{API}/users/{user['id']}/role"

    bad_role = h.client.post(path, headers=admin, json={"role": "root"})
    bound_ops = h.client.post(path, headers=admin, json={"role": "ops", "store_id": "store-1"})
    no_store = h.client.post(path, headers=admin, json={"role": "staff", "store_id": "nope"})
    unknown_field = h.client.post(path, headers=admin, json={"role": "ops", "admin": True})

    assert refusal(bad_role) == (422, "role.invalid")
    assert refusal(bound_ops) == (422, "request.invalid")
    assert refusal(no_store) == (404, "store.not_found")
    assert refusal(unknown_field) == (422, "request.invalid")


def test_the_last_active_admin_cannot_be_disabled_or_demoted(h):
    admin = h.admin()
    (me_,) = [u for u in h.call("GET", f"{API}/users", admin)["items"] if u["role"] == "admin"]

    disable = h.client.post(f"{API}/users/{me_['id']}/disable", headers=admin)
    demote = h.client.post(f"{API}/users/{me_['id']}/role", headers=admin, json={"role": "ops"})

    assert refusal(disable) == refusal(demote) == (409, "user.last_admin")
    assert me(h, admin).status_code == 200
    other = add_user(h, "admin")
    assert h.call("POST", f"{API}/users/{other['id']}/disable", admin)["active"] is False


def test_a_reset_password_and_a_token_revocation_end_the_users_tokens(h):
    user = add_user(h)
    first = bearer(h.token(user["username"], PASSWORD))

    h.call("POST", f"{API}/users/{user['id']}/password", h.admin(), json={"password": "pw-2-long"})
    assert refusal(me(h, first)) == (401, "auth.invalid")
    second = bearer(h.token(user["username"], "pw-2-long"))
    h.call("POST", f"{API}/users/{user['id']}/revoke-tokens", h.admin())

    assert refusal(me(h, second)) == (401, "auth.invalid")
    assert me(h, h.as_user(user["username"], "pw-2-long")).status_code == 200


def test_a_short_reset_password_is_refused(h):
    user = add_user(h)
    response = h.client.post(
        f"{API}/users/{user['id']}/password", headers=h.admin(), json={"password": "short"}
    )
    assert refusal(response) == (422, "password.weak")


def test_changing_ones_own_password_answers_a_fresh_token_and_revokes_the_old(h):
    user = add_user(h, "staff")
    old = bearer(h.token(user["username"], PASSWORD))

    wrong = h.client.post(
        f"{API}/auth/password",
        headers=old,
        json={"current_password": "not-it", "new_password": "brand-new-pw"},
    )
    answer = h.call(
        "POST",
        f"{API}/auth/password",
        old,
        json={"current_password": PASSWORD, "new_password": "brand-new-pw"},
    )

    assert refusal(wrong) == (422, "password.wrong")
    assert answer["token_type"] == "bearer"
    assert refusal(me(h, old)) == (401, "auth.invalid")
    assert me(h, bearer(answer["access_token"])).status_code == 200
    assert me(h, h.as_user(user["username"], "brand-new-pw")).status_code == 200


def test_a_re_created_username_does_not_inherit_the_old_users_tokens(h):
    user = add_user(h, "staff", username="sam")
    token = bearer(h.token("sam", PASSWORD))
    with h.central.db.connection_context():
        User.delete().where(User.id == user["id"]).execute()

    add_user(h, "admin", username="sam")

    assert refusal(me(h, token)) == (401, "auth.invalid")
    assert me(h, h.as_user("sam", PASSWORD)).json()["role"] == "admin"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/stores/store-1/keys/99999999999999999999999"),
        ("DELETE", "/stores/store-1/keys/9223372036854775808"),
        ("DELETE", "/stores/store-1/keys/0"),
        ("POST", "/users/99999999999999999999999/disable"),
        ("POST", "/users/-1/revoke-tokens"),
    ],
)
def test_ids_outside_a_signed_64_bit_integer_are_refused_with_422(h, method, path):
    response = h.client.request(method, API + path, headers=h.admin())
    assert refusal(response) == (422, "request.invalid")


def test_the_largest_64_bit_id_is_simply_not_found(h):
    h.call("POST", f"{API}/stores", h.admin(), json={"id": "store-1", "name": "One"})
    key = h.client.delete(f"{API}/stores/store-1/keys/9223372036854775807", headers=h.admin())
    user = h.client.post(f"{API}/users/9223372036854775807/enable", headers=h.admin())
    assert refusal(key) == (404, "not_found")
    assert refusal(user) == (404, "user.not_found")


def test_a_deactivated_store_is_refused_everywhere_until_activated_with_a_new_key(h):
    admin = h.admin()
    store = h.call("POST", f"{API}/stores", admin, json={"id": "store-1", "name": "One"})
    second = h.call("POST", f"{API}/stores/store-1/keys", admin)
    staff = add_user(h, "staff", store_id="store-1")
    staff_token = h.as_user(staff["username"], PASSWORD)
    old_keys = [{"X-API-Key": k["api_key"]} for k in (store, second)]

    answer = h.call("POST", f"{API}/stores/store-1/deactivate", admin)

    assert (answer["active"], answer["active_keys"], answer["revoked_keys"]) == (False, 0, 2)
    with h.central.db.connection_context():
        assert ApiKey.select().where(ApiKey.revoked_at.is_null()).count() == 0
    for key in old_keys:
        beat = h.client.post(f"{API}/stores/heartbeat", headers=key, json={"ready": True})
        assert refusal(beat) == (401, "auth.invalid")
    order = {"lines": [{"sku": "SKU-1", "quantity": 1}]}
    sold = h.client.post(
        f"{API}/orders", headers={**staff_token, "Idempotency-Key": "k-1"}, json=order
    )
    assert refusal(sold) == (403, "auth.store_inactive")
    assert refusal(h.client.post(f"{API}/stores/store-1/keys", headers=admin)) == (
        409,
        "store.inactive",
    )

    activated = h.call("POST", f"{API}/stores/store-1/activate", admin)
    fresh = h.call("POST", f"{API}/stores/store-1/keys", admin)

    assert (activated["active"], activated["active_keys"]) == (True, 0)
    beat = h.client.post(
        f"{API}/stores/heartbeat", headers={"X-API-Key": fresh["api_key"]}, json={"ready": True}
    )
    assert beat.is_success, beat.text
    assert refusal(me(h, old_keys[0])) == (401, "auth.invalid")
    assert me(h, staff_token).status_code == 200


def test_unknown_stores_are_not_found(h):
    for action in ("deactivate", "activate"):
        response = h.client.post(f"{API}/stores/no-such/{action}", headers=h.admin())
        assert refusal(response) == (404, "store.not_found")


def test_after_five_wrong_passwords_the_login_is_throttled_with_retry_after(h):
    user = add_user(h)
    form = {"username": user["username"], "password": "wrong-password"}
    answers = [h.client.post(f"{API}/auth/token", data=form) for _ in range(7)]
    right = h.client.post(
        f"{API}/auth/token", data={"username": user["username"], "password": PASSWORD}
    )

    assert [a.status_code for a in answers] == [401] * 5 + [429] * 2
    for throttled in [*answers[5:], right]:
        assert refusal(throttled) == (429, "auth.throttled")
        seconds = throttled.json()["error"]["details"]["retry_after"]
        assert throttled.headers["Retry-After"] == str(seconds)
        assert 1 <= seconds <= 60


def concurrently(url: str, forms: list[dict[str, str]]) -> list[int]:
    def post(form: dict[str, str]) -> int:
        return httpx.post(f"{url}{API}/auth/token", data=form, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=len(forms)) as pool:
        return list(pool.map(post, forms))


def test_a_burst_of_parallel_guesses_gets_exactly_the_limit_through(h):
    user = add_user(h)
    guesses = [{"username": user["username"], "password": f"guess-{n}"} for n in range(12)]

    with served(h) as url:
        statuses = concurrently(url, guesses)

    assert sorted(statuses) == [401] * 5 + [429] * 7


def test_parallel_guesses_at_many_usernames_from_one_address_stop_at_its_limit(h):
    guesses = [{"username": unique("guess"), "password": "x"} for _ in range(26)]

    with served(h) as url:
        statuses = concurrently(url, guesses)

    assert sorted(statuses) == [401] * 20 + [429] * 6


def test_limits_come_from_the_settings(database_url):
    with running_central(database_url, login_user_limit=2, login_lock_seconds=7) as h:
        user = add_user(h)
        form = {"username": user["username"], "password": "wrong-password"}
        answers = [h.client.post(f"{API}/auth/token", data=form) for _ in range(3)]

    assert [a.status_code for a in answers] == [401, 401, 429]
    assert answers[-1].headers["Retry-After"] == "7"
