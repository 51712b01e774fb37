from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from central.api.deps import API_PREFIX, CanManageUsers, UowDep
from central.api.schemas import User, UserList, errors, pattern_doc
from central.services import accounts
from central.services.principal import USER_ROLES
from invwire.rules import STORE_ID_REGEX

router = APIRouter(prefix=API_PREFIX + "/users", tags=["users"], responses=errors(401, 403, 503))


class UserIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    # Documented, not validated here: a bad role keeps its own code, 422 role.invalid.
    role: str = Field(max_length=16, json_schema_extra={"enum": [r.value for r in USER_ROLES]})
    store_id: str | None = Field(
        default=None, max_length=64, json_schema_extra=pattern_doc(STORE_ID_REGEX)
    )


@router.post("", status_code=201, response_model=User, responses=errors(400, 404, 409, 422))
def create_user(body: UserIn, uow: UowDep, _: CanManageUsers) -> dict[str, Any]:
    return accounts.create_user(uow, accounts.NewUser(**body.model_dump()))


@router.get("", response_model=UserList)
def list_users(uow: UowDep, _: CanManageUsers) -> dict[str, Any]:
    return {"items": accounts.list_users(uow)}
