"""Who is calling: a user (admin, ops, staff) or a store authenticated by its API key."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """A caller's role: a user's, or `store` for a store's API key."""

    ADMIN = "admin"
    OPS = "ops"
    STAFF = "staff"
    STORE = "store"


USER_ROLES = (Role.ADMIN, Role.OPS, Role.STAFF)


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    store_id: str | None = None
    user_id: int | None = None  # a user's row id; None for a store's key and the system

    @property
    def actor(self) -> str:
        return f"store:{self.subject}" if self.role == Role.STORE else f"user:{self.subject}"


SYSTEM = Principal("system", Role.ADMIN)
