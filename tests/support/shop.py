"""A shop seeded at a running central over its HTTP API: a category, products with their
starting stock (each SKU at stock_version 1) and stores with their API keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.processes import ADMIN, ADMIN_PASSWORD

API = "/api/v1"


@dataclass
class Shop:
    central: str
    admin: dict[str, str]  # the admin's Authorization header
    initial: dict[str, int]  # SKU -> starting quantity
    keys: dict[str, str]  # store id -> API key

    @property
    def skus(self) -> list[str]:
        return sorted(self.initial)

    def store_headers(self, store: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[store]}


def seed_shop(central: str, initial: Mapping[str, int], stores: Sequence[str]) -> Shop:
    """`initial` maps each SKU (also the product's name) to its starting stock."""
    with httpx.Client(base_url=central + API, timeout=15) as http:
        login = {"username": ADMIN, "password": ADMIN_PASSWORD}
        token = _ok(http.post("/auth/token", data=login))["access_token"]
        admin = {"Authorization": f"Bearer {token}"}
        category = _ok(http.post("/categories", json={"name": "Daily"}, headers=admin))
        for sku, quantity in initial.items():
            product = {"sku": sku, "name": sku, "price": "1.00", "category_id": category["id"]}
            _ok(http.post("/products", json=product, headers=admin))
            _ok(http.put(f"/stock/{sku}", json={"quantity": quantity}, headers=admin))
        keys = {
            store: _ok(http.post("/stores", json={"id": store, "name": store}, headers=admin))[
                "api_key"
            ]
            for store in stores
        }
    return Shop(central, admin, dict(initial), keys)


def _ok(response: httpx.Response) -> Any:
    assert response.is_success, f"{response.request.url}: {response.status_code} {response.text}"
    return response.json()
