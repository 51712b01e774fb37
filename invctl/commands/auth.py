"""`invctl login | logout | whoami | passwd`: a user's session with central."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from invctl.client import ApiClient
from invctl.context import State, state_of
from invctl.errors import AuthError, InvctlError, ServerError, UsageError
from invctl.options import JsonFlag, PasswordStdinFlag
from invctl.output import people_time
from invctl.prompts import read_password

UsernameOpt = Annotated[
    str | None,
    typer.Option("--username", "-u", help="Username (prompted if omitted).", show_default=False),
]


THROTTLED = "auth.throttled"


def register(root: typer.Typer) -> None:
    root.command()(login)
    root.command()(logout)
    root.command()(whoami)
    root.command()(passwd)


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
    url = state.central_url()  # with several URLs, a login belongs to the whole list
    name = username or typer.prompt("Username")
    password = read_password(from_stdin=password_stdin)
    answer = _request_token(central, name, password, state)
    token, expires_at = _token_of(answer, state.deps.now())
    state.credentials.save(url, token, expires_at)
    if os.environ.get("INVCTL_TOKEN"):
        state.out.warn("INVCTL_TOKEN is set; it overrides the saved login until unset")
    data = {"central": url, "username": name, "expires_at": _iso(expires_at)}
    state.out.done(data, f"Logged in to {url} as {name}{_until(expires_at)}.")


def _request_token(central: ApiClient, username: str, password: str, state: State) -> Any:
    form = {"username": username, "password": password}
    try:
        return central.post("/auth/token", data=form)
    except AuthError as err:
        err.hint = "check the username and password"
        raise
    except InvctlError as err:
        raise throttled(err, state.deps.now(), json_mode=state.json) from None


def throttled(err: InvctlError, now: datetime, *, json_mode: bool) -> InvctlError:
    """Central's 429 `auth.throttled` as one line saying when to try again (the seconds and
    the moment are details for `--json` only); any other error as it is."""
    retry_after = err.details.get("retry_after")
    if err.code != THROTTLED or not isinstance(retry_after, int) or isinstance(retry_after, bool):
        return err
    again = now + timedelta(seconds=retry_after)
    return AuthError(
        f"too many failed logins; try again in {_duration(retry_after)} (at {people_time(again)})",
        code=THROTTLED,
        details={"retry_after": retry_after, "retry_at": _iso(again)} if json_mode else None,
    )


def _duration(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


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
    return f" until {people_time(moment)}" if moment else ""


def passwd(
    ctx: typer.Context,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the current password, then the new one, from the first two lines of stdin.",
        ),
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Change your own password; you stay logged in here, everywhere else you log in again.

    Every token you hold stops working; central answers a fresh one, saved like a login.

    Example: invctl passwd
    """
    state = state_of(ctx, json_out)
    central = state.central()
    url = state.central_url()  # with several URLs, a login belongs to the whole list
    current = _read_secret("Current password", from_stdin=password_stdin)
    new = _read_secret("New password", from_stdin=password_stdin, confirm=True)
    try:
        answer = central.post(
            "/auth/password", json={"current_password": current, "new_password": new}
        )
    except InvctlError as err:
        if err.code == "password.wrong":
            err.hint = "type your current password first; forgotten, an admin can reset it"
        raise throttled(err, state.deps.now(), json_mode=state.json) from None
    token, expires_at = _token_of(answer, state.deps.now())
    state.credentials.save(url, token, expires_at)
    if os.environ.get("INVCTL_TOKEN"):
        state.out.warn("INVCTL_TOKEN is revoked now; unset it (the new login is saved)")
    data = {"central": url, "password_changed": True, "expires_at": _iso(expires_at)}
    state.out.done(data, f"Password changed; logged in to {url} again{_until(expires_at)}.")


def _read_secret(label: str, *, from_stdin: bool, confirm: bool = False) -> str:
    """One line of stdin, or a hidden prompt named `label`."""
    if from_stdin:
        return read_password(from_stdin=True)
    secret = str(typer.prompt(label, hide_input=True, confirmation_prompt=confirm))
    if not secret:
        raise UsageError("the password is empty", code="usage.password")
    return secret
