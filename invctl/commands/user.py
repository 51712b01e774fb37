"""`invctl user add | list | disable | enable | set-role | reset-password | revoke-tokens`:
accounts at central (admins only)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from invctl.client import ApiClient, items_of
from invctl.context import State, state_of
from invctl.errors import NotFoundError
from invctl.options import JsonFlag, PasswordStdinFlag
from invctl.prompts import read_password

app = typer.Typer(
    help="Manage user accounts (central).\n\nExample: invctl user add bob --role staff",
    no_args_is_help=True,
)
COLUMNS = ("id", "username", "role", "store_id", "active")
REVOKED_NOTE = "its tokens were revoked: it logs in again (with `invctl login`) to go on"


class Role(StrEnum):
    admin = "admin"
    ops = "ops"
    staff = "staff"


UsernameArg = Annotated[
    str, typer.Argument(metavar="USERNAME", help="The user's login name.", show_default=False)
]
RoleOpt = Annotated[Role, typer.Option("--role", help="What the user may do.", show_default=False)]
StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Bind the user to a store (staff).", show_default=False),
]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="user")


@app.command("add")
def add(
    ctx: typer.Context,
    username: Annotated[
        str, typer.Argument(metavar="USERNAME", help="Login name.", show_default=False)
    ],
    role: RoleOpt,
    store: StoreOpt = None,
    password_stdin: PasswordStdinFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Create a user; the password is prompted twice unless --password-stdin is given.

    Example: invctl user add bob --role staff --store store-042
    """
    state = state_of(ctx, json_out)
    central = state.central()
    password = read_password(from_stdin=password_stdin, confirm=True)
    body: dict[str, Any] = {"username": username, "password": password, "role": role.value}
    if store:
        body["store_id"] = store
    created = central.post("/users", json=body)
    state.out.emit(created, title=f"User {username} created")


@app.command("list")
def list_users(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """List users: id, role, store and whether they are active.

    Example: invctl user list
    """
    state = state_of(ctx, json_out)
    state.out.emit(items_of(state.central().get("/users")), table=COLUMNS)


@app.command("disable")
def disable(ctx: typer.Context, username: UsernameArg, json_out: JsonFlag = False) -> None:
    """Disable a user: it can no longer log in, and its tokens stop working at once.

    The last active admin cannot be disabled.

    Example: invctl user disable bob
    """
    state = state_of(ctx, json_out)
    user = _act(state, username, "disable")
    state.out.emit(user, title=f"User {username} disabled")


@app.command("enable")
def enable(ctx: typer.Context, username: UsernameArg, json_out: JsonFlag = False) -> None:
    """Enable a disabled user: it may log in again.

    Example: invctl user enable bob
    """
    state = state_of(ctx, json_out)
    user = _act(state, username, "enable")
    state.out.emit(user, title=f"User {username} enabled")


@app.command("set-role")
def set_role(
    ctx: typer.Context,
    username: UsernameArg,
    role: RoleOpt,
    store: StoreOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Give a user another role (and, for staff, a store); its tokens are revoked.

    The last active admin cannot be given another role.

    Example: invctl user set-role bob --role staff --store store-042
    """
    state = state_of(ctx, json_out)
    body = {"role": role.value, "store_id": store}
    user = _act(state, username, "role", body)
    state.out.emit(user, title=f"User {username} is now {role.value}")
    state.out.note(REVOKED_NOTE)


@app.command("reset-password")
def reset_password(
    ctx: typer.Context,
    username: UsernameArg,
    password_stdin: PasswordStdinFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Set a user's password (prompted twice unless --password-stdin); its tokens are revoked.

    Example: invctl user reset-password bob
    """
    state = state_of(ctx, json_out)
    password = read_password(from_stdin=password_stdin, confirm=True)
    user = _act(state, username, "password", {"password": password})
    state.out.emit(user, title=f"Password of {username} reset")
    state.out.note(REVOKED_NOTE)


@app.command("revoke-tokens")
def revoke_tokens(ctx: typer.Context, username: UsernameArg, json_out: JsonFlag = False) -> None:
    """Make every token issued to a user stop working (e.g. a laptop was lost).

    Example: invctl user revoke-tokens bob
    """
    state = state_of(ctx, json_out)
    user = _act(state, username, "revoke-tokens")
    state.out.emit(user, title=f"Tokens of {username} revoked")
    state.out.note(REVOKED_NOTE)


def _act(state: State, username: str, action: str, body: Any = None) -> Any:
    """POST /users/{id}/{action} for the user of that name."""
    central = state.central()
    return central.post(f"/users/{_user_id(central, username)}/{action}", json=body)


def _user_id(central: ApiClient, username: str) -> int:
    """Users are addressed by id at central; people name them."""
    for user in items_of(central.get("/users")):
        if user.get("username") == username and isinstance(user.get("id"), int):
            return int(user["id"])
    raise NotFoundError(
        f"no user named {username!r}",
        code="user.not_found",
        hint="list the users with: invctl user list",
    )
