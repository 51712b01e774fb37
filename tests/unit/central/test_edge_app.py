"""Central's app at its edge: the body limit runs before routing and authentication and is
counted like any answer, the API docs can be switched off, /readyz tells an anonymous caller
only a word per check, and the schema bounds every integer and closes every JSON body."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import peewee
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from central.api import create_app
from central.app import Central
from central.services import accounts
from invwire.events import MAX_INTEGER

pytestmark = pytest.mark.unit

SMALL_LIMIT = 2048
IMPORT_LIMIT = 64 * 1024


def client_for(central: Central, **settings: Any) -> TestClient:
    central.settings = replace(central.settings, **settings)
    return TestClient(create_app(central, manage_relay=False), raise_server_exceptions=False)


@pytest.fixture
def limited(central):
    accounts.create_user(central.uow(), accounts.NewUser("root", "root-password-1", "admin"))
    limits = {"max_body_bytes": SMALL_LIMIT, "max_import_bytes": IMPORT_LIMIT}
    with client_for(central, **limits) as client:
        yield client


def admin(client: TestClient) -> dict[str, str]:
    form = {"username": "root", "password": "root-password-1"}
    token = client.post("/api/v1/auth/token", data=form).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def padded_rows(size: int) -> bytes:
    """An import body of about `size` bytes: one category row, padded with spaces."""
    body = b'{"rows": [{"line": 2, "kind": "category", "name": "Tea"}]}'
    return body + b" " * (size - len(body))


def http_requests(client: TestClient, status: str) -> float:
    text = client.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "invctl_http_requests_total" and sample.labels["status"] == status
    )


# --- the body limit --------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_before_authentication(limited):
    answer = limited.post("/api/v1/orders", content=b"x" * (SMALL_LIMIT + 1))
    assert answer.status_code == 413, "not 401: the body is refused before anyone is asked"
    assert answer.json()["error"] == {
        "code": "request.too_large",
        "message": f"the request body is larger than {SMALL_LIMIT} bytes",
        "details": {"limit_bytes": SMALL_LIMIT},
    }


def test_a_streamed_body_over_the_limit_is_refused(limited):
    chunks = (b"x" * 1000 for _ in range(10))
    answer = limited.post("/api/v1/categories", content=chunks, headers=admin(limited))
    assert (answer.status_code, answer.json()["error"]["code"]) == (413, "request.too_large")


def test_a_refusal_is_counted_and_carries_a_request_id(limited):
    before = http_requests(limited, "413")
    answer = limited.post("/api/v1/orders", content=b"x" * (SMALL_LIMIT + 1))
    assert answer.headers["X-Request-ID"]
    assert http_requests(limited, "413") == before + 1


def test_a_body_within_the_limit_reaches_the_route(limited):
    answer = limited.post("/api/v1/categories", json={"name": "Tea"}, headers=admin(limited))
    assert answer.status_code == 201


def test_an_import_has_its_own_larger_limit(limited):
    headers = {**admin(limited), "Content-Type": "application/json"}
    within = limited.post("/api/v1/import", content=padded_rows(IMPORT_LIMIT), headers=headers)
    over = limited.post("/api/v1/import", content=padded_rows(IMPORT_LIMIT + 1), headers=headers)
    assert within.status_code == 200, within.text
    assert refusal_code(over) == (413, "request.too_large")
    assert over.json()["error"]["details"] == {"limit_bytes": IMPORT_LIMIT}


def test_a_staged_imports_rows_have_the_import_limit_too(limited):
    headers = {**admin(limited), "Content-Type": "application/json"}
    batch = limited.post("/api/v1/import/batches", headers=headers).json()["id"]
    rows = f"/api/v1/import/batches/{batch}/rows"
    within = limited.post(rows, content=padded_rows(IMPORT_LIMIT), headers=headers)
    over = limited.post(rows, content=padded_rows(IMPORT_LIMIT + 1), headers=headers)
    assert within.status_code == 200, within.text
    assert over.json()["error"]["details"] == {"limit_bytes": IMPORT_LIMIT}


def test_only_the_import_route_gets_the_import_limit(limited):
    headers = {**admin(limited), "Content-Type": "application/json"}
    body = padded_rows(SMALL_LIMIT + 1)
    for method, path in (
        ("PUT", "/api/v1/import"),
        ("POST", "/api/v1/importx"),
        ("POST", "/api/v1/import/batches"),
        ("POST", "/api/v1/import/batches/b1/commit"),
        ("POST", "/api/v1/import/batches/b1/rows/x"),
    ):
        answer = limited.request(method, path, content=body, headers=headers)
        assert refusal_code(answer) == (413, "request.too_large"), (method, path)


def refusal_code(answer: Any) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


# --- the documentation -----------------------------------------------------------------------

DOCS = ("/docs", "/redoc", "/openapi.json")


def test_the_api_documents_itself_by_default(central):
    with client_for(central) as client:
        assert [client.get(path).status_code for path in DOCS] == [200, 200, 200]


def test_the_documentation_can_be_switched_off(central):
    with client_for(central, api_docs=False) as client:
        assert [client.get(path).status_code for path in DOCS] == [404, 404, 404]
        assert client.get("/healthz").status_code == 200


# --- readiness -------------------------------------------------------------------------------


def test_readiness_says_a_word_per_check(central):
    with client_for(central) as client:
        answer = client.get("/readyz")
    assert (answer.status_code, answer.json()) == (
        200,
        {"status": "ready", "checks": {"database": "ok", "relay": "standby"}},
    )


def test_an_unready_database_is_reported_without_its_error_which_is_logged(
    central, tmp_path, caplog
):
    with client_for(central) as client, caplog.at_level(logging.WARNING, "central.api"):
        central.db = peewee.SqliteDatabase(str(tmp_path))  # a directory: it cannot be opened
        answer = client.get("/readyz")
    assert (answer.status_code, answer.json()) == (
        503,
        {"status": "unavailable", "checks": {"database": "unavailable", "relay": "standby"}},
    )
    logged = [r.event_fields for r in caplog.records if r.msg == "ready.database_failed"]
    assert len(logged) == 1
    assert "OperationalError" in logged[0]["error"]


# --- the schema ------------------------------------------------------------------------------


@pytest.fixture
def spec(central) -> dict[str, Any]:
    with client_for(central) as client:
        return client.get("/openapi.json").json()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]


def json_body(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    name = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    return dict(spec["components"]["schemas"][name])


def integer_schemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every integer schema in `schema`, looking through anyOf (an optional integer)."""
    if schema.get("type") == "integer":
        return [schema]
    return [found for option in schema.get("anyOf", []) for found in integer_schemas(option)]


