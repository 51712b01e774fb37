"""The terminal token: the local credential every POST to the store terminal API carries.

It lives in a file only the agent's user may read (mode 0600, by default `terminal.token`
next to the replica). The agent makes it, 32 random bytes, the first time it starts; an
operator may write one of their own instead (32 to 512 visible ASCII characters). invctl
reads the same file. A file that others may read or write, or that another user owns, stops
the agent at start: whoever could read it could sell as the store.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from invwire.errors.agent import TerminalTokenInsecure, TerminalTokenInvalid

TOKEN_FILE_NAME = "terminal.token"  # noqa: S105 (a file name, not a secret)
RANDOM_BYTES = 32
MIN_LENGTH, MAX_LENGTH = 32, 512


def load_or_create_token(path: Path) -> tuple[str, bool]:
    """The token in `path`, made first when there is no such file; and whether it was made."""
    created = False
    if not os.path.lexists(path):
        created = _create(path)
    return read_token(path), created


def read_token(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    try:
        _check_private(path, os.fstat(fd))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_LENGTH + 2)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    finally:
        os.close(fd)
    return _token_in(path, raw)


def _create(path: Path) -> bool:
    """Writes a new token to a private temporary file, then links it into place, so that no
    reader ever sees a partial file; False when another process made one first."""
    token = secrets.token_urlsafe(RANDOM_BYTES)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, f"{token}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as exc:
        raise TerminalTokenInvalid(
            f"cannot create the terminal token file {path}: {exc.strerror or exc}",
            path=str(path),
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _check_private(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise TerminalTokenInvalid(f"terminal token file {path} is not a file", path=str(path))
    if info.st_uid != os.geteuid():
        raise TerminalTokenInsecure(
            f"terminal token file {path} belongs to another user (uid {info.st_uid}); "
            "the agent's own user must own it",
            path=str(path),
        )
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TerminalTokenInsecure(
            f"terminal token file {path} is accessible to other users; run: chmod 600 {path}",
            path=str(path),
            mode=oct(stat.S_IMODE(info.st_mode)),
        )


def _token_in(path: Path, raw: bytes) -> str:
    token = raw.strip()
    if not MIN_LENGTH <= len(token) <= MAX_LENGTH or not all(33 <= b <= 126 for b in token):
        raise TerminalTokenInvalid(
            f"terminal token file {path} must hold one token of {MIN_LENGTH} to {MAX_LENGTH} "
            "visible ASCII characters; delete it and the agent makes a new one",
            path=str(path),
        )
    return token.decode("ascii")


def _unreadable(path: Path, exc: OSError) -> TerminalTokenInvalid:
    return TerminalTokenInvalid(
        f"cannot read the terminal token file {path}: {exc.strerror or exc}", path=str(path)
    )
