"""`invctl user add`: accounts at central."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from invctl.context import state_of
from invctl.options import JsonFlag, PasswordStdinFlag
from invctl.prompts import read_password

app = typer.Typer(
    help="Manage user accounts (central).\n\nExample: invctl user add bob --role staff",
    no_args_is_help=True,
)


class Role(StrEnum):
    admin = "admin"
    ops = "ops"
    staff = "staff"


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="user")


@app.command("add")
def add(
    ctx: typer.Context,
    username: Annotated[
        str, typer.Argument(metavar="USERNAME", help="Login name.", show_default=False)
    ],
    role: Annotated[Role, typer.Option("--role", help="What the user may do.", show_default=False)],
    store: Annotated[
        str | None,
        typer.Option("--store", help="Bind the user to a store (staff).", show_default=False),
    ] = None,
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
