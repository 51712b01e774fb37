"""`invctl allowance grant | list | show | return | set | unset | rules`: stock set aside for
stores, and the rules that top their allowances up (central)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer

from invctl.client import ApiClient, items_of, segment
from invctl.context import state_of
from invctl.errors import NotFoundError, ServerError, UsageError
from invctl.options import JsonFlag, SkuArg, StoreIdArg
from invctl.output import Column
from invctl.paging import DEFAULT_LIMIT, AllOpt, LimitOpt, Listing, fetch_listing, warn_if_cut

app = typer.Typer(
    help="Grant, list and return stores' stock allowances, and set the rules that top them "
    "up (central).\n\nExample: invctl allowance list --store store-042",
    no_args_is_help=True,
)
STATES = ("live", "settling", "closed")
PAGE = 200  # the largest page of GET /allowances
COLUMNS = (
    "id",
    Column("store_id", "store"),
    "sku",
    Column("units", justify="right"),
    Column("remaining", justify="right"),
    "state",
    "expires_at",
)
RULE_COLUMNS = (
    "scope",
    "target",
    Column("units", justify="right"),
    Column("threshold", justify="right"),
    Column("ttl_s", "ttl (s)", "right"),
    Column("share", justify="right"),
    Column("share_days", "days", "right"),
    "updated_at",
    "updated_by",
)

UnitsOpt = Annotated[
    int, typer.Option("--units", min=1, metavar="N", help="Units.", show_default=False)
]
TtlOpt = Annotated[
    int,
    typer.Option(
        "--ttl", min=60, metavar="SECONDS", help="Seconds until it expires.", show_default=False
    ),
]
IdArg = Annotated[
    str, typer.Argument(metavar="ID", help="The allowance's id (a UUID).", show_default=False)
]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="allowance")


@app.command("grant")
def grant(
    ctx: typer.Context,
    store_id: StoreIdArg,
    sku: SkuArg,
    units: UnitsOpt,
    ttl: TtlOpt,
    json_out: JsonFlag = False,
) -> None:
    """Set units of a SKU aside for one store: no other store may take them.

    Central refuses more units than are available (exit 4) and sets nothing aside.

    Example: invctl allowance grant store-042 MILK-1L --units 6 --ttl 86400
    """
    state = state_of(ctx, json_out)
    body = {"store": store_id, "sku": sku, "units": units, "ttl_s": ttl}
    granted = state.central().post("/allowances", json=body)
    state.out.emit(granted, title=f"Allowance of {sku} for {store_id}")


@app.command("list")
def list_allowances(
    ctx: typer.Context,
    store: Annotated[
        str | None, typer.Option("--store", metavar="STORE_ID", help="Only this store's.")
    ] = None,
    sku: Annotated[str | None, typer.Option("--sku", metavar="SKU", help="Only this SKU.")] = None,
    state_filter: Annotated[
        str | None,
        typer.Option("--state", metavar="STATE", help="live, settling or closed."),
    ] = None,
    limit: LimitOpt = DEFAULT_LIMIT,
    every: AllOpt = False,
    json_out: JsonFlag = False,
) -> None:
    """List allowances, newest first.

    Example: invctl allowance list --store store-042 --state live
    """
    state = state_of(ctx, json_out)
    if state_filter is not None and state_filter not in STATES:
        raise UsageError(f"--state is one of {', '.join(STATES)}", code="usage.state")
    wanted = {"store": store, "sku": sku, "state": state_filter}
    params = {k: v for k, v in wanted.items() if v is not None}
    listing = newest_first(state.central(), params, None if every else limit)
    state.out.emit(listing.items, table=COLUMNS)
    warn_if_cut(state.out, listing, "allowances")


@app.command("show")
def show(ctx: typer.Context, allowance_id: IdArg, json_out: JsonFlag = False) -> None:
    """Show one allowance: its units, what is left, its state and expiry.

    Example: invctl allowance show 5f0c9a1e-7b7d-4c55-9d8e-2f4b8c1d0a11
    """
    state = state_of(ctx, json_out)
    found = find(state.central(), allowance_id)
    state.out.emit(found, title=f"Allowance {allowance_id}")


@app.command("return")
def return_allowance(ctx: typer.Context, allowance_id: IdArg, json_out: JsonFlag = False) -> None:
    """Close a live allowance: its unused units are available to every store again.

    Example: invctl allowance return 5f0c9a1e-7b7d-4c55-9d8e-2f4b8c1d0a11
    """
    state = state_of(ctx, json_out)
    closed = state.central().post(f"/allowances/{segment(allowance_id)}/return")
    state.out.done(closed, f"Returned allowance {allowance_id}: its unused units are available.")


@app.command("set")
def set_rule(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="The SKU, or with --category the category's id.",
            show_default=False,
        ),
    ],
    units: UnitsOpt,
    threshold: Annotated[
        int,
        typer.Option(
            "--threshold",
            min=1,
            metavar="T",
            help="Top a store up when its units left fall below T (1 to --units).",
            show_default=False,
        ),
    ],
    ttl: TtlOpt,
    category: Annotated[
        bool, typer.Option("--category", help="TARGET is a category's id, not a SKU.")
    ] = False,
    share: Annotated[
        float | None,
        typer.Option(
            "--share",
            min=0.0001,
            max=1.0,
            metavar="F",
            help="Also at most this fraction of the available stock, split between the stores "
            "that sold the SKU in the last --days days (others get none by it).",
            show_default=False,
        ),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            min=1,
            max=365,
            metavar="N",
            help="Days a sale counts for --share (default 7).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Set the rule that tops stores' allowances of a SKU (or a category) up while online.

    A SKU's own rule comes before its category's. Each top-up grants at most the available
    stock divided by (active stores + 1), and none once one unit per active store is left.

    Example: invctl allowance set MILK-1L --units 6 --threshold 2 --ttl 86400 --share 0.5
    """
    state = state_of(ctx, json_out)
    if days is not None and share is None:
        raise UsageError("--days goes with --share", code="usage.days")
    body: dict[str, Any] = {"units": units, "threshold": threshold, "ttl_s": ttl}
    if share is not None:
        body |= {"share": share} if days is None else {"share": share, "share_days": days}
    rule = state.central().put(rule_path(target, category), json=body)
    state.out.emit(rule, title=f"Allowance rule of {'category' if category else 'SKU'} {target}")


