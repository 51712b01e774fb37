"""Request dependencies: the Central container, the caller's Principal, and one permission
per kind of action, named for what it allows (the roles it admits are listed once, here)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from central.app import Central
from central.security import hash_api_key, read_token
from central.services import accounts
from central.services.identities import KafkaIdentities
from central.services.principal import USER_ROLES, Principal, Role
from central.services.throttle import Attempts, LoginThrottle, ThrottlePolicy
from central.uow import UnitOfWork
from invwire.errors.central import AuthRequired, Forbidden

API_PREFIX = "/api/v1"

bearer = HTTPBearer(auto_error=False, description="JWT from POST /api/v1/auth/token")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="store API key")


# The dependencies that only read what is already in memory are `async def`: FastAPI runs a
# plain `def` dependency in its thread pool, and each such hop (a queue, a thread woken, the
# event loop woken again) cost more than the function itself. Whatever may wait on the
# database (get_principal) stays `def`, off the event loop.
async def get_central(request: Request) -> Central:
    central: Central = request.app.state.central
    return central


CentralDep = Annotated[Central, Depends(get_central)]


async def get_uow(central: CentralDep) -> UnitOfWork:
    return central.uow()


UowDep = Annotated[UnitOfWork, Depends(get_uow)]


async def get_identities(central: CentralDep) -> KafkaIdentities | None:
    """Where stores' Kafka users are made; None while provisioning is disabled."""
    return central.identities


IdentitiesDep = Annotated[KafkaIdentities | None, Depends(get_identities)]


async def get_throttle(central: CentralDep) -> LoginThrottle:
    return LoginThrottle(ThrottlePolicy.from_settings(central.settings))


ThrottleDep = Annotated[LoginThrottle, Depends(get_throttle)]


async def get_allowance_margin(central: CentralDep) -> int:
    """Seconds of clock skew between central and a store that allowances allow for."""
    return central.settings.allowance_margin_s


AllowanceMarginDep = Annotated[int, Depends(get_allowance_margin)]


async def client_address(request: Request) -> str | None:
    """The caller's address, for login throttling: behind a reverse proxy, the proxy's
    unless uvicorn trusts its X-Forwarded-For (FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client is not None else None


ClientAddress = Annotated[str | None, Depends(client_address)]


async def login_attempts(throttle: ThrottleDep, address: ClientAddress) -> Attempts:
    return Attempts(throttle, address)


LoginAttempts = Annotated[Attempts, Depends(login_attempts)]


@dataclass(frozen=True)
class Credentials:
    """What the caller presented, not yet checked: a store's API key or a user's JWT."""

    api_key: str | None = None
    token: str | None = None


async def get_credentials(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    api_key: Annotated[str | None, Depends(api_key_header)],
) -> Credentials:
    """The caller's key or token (a key wins when both are sent); none is 401 at once."""
    if api_key:
        return Credentials(api_key=api_key)
    if credentials is not None and credentials.credentials:
        return Credentials(token=credentials.credentials)
    raise AuthRequired()


CredentialsDep = Annotated[Credentials, Depends(get_credentials)]


def principal_of(central: Central, credentials: Credentials) -> Principal:
    """Who the credentials name, checked against the database on every request (a revoked
    key or token is refused on the next one): AuthInvalid if no one."""
    if credentials.api_key is not None:
        return accounts.store_principal(central.uow(), credentials.api_key)
    assert credentials.token is not None  # get_credentials returns one or the other
    claims = read_token(central.tokens, credentials.token)
    return accounts.user_principal(central.uow(), claims)


def order_principal(central: Central, credentials: Credentials) -> tuple[Principal, str | None]:
    """principal_of for placing an order, and the hash of a store key taken unchecked: one
    this process has seen valid is not looked up again (services.known_keys); the order's
    transaction checks it (services.orders.place_order's `unchecked_key`)."""
    if credentials.api_key is None:
        return principal_of(central, credentials), None
    key_hash = hash_api_key(credentials.api_key)
    store_id = central.known_keys.store_of(key_hash)
    if store_id is not None:
        return Principal(store_id, Role.STORE, store_id), key_hash
    principal = principal_of(central, credentials)
    if principal.store_id is not None:
        central.known_keys.add(key_hash, principal.store_id)
    return principal, None


def get_principal(central: CentralDep, credentials: CredentialsDep) -> Principal:
    return principal_of(central, credentials)


def allow(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    allowed = [role.value for role in roles]

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in roles:
            raise Forbidden(role=principal.role, allowed=allowed)
        return principal

    return check


ANYONE = tuple(Role)
BACK_OFFICE = (Role.ADMIN, Role.OPS)

Authenticated = Annotated[Principal, Depends(get_principal)]

CanManageUsers = Annotated[Principal, Depends(allow(Role.ADMIN))]
CanChangeOwnPassword = Annotated[Principal, Depends(allow(*USER_ROLES))]
CanManageStores = Annotated[Principal, Depends(allow(Role.ADMIN))]
CanMonitorStores = Annotated[Principal, Depends(allow(*BACK_OFFICE))]

CanReadCatalog = Annotated[Principal, Depends(allow(*ANYONE))]
CanManageCatalog = Annotated[Principal, Depends(allow(Role.ADMIN))]
CanImportCatalog = Annotated[Principal, Depends(allow(Role.ADMIN))]

CanReadStock = Annotated[Principal, Depends(allow(*ANYONE))]
CanChangeStock = Annotated[Principal, Depends(allow(Role.ADMIN))]
CanReadStockLedger = Annotated[Principal, Depends(allow(*BACK_OFFICE))]

# Every role gets past these; the use case narrows it and refuses (403) with its own reason:
# stores and staff see only their store's orders; ops may not cancel; only a store's API key
# sends heartbeats. (Placing an order checks its caller in the route, with CredentialsDep and
# principal_of; the use case admits a store, or staff bound to a store.)
CanReadOrders = Annotated[Principal, Depends(allow(*ANYONE))]
CanCancelOrders = Annotated[Principal, Depends(allow(*ANYONE))]
CanSendHeartbeat = Annotated[Principal, Depends(allow(*ANYONE))]
# A store's agent sends back the sales a restore lost; anyone else is refused (403) before
# the body is checked.
CanRecoverOrders = Annotated[Principal, Depends(allow(Role.STORE))]
# Admins grant, list and return allowances; a store's key reads its own live ones.
CanManageAllowances = Annotated[Principal, Depends(allow(Role.ADMIN))]
CanReadOwnAllowances = Annotated[Principal, Depends(allow(Role.STORE))]
