"""Categories by name or id: what `--category NAME|ID` and `category rename OLD` accept, and
the names product tables show instead of category ids."""

from __future__ import annotations

from typing import Any

from invctl.client import ApiClient
from invctl.errors import NotFoundError, UsageError
from invctl.paging import fetch_all


def every_category(client: ApiClient) -> list[dict[str, Any]]:
    return fetch_all(client, "/categories", limit=None).items


def names_by_id(categories: list[dict[str, Any]]) -> dict[Any, str]:
    return {category.get("id"): str(category.get("name")) for category in categories}


def find_category(categories: list[dict[str, Any]], given: str) -> dict[str, Any]:
    """The category `given` names: a number is an id (or, when no category has that id, a
    name); otherwise its exact name, else the one name equal to it ignoring case."""
    wanted = given.strip()
    if not wanted:
        raise UsageError("a category name or id must not be empty", code="usage.category")
    if wanted.isascii() and wanted.isdigit():
        number = wanted.lstrip("0") or "0"
        by_id = [c for c in categories if str(c.get("id")) == number]
        if by_id:
            return by_id[0]
    exact = [c for c in categories if c.get("name") == wanted]
    if exact:
        return exact[0]
    folded = [c for c in categories if str(c.get("name")).casefold() == wanted.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise NotFoundError(
        f"no category {wanted!r}"
        + (f" (it could be any of {', '.join(repr(c['name']) for c in folded)})" if folded else ""),
        code="category.not_found",
        hint="see the categories with `invctl category list`",
    )


def category_id(client: ApiClient, given: str) -> int:
    """The id of the category `given` names, looked up at `client`'s server."""
    return int(find_category(every_category(client), given)["id"])