def test_every_json_body_refuses_unknown_fields(spec):
    bodies = [
        (method, path, body)
        for method, path, operation in operations(spec)
        if (body := json_body(spec, operation)) is not None
    ]
    assert len(bodies) >= 10
    for method, path, body in bodies:
        assert body.get("additionalProperties") is False, (method, path)


def test_every_route_taking_a_body_declares_413(spec):
    for method, path, operation in operations(spec):
        if "requestBody" in operation:
            assert "413" in operation["responses"], (method, path)
        else:
            assert "413" not in operation["responses"], (method, path)


def test_every_integer_received_is_bounded(spec):
    received: list[tuple[str, str, str, dict[str, Any]]] = []
    for method, path, operation in operations(spec):
        for parameter in operation.get("parameters", []):
            for schema in integer_schemas(parameter["schema"]):
                received.append((method, path, parameter["name"], schema))
        body = json_body(spec, operation) or {}
        for name, prop in body.get("properties", {}).items():
            for schema in integer_schemas(prop):
                received.append((method, path, name, schema))
    assert len(received) >= 10
    for method, path, name, schema in received:
        assert "minimum" in schema or "exclusiveMinimum" in schema, (method, path, name)
        assert "maximum" in schema or "exclusiveMaximum" in schema, (method, path, name)
        # FastAPI's OpenAPI model holds a bound inside anyOf as a float, 2**63-1 as 2.0**63
        assert schema.get("maximum", 0) <= float(MAX_INTEGER), (method, path, name)
