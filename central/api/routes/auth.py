from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form

from central.api.deps import (
    API_PREFIX,
    Authenticated,
    CanChangeOwnPassword,
    CentralDep,
    LoginAttempts,
)
from central.api.schemas import Me, PasswordChange, Token, errors
from central.app import Central
from central.security import TokenClaims, issue_token
from central.services import accounts

router = APIRouter(prefix=API_PREFIX + "/auth", tags=["auth"])

RETRY_AFTER = {
    "headers": {
        "Retry-After": {
            "description": "seconds until a login is let in again",
            "schema": {"type": "integer"},
        }
    }
}
THROTTLED: dict[int | str, dict[str, Any]] = {429: {**errors(429)[429], **RETRY_AFTER}}


@router.post("/token", response_model=Token, responses={**errors(401, 422, 503), **THROTTLED})
def token(
    central: CentralDep,
    attempts: LoginAttempts,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
) -> dict[str, Any]:
    """OAuth2 password grant: a signed, expiring JWT for a user. After too many failures for
    the username or from the address, 429 `auth.throttled` with `Retry-After`, and the
    password is not even checked until then."""
    claims = accounts.authenticate(central.uow(), username, password, attempts)
    return _token_answer(central, claims)


@router.get("/me", response_model=Me, responses=errors(401, 503))
def me(principal: Authenticated) -> dict[str, Any]:
    return {"subject": principal.subject, "role": principal.role, "store_id": principal.store_id}


@router.post(
    "/password",
    response_model=Token,
    responses={**errors(400, 401, 403, 422, 503), **THROTTLED},
)
def change_password(
    body: PasswordChange,
    central: CentralDep,
    attempts: LoginAttempts,
    principal: CanChangeOwnPassword,
) -> dict[str, Any]:
    """Change your own password. Every token you hold stops working, this one included; the
    answer is a fresh token. A wrong current password is 422 `password.wrong` and counts as
    a failed login."""
    claims = accounts.change_own_password(
        central.uow(), principal, body.current_password, body.new_password, attempts
    )
    return _token_answer(central, claims)


def _token_answer(central: Central, claims: TokenClaims) -> dict[str, Any]:
    return {
        "access_token": issue_token(central.tokens, claims, central.clock.now()),
        "token_type": "bearer",
        "expires_in": central.tokens.ttl_seconds,
    }
