from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from central.api.deps import (
    API_PREFIX,
    CanManageStores,
    CanMonitorStores,
    IdentitiesDep,
    UowDep,
)
from central.api.schemas import (
    DeactivatedStore,
    NewStore,
    RequestBody,
    Store,
    StoreIdStr,
    StoreKey,
    StoreList,
    Timestamp,
    errors,
)
from central.services import accounts
from invwire.events import MAX_INTEGER

router = APIRouter(prefix=API_PREFIX + "/stores", tags=["stores"], responses=errors(401, 403, 503))

StoreIdPath = Annotated[StoreIdStr, Path(max_length=64)]
KeyIdPath = Annotated[int, Path(ge=1, le=MAX_INTEGER, description="the key's id")]


class StoreIn(RequestBody):
    id: Annotated[StoreIdStr, Field(max_length=64)]
    name: str = Field(max_length=1000)


class StoreKeyInfo(BaseModel):
    id: int = Field(description="the key's id, as `DELETE /stores/{store_id}/keys/{key_id}` takes")
    prefix: str = Field(description="the key's first characters, shown when it was issued")
    created_at: Timestamp
    revoked_at: Timestamp | None = Field(description="null: the key is active")
    active: bool


class StoreKeyList(BaseModel):
    items: list[StoreKeyInfo]


@router.post("", status_code=201, response_model=NewStore, responses=errors(400, 409, 422, 503))
def create_store(
    body: StoreIn, uow: UowDep, identities: IdentitiesDep, _: CanManageStores
) -> dict[str, Any]:
    """Register a store; the answer carries its API key, shown this once only. Its Kafka user
    is made first: 503 `kafka.unavailable` means nothing was created."""
    return accounts.create_store(uow, body.id, body.name, identities)


@router.get("", response_model=StoreList)
def list_stores(uow: UowDep, _: CanMonitorStores) -> dict[str, Any]:
    return {"items": accounts.list_stores(uow)}


@router.post(
    "/{store_id}/keys",
    status_code=201,
    response_model=StoreKey,
    responses=errors(404, 409, 422, 503),
)
def rotate_key(
    store_id: StoreIdPath, uow: UowDep, identities: IdentitiesDep, _: CanManageStores
) -> dict[str, Any]:
    """A new API key with its own Kafka user; old keys stay valid until revoked.
    503 `kafka.unavailable` means no key was made; 409 `store.inactive`: activate it first."""
    return accounts.rotate_key(uow, store_id, identities)


@router.get("/{store_id}/keys", response_model=StoreKeyList, responses=errors(404, 422))
def list_keys(store_id: StoreIdPath, uow: UowDep, _: CanManageStores) -> dict[str, Any]:
    """The store's API keys, active and revoked, by id: never a key nor its hash, only the
    prefix it was issued with. 404 `store.not_found` for an unknown store."""
    return {"items": accounts.list_keys(uow, store_id)}


@router.delete("/{store_id}/keys/{key_id}", status_code=204, responses=errors(404, 422))
def revoke_key(
    store_id: StoreIdPath,
    key_id: KeyIdPath,
    uow: UowDep,
    identities: IdentitiesDep,
    _: CanManageStores,
) -> Response:
    """Revoke a key at once; its Kafka user is deleted now or, while Kafka is down, later."""
    accounts.revoke_key(uow, store_id, key_id, identities)
    return Response(status_code=204)


@router.post("/{store_id}/deactivate", response_model=DeactivatedStore, responses=errors(404, 422))
def deactivate_store(
    store_id: StoreIdPath, uow: UowDep, identities: IdentitiesDep, principal: CanManageStores
) -> dict[str, Any]:
    """Refuse the store from now on: every API key of it is revoked at once (their Kafka
    users deleted now or, while Kafka is down, later), so its agent's heartbeats and orders
    are refused, and so are its staff's orders. Its allowances are returned at once."""
    return accounts.deactivate_store(uow, store_id, identities, principal)


@router.post("/{store_id}/activate", response_model=Store, responses=errors(404, 422))
def activate_store(store_id: StoreIdPath, uow: UowDep, _: CanManageStores) -> dict[str, Any]:
    """Accept the store again. Its old keys stay revoked: issue a new one
    (`POST /stores/{store_id}/keys`)."""
    return accounts.activate_store(uow, store_id)
