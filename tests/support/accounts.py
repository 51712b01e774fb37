"""Factories for central's users and stores in tests: unique names, overridable fields."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from central.services import accounts
from central.uow import UnitOfWork

PASSWORD = "password-of-a-test-user"
_serial = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_serial)}-{uuid.uuid4().hex[:6]}"


def make_user(
    uow: UnitOfWork,
    role: str = "ops",
    *,
    username: str | None = None,
    password: str = PASSWORD,
    store_id: str | None = None,
) -> dict[str, Any]:
    """A user made through the use case, as an admin would; returns its view (with `id`)."""
    new = accounts.NewUser(username or unique(role), password, role, store_id)
    return accounts.create_user(uow, new)
