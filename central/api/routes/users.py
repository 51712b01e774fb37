from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from central.api.deps import API_PREFIX, CanManageUsers, UowDep
from central.api.schemas import StoreIdStr, User, UserList, UserRoleStr, errors
from central.services import accounts

router = APIRouter(prefix=API_PREFIX + "/users", tags=["users"], responses=errors(401, 403, 503))


class UserIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    # Documented, not validated here: a bad role keeps its own code, 422 role.invalid.
    role: Annotated[UserRoleStr, Field(max_length=16)]
    store_id: Annotated[StoreIdStr | None, Field(max_length=64)] = None


@router.post("", status_code=201, response_model=User, responses=errors(400, 404, 409, 422))
def create_user(body: UserIn, uow: UowDep, _: CanManageUsers) -> dict[str, Any]:
    return accounts.create_user(uow, accounts.NewUser(**body.model_dump()))


@router.get("", response_model=UserList)
def list_users(uow: UowDep, _: CanManageUsers) -> dict[str, Any]:
    return {"items": accounts.list_users(uow)}
