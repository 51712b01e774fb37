"""The CLI's error hierarchy: each class carries a stable code and its exit code.

Errors are turned into output and an exit status in exactly one place
(`invctl.main.InvctlGroup`); everything else raises.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    REFUSED = 4
    UNAVAILABLE = 5
    AUTH = 6
    UNHEALTHY = 7  # a health check (`sync status --all --check`) ran and found a problem
    INTERRUPTED = 130


class InvctlError(Exception):
    """The command failed."""

    code = "error"
    exit_code = ExitCode.ERROR

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        hint: str | None = None,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = message or _first_line(type(self).__doc__)
        self.code = code or type(self).code
        self.hint = hint
        self.details = details or {}
        self.request_id = request_id
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "exit_code": int(self.exit_code),
        }
        if self.hint:
            body["hint"] = self.hint
        if self.details:
            body["details"] = self.details
        if self.request_id:
            body["request_id"] = self.request_id
        return body


class UsageError(InvctlError):
    """The command line is incomplete or contradictory."""

    code = "usage"
    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The configuration is incomplete or unreadable."""

    code = "config"


class NotFoundError(InvctlError):
    """Not found."""

    code = "not_found"
    exit_code = ExitCode.NOT_FOUND


class RefusedError(InvctlError):
    """The server refused the change."""

    code = "refused"
    exit_code = ExitCode.REFUSED


class UnavailableError(InvctlError):
    """The server could not be reached."""

    code = "unavailable"
    exit_code = ExitCode.UNAVAILABLE


class AuthError(InvctlError):
    """Not authorised."""

    code = "auth"
    exit_code = ExitCode.AUTH


class InvalidRequestError(InvctlError):
    """The server rejected the request as invalid."""

    code = "invalid"


class ServerError(InvctlError):
    """The server answered in an unexpected way."""

    code = "unexpected"


class ImportFileError(InvctlError):
    """The import file cannot be read."""

    code = "import.file"


def recast(err: InvctlError, cls: type[InvctlError], hint: str | None = None) -> InvctlError:
    """`err` as a `cls` (so with its exit code), keeping what the server said; `hint`
    replaces the hint when given."""
    if type(err) is cls and hint is None:
        return err
    return cls(
        err.message,
        code=err.code,
        hint=hint or err.hint,
        details=err.details,
        request_id=err.request_id,
    )


def _first_line(text: str | None) -> str:
    return (text or "error").strip().splitlines()[0]
