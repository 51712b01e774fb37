from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import Field

from central.api.deps import API_PREFIX, CanManageUsers, UowDep
from central.api.schemas import (
    PasswordReset,
    RequestBody,
    RoleChange,
    StoreIdStr,
    User,
    UserList,
    UserRoleStr,
    errors,
)
from central.services import accounts
from invwire.events import MAX_INTEGER

router = APIRouter(prefix=API_PREFIX + "/users", tags=["users"], responses=errors(401, 403, 503))

UserIdPath = Annotated[int, Path(ge=1, le=MAX_INTEGER, description="the user's id (`GET /users`)")]


class UserIn(RequestBody):
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


@router.post("/{user_id}/disable", response_model=User, responses=errors(404, 409, 422))
def disable_user(user_id: UserIdPath, uow: UowDep, _: CanManageUsers) -> dict[str, Any]:
    """The user can no longer log in and its tokens stop working at once. The last active
    admin cannot be disabled (409 `user.last_admin`)."""
    return accounts.disable_user(uow, user_id)


@router.post("/{user_id}/enable", response_model=User, responses=errors(404, 422))
def enable_user(user_id: UserIdPath, uow: UowDep, _: CanManageUsers) -> dict[str, Any]:
    """The user may log in again; tokens from before it was disabled stay revoked."""
    return accounts.enable_user(uow, user_id)


@router.post("/{user_id}/role", response_model=User, responses=errors(400, 404, 409, 422))
def change_role(
    user_id: UserIdPath, body: RoleChange, uow: UowDep, _: CanManageUsers
) -> dict[str, Any]:
    """A new role (with `store_id` for staff bound to a store); the user's tokens are
    revoked. The last active admin cannot be given another role (409 `user.last_admin`)."""
    return accounts.change_role(uow, user_id, body.role, body.store_id)


@router.post("/{user_id}/password", response_model=User, responses=errors(400, 404, 422))
def reset_password(
    user_id: UserIdPath, body: PasswordReset, uow: UowDep, _: CanManageUsers
) -> dict[str, Any]:
    """Set a user's password (e.g. one it forgot); the user's tokens are revoked."""
    return accounts.reset_password(uow, user_id, body.password)


@router.post("/{user_id}/revoke-tokens", response_model=User, responses=errors(404, 422))
def revoke_tokens(user_id: UserIdPath, uow: UowDep, _: CanManageUsers) -> dict[str, Any]:
    """Every token issued to the user so far stops working; it may log in again."""
    return accounts.revoke_tokens(uow, user_id)