@app.command("unset")
def unset_rule(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="The SKU, or with --category the category's id.",
            show_default=False,
        ),
    ],
    category: Annotated[
        bool, typer.Option("--category", help="TARGET is a category's id, not a SKU.")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Delete a SKU's (or a category's) allowance rule; grants already made stay.

    Example: invctl allowance unset MILK-1L
    """
    state = state_of(ctx, json_out)
    state.central().delete(rule_path(target, category))
    kind = "category" if category else "sku"
    state.out.done(
        {"scope": kind, "target": target, "deleted": True}, f"Deleted the rule of {target}."
    )


@app.command("rules")
def rules(
    ctx: typer.Context,
    limit: LimitOpt = DEFAULT_LIMIT,
    every: AllOpt = False,
    json_out: JsonFlag = False,
) -> None:
    """List the allowance rules, oldest first.

    Example: invctl allowance rules
    """
    state = state_of(ctx, json_out)
    listing = fetch_listing(state.central(), "/allowance-rules", limit=limit, every=every)
    state.out.emit(listing.items, table=RULE_COLUMNS)
    warn_if_cut(state.out, listing, "rules")


def rule_path(target: str, category: bool) -> str:
    if not category:
        return f"/allowance-rules/sku/{segment(target)}"
    if not target.isdigit() or int(target) < 1:
        raise UsageError(f"a category id is a whole number, not {target!r}", code="usage.category")
    return f"/allowance-rules/category/{target}"


def newest_first(client: ApiClient, params: dict[str, Any], limit: int | None) -> Listing:
    """GET /allowances page after page: `limit` of them at most (None: every one)."""
    items: list[dict[str, Any]] = []
    for page, more in _pages(client, params, limit):
        items += page
        if not more:
            return Listing(items, more=False)
        if limit is not None and len(items) >= limit:
            return Listing(items, more=True)
    return Listing(items, more=False)


def find(client: ApiClient, allowance_id: str) -> dict[str, Any]:
    """Central has no route for one allowance: its list is read until the id turns up."""
    for page, _ in _pages(client, {}, None):
        for item in page:
            if item.get("id") == allowance_id:
                return item
    raise NotFoundError(f"no allowance {allowance_id}", code="allowance.not_found")


def _pages(
    client: ApiClient, params: dict[str, Any], limit: int | None
) -> Iterator[tuple[list[dict[str, Any]], bool]]:
    """Each page of GET /allowances (its cursor is `before`) and whether more follow."""
    before: int | None = None
    seen = 0
    while True:
        size = PAGE if limit is None else min(PAGE, limit - seen)
        cursor = {} if before is None else {"before": before}
        page = client.get("/allowances", params={**params, **cursor, "limit": size})
        items = items_of(page)
        seen += len(items)
        following = page.get("next_before")
        yield items, following is not None
        if following is None:
            return
        if not isinstance(following, int) or (before is not None and following >= before):
            raise ServerError(f"the server's next_before {following!r} does not follow {before!r}")
        before = following
