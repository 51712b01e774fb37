"""Reading secrets from the terminal or stdin without echoing them."""

from __future__ import annotations

import typer

from invctl.errors import UsageError


def read_password(*, from_stdin: bool, confirm: bool = False) -> str:
    """The first line of stdin (`--password-stdin`), or a hidden prompt."""
    if from_stdin:
        password = typer.get_text_stream("stdin").readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    if not password:
        raise UsageError("the password is empty", code="usage.password")
    return password
