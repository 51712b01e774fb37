from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from central.api.deps import API_PREFIX, Admin, UowDep
from central.services import accounts

router = APIRouter(prefix=API_PREFIX + "/users", tags=["users"])


class UserIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    role: str = Field(max_length=16)
    store_id: str | None = Field(default=None, max_length=64)


@router.post("", status_code=201)
def create_user(body: UserIn, uow: UowDep, _: Admin) -> dict[str, Any]:
    return accounts.create_user(uow, accounts.NewUser(**body.model_dump()))


@router.get("")
def list_users(uow: UowDep, _: Admin) -> dict[str, Any]:
    return {"items": accounts.list_users(uow)}
