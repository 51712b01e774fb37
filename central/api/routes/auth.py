from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form

from central.api.deps import API_PREFIX, Authenticated, CentralDep
from central.api.schemas import Me, Token, errors
from central.security import TokenClaims, issue_token
from central.services import accounts

router = APIRouter(prefix=API_PREFIX + "/auth", tags=["auth"])


@router.post("/token", response_model=Token, responses=errors(401, 422, 503))
def token(
    central: CentralDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
) -> dict[str, Any]:
    """OAuth2 password grant: a signed, expiring JWT for a user."""
    principal = accounts.authenticate(central.uow(), username, password)
    claims = TokenClaims(principal.subject, principal.role, principal.store_id)
    return {
        "access_token": issue_token(central.tokens, claims, central.clock.now()),
        "token_type": "bearer",
        "expires_in": central.tokens.ttl_seconds,
    }


@router.get("/me", response_model=Me, responses=errors(401, 503))
def me(principal: Authenticated) -> dict[str, Any]:
    return {"subject": principal.subject, "role": principal.role, "store_id": principal.store_id}
