"""Request dependencies: the Central container and the caller's Principal, checked by role."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from central.app import Central
from central.errors import AuthRequired, Forbidden
from central.security import read_token
from central.services import accounts
from central.services.principal import Principal
from central.uow import UnitOfWork

API_PREFIX = "/api/v1"

bearer = HTTPBearer(auto_error=False, description="JWT from POST /api/v1/auth/token")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="store API key")


def get_central(request: Request) -> Central:
    central: Central = request.app.state.central
    return central


CentralDep = Annotated[Central, Depends(get_central)]


def get_uow(central: CentralDep) -> UnitOfWork:
    return central.uow()


UowDep = Annotated[UnitOfWork, Depends(get_uow)]


def get_principal(
    central: CentralDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    api_key: Annotated[str | None, Depends(api_key_header)],
) -> Principal:
    if api_key:
        return accounts.store_principal(central.uow(), api_key)
    if credentials is not None and credentials.credentials:
        claims = read_token(central.tokens, credentials.credentials)
        return accounts.user_principal(central.uow(), claims.subject)
    raise AuthRequired()


def allow(*roles: str) -> Callable[..., Principal]:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in roles:
            raise Forbidden(role=principal.role, allowed=list(roles))
        return principal

    return check


ADMIN = ("admin",)
READERS = ("admin", "ops", "staff", "store")
OPS = ("admin", "ops")

Admin = Annotated[Principal, Depends(allow(*ADMIN))]
Reader = Annotated[Principal, Depends(allow(*READERS))]
Ops = Annotated[Principal, Depends(allow(*OPS))]
AnyUser = Annotated[Principal, Depends(get_principal)]
