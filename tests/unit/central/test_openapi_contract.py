"""Central's `/openapi.json` describes every answer: a typed 2xx body and each refusal with the
shared error body. Patterns documented in the schema do not change the codes of refusals."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

import central.api.routes
from central.api import create_app
from central.services import accounts

ERROR_REF = "#/components/schemas/ErrorBody"
# Any signed-in caller may read who it is: there is nothing to forbid.
NOTHING_TO_FORBID = {("get", "/api/v1/auth/me")}
# Readiness answers its own body (the failing checks) with 503, not an error body.
OWN_503_BODY = {("get", "/readyz")}


@pytest.fixture
def app(central) -> FastAPI:
    accounts.create_user(central.uow(), accounts.NewUser("root", "root-password-1", "admin"))
    return create_app(central, manage_relay=False)


@pytest.fixture
def client(app):
    with TestClient(app) as client:
        yield client


@pytest.fixture
def spec(client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]


def success(operation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    answers = [(s, r) for s, r in operation["responses"].items() if s.startswith("2")]
    assert len(answers) == 1, answers
    return answers[0]


def test_every_route_is_in_the_spec(spec):
    modules = [
        importlib.import_module(f"central.api.routes.{info.name}")
        for info in pkgutil.iter_modules(central.api.routes.__path__)
    ]
    routes = {
        (method.lower(), route.path)
        for module in modules
        for route in module.router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }
    assert routes == {(method, path) for method, path, _ in operations(spec)}
    assert len(routes) >= 25


def test_every_2xx_answer_declares_its_body(spec):
    for method, path, operation in operations(spec):
        status, answer = success(operation)
        if status == "204":
            assert "content" not in answer, (method, path)
            continue
        (media_type, content), *others = answer["content"].items()
        assert not others, (method, path)
        schema = content["schema"]
        if media_type == "application/json":
            assert schema.get("$ref", "").startswith("#/components/schemas/"), (method, path)
        else:
            assert schema.get("type") == "string", (method, path)


def test_every_declared_refusal_uses_the_shared_error_body(spec):
    for method, path, operation in operations(spec):
        for status, answer in operation["responses"].items():
            if status[0] in "45" and (method, path) not in OWN_503_BODY:
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (method, path, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_authenticated_routes_declare_401_and_403(spec):
    secured = [(m, p, op) for m, p, op in operations(spec) if op.get("security")]
    assert len(secured) >= 20
    for method, path, operation in secured:
        declared = operation["responses"]
        assert {"401", "503"} <= declared.keys(), (method, path)
        if (method, path) not in NOTHING_TO_FORBID:
            assert "403" in declared, (method, path)


def test_routes_taking_input_declare_422_and_json_bodies_400(spec):
    for method, path, operation in operations(spec):
        declared = operation["responses"]
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in declared, (method, path)
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            assert "400" in declared, (method, path)


def test_the_contract_patterns_are_documented_where_values_are_received(spec):
    schemas = spec["components"]["schemas"]
    order_params = {p["name"]: p for p in spec["paths"]["/api/v1/orders"]["post"]["parameters"]}

    assert schemas["ProductIn"]["properties"]["sku"]["pattern"].startswith("^[A-Z0-9]")
    assert schemas["StoreIn"]["properties"]["id"]["pattern"].startswith("^[a-z0-9]")
    assert schemas["UserIn"]["properties"]["role"]["enum"] == ["admin", "ops", "staff"]
    assert schemas["OrderIn"]["properties"]["lines"]["items"]["properties"]["sku"]["pattern"]
    assert order_params["idempotency-key"]["schema"]["anyOf"][0]["pattern"]
    assert schemas["Role"]["enum"] == ["admin", "ops", "staff", "store"]


def admin(client: TestClient) -> dict[str, str]:
    form = {"username": "root", "password": "root-password-1"}
    token = client.post("/api/v1/auth/token", data=form).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_a_bad_sku_keeps_its_own_code_and_message_despite_the_documented_pattern(client):
    headers = admin(client)
    category = client.post("/api/v1/categories", json={"name": "Dairy"}, headers=headers).json()
    product = {"sku": "milk 1l", "name": "Milk", "price": "1.25", "category_id": category["id"]}

    response = client.post("/api/v1/products", json=product, headers=headers)

    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("sku.invalid", {"sku": "milk 1l"})
    assert error["message"].startswith("A SKU is 1-64 characters")


def test_a_bad_role_or_store_id_keeps_its_own_code(client):
    headers = admin(client)
    user = {"username": "sam", "password": "password-1", "role": "boss"}

    bad_role = client.post("/api/v1/users", json=user, headers=headers)
    bad_store = client.post("/api/v1/stores", json={"id": "Store 1", "name": "x"}, headers=headers)

    assert (bad_role.status_code, bad_role.json()["error"]["code"]) == (422, "role.invalid")
    assert (bad_store.status_code, bad_store.json()["error"]["details"]) == (422, {"field": "id"})


def test_typed_answers_keep_the_use_cases_fields_and_formats(client):
    headers = admin(client)
    category = client.post("/api/v1/categories", json={"name": "Dairy"}, headers=headers).json()
    product = {"sku": "MILK-1L", "name": "Milk", "price": 2, "category_id": category["id"]}

    created = client.post("/api/v1/products", json=product, headers=headers).json()
    me = client.get("/api/v1/auth/me", headers=headers).json()

    assert list(created) == [
        "sku", "name", "price", "category_id", "description", "active", "version", "updated_at"
    ]  # fmt: skip
    assert created["price"] == "2.00"
    assert created["updated_at"].endswith("+00:00")
    assert me == {"subject": "root", "role": "admin", "store_id": None}
