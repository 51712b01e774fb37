"""Who is calling: a user (admin, ops, staff) or a store authenticated by its API key."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("admin", "ops", "staff")


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    store_id: str | None = None

    @property
    def actor(self) -> str:
        return f"store:{self.subject}" if self.role == "store" else f"user:{self.subject}"


SYSTEM = Principal("system", "admin")
