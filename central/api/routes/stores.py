from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from central.api.deps import API_PREFIX, Admin, Ops, UowDep
from central.services import accounts

router = APIRouter(prefix=API_PREFIX + "/stores", tags=["stores"])


class StoreIn(BaseModel):
    id: str = Field(max_length=64)
    name: str = Field(max_length=1000)


@router.post("", status_code=201)
def create_store(body: StoreIn, uow: UowDep, _: Admin) -> dict[str, Any]:
    """Register a store; the answer carries its API key, shown this once only."""
    return accounts.create_store(uow, body.id, body.name)


@router.get("")
def list_stores(uow: UowDep, _: Ops) -> dict[str, Any]:
    return {"items": accounts.list_stores(uow)}


@router.post("/{store_id}/keys", status_code=201)
def rotate_key(store_id: str, uow: UowDep, _: Admin) -> dict[str, Any]:
    """A new API key; old keys stay valid until revoked."""
    return accounts.rotate_key(uow, store_id)


@router.delete("/{store_id}/keys/{key_id}", status_code=204)
def revoke_key(store_id: str, key_id: int, uow: UowDep, _: Admin) -> Response:
    accounts.revoke_key(uow, store_id, key_id)
    return Response(status_code=204)
