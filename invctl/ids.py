"""Ids for people: shown short (8 characters) in tables, accepted as any unique prefix.

Order ids and the agent's local references are UUIDs: 36 characters that wrap a table at
80 columns. Tables show their first 8 characters (git-style), and every command that takes
such an id resolves a prefix against the ids it can see with `resolve_prefix`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from invctl.errors import NotFoundError, UsageError

SHORT_ID_LENGTH = 8
MAX_LISTED_MATCHES = 5
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(value: object) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def short_id(value: str) -> str:
    """A UUID's first 8 characters; any other text unchanged."""
    return value[:SHORT_ID_LENGTH] if is_uuid(value) else value


def resolve_prefix(candidates: Iterable[str | None], prefix: str, *, what: str = "order") -> str:
    """The one candidate equal to `prefix`, else the one that starts with it (ignoring case).

    No match: NotFoundError (exit 3). Several: UsageError (exit 2) naming some of them, so
    the user types a longer prefix.
    """
    wanted = prefix.strip()
    if not wanted:
        raise UsageError(f"an empty {what} id matches nothing", code="usage.id_prefix")
    known = list(dict.fromkeys(c for c in candidates if c))
    if wanted in known:
        return wanted
    folded = wanted.lower()
    matches = [candidate for candidate in known if candidate.lower().startswith(folded)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFoundError(f"no {what} id starts with {wanted!r}", code=f"{what}.not_found")
    shown = ", ".join(matches[:MAX_LISTED_MATCHES])
    more = (
        f" and {len(matches) - MAX_LISTED_MATCHES} more"
        if len(matches) > MAX_LISTED_MATCHES
        else ""
    )
    raise UsageError(
        f"{len(matches)} {what} ids start with {wanted!r}: {shown}{more}",
        code="usage.ambiguous_id",
        hint="give more characters of the id",
        details={"matches": matches[:MAX_LISTED_MATCHES]},
    )
