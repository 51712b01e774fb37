"""`invctl login | logout | whoami`: a user's session with central."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from invctl.client import ApiClient
from invctl.context import state_of
from invctl.errors import AuthError, ServerError
from invctl.options import JsonFlag, PasswordStdinFlag
from invctl.prompts import read_password

UsernameOpt = Annotated[
    str | None,
    typer.Option("--username", "-u", help="Username (prompted if omitted).", show_default=False),
]


def register(root: typer.Typer) -> None:
    root.command()(login)
    root.command()(logout)
    root.command()(whoami)


def login(
    ctx: typer.Context,
    username: UsernameOpt = None,
    password_stdin: PasswordStdinFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Log in to central and save the session token.

    The token is kept in credentials.json (mode 0600) in the config directory, per
    central URL; INVCTL_TOKEN overrides it.

    Example: echo "$PW" | invctl --central http://central:8000 login -u alice --password-stdin
    """
    state = state_of(ctx, json_out)
    central = state.central()
    url = central.target.url
    name = username or typer.prompt("Username")
    password = read_password(from_stdin=password_stdin)
    answer = _request_token(central, name, password)
    token, expires_at = _token_of(answer, state.deps.now())
    state.credentials.save(url, token, expires_at)
    if os.environ.get("INVCTL_TOKEN"):
        state.out.warn("INVCTL_TOKEN is set; it overrides the saved login until unset")
    data = {"central": url, "username": name, "expires_at": _iso(expires_at)}
    state.out.done(data, f"Logged in to {url} as {name}{_until(expires_at)}.")


def _request_token(central: ApiClient, username: str, password: str) -> Any:
    form = {"username": username, "password": password}
    try:
        return central.post("/auth/token", data=form)
    except AuthError as err:
        err.hint = "check the username and password"
        raise


def _token_of(answer: Any, now: datetime) -> tuple[str, datetime | None]:
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise ServerError("central's login answer has no access token")
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        return token, now + timedelta(seconds=expires_in)
    return token, None


def logout(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Forget the saved session token for the configured central.

    Example: invctl logout
    """
    state = state_of(ctx, json_out)
    url = state.central_url()
    removed = state.credentials.remove(url)
    message = f"Logged out of {url}." if removed else f"Not logged in to {url}."
    state.out.done({"central": url, "logged_out": removed}, message)


def whoami(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Show who central thinks you are, and which credentials were used.

    Example: invctl whoami --json
    """
    state = state_of(ctx, json_out)
    me = state.central().get("/auth/me")
    auth = state.central_auth()
    record = {
        **(me if isinstance(me, dict) else {}),
        "central": state.central_url(),
        "credentials": auth.source,
        "expires_at": _iso(auth.expires_at),
    }
    state.out.emit(record)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _until(moment: datetime | None) -> str:
    return f" until {moment:%Y-%m-%d %H:%M} UTC" if moment else ""
