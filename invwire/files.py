"""Files that hold secrets or private data: who may read them, and SQLite files made private.

Central and the agent refuse a secret file (a password, a key, a config that may hold them)
that its group or other users may access, and create their SQLite files 0600. SQLite gives
the `-wal` and `-shm` files it makes the mode of the database file, so they follow.
Each caller turns `UnusableFile` into its own configuration error.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
PRIVATE_MODE = 0o600
SHARED_BITS = stat.S_IRWXG | stat.S_IRWXO


class UnusableFile(Exception):
    """A file named by the configuration cannot be used; the message says why and the fix."""

    @property
    def message(self) -> str:
        return str(self.args[0])


class SharedFile(UnusableFile):
    """A secret file its group or other users may access."""


def read_private_text(path: Path, what: str) -> str:
    """The text of a secret file (stripped) that only its owner may access; `what` names it in
    the refusal: UnusableFile when it cannot be read, SharedFile when others may access it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UnusableFile(f"cannot read {what} {path}: {exc}") from None
    if shared_mode(mode):  # a group may hold people the secret is not meant for
        raise SharedFile(not_private(path, what, mode))
    return text


def shared_mode(mode: int) -> bool:
    """Whether a file of this mode is accessible to its group or to other users."""
    return bool(mode & SHARED_BITS)


def not_private(path: Path, what: str, mode: int) -> str:
    """The one-line refusal of a secret file others may access, with the fix."""
    return (
        f"{what} {path} is accessible to other users (mode {stat.S_IMODE(mode):o}); "
        f"run: chmod 600 {path}"
    )


def check_sqlite_path(path: Path) -> None:
    """Refuse, changing nothing, a path that is a directory or a file that is no SQLite
    database (an empty file is one: SQLite makes it a new database)."""
    if path.is_dir():
        raise UnusableFile(
            f"{path} is a directory, not a SQLite database file: name a file inside it"
        )
    if path.exists():
        _check_sqlite_header(path)


def prepare_sqlite_file(path: Path) -> int | None:
    """Make `path` ready for SQLite to open: its directory exists; a new file is created 0600;
    an existing one must be a SQLite database (or empty), and is made 0600 when it was wider.

    Returns the mode the file had when it was tightened (for the caller to log), else None.
    """
    check_sqlite_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnusableFile(f"cannot create the directory {path.parent}: {_reason(exc)}") from None
    if not path.exists():
        _create_private(path)
        return None
    mode = path.stat().st_mode
    if not shared_mode(mode):
        return None
    _tighten(path)
    return stat.S_IMODE(mode)


def _create_private(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        return  # made meanwhile by another process: SQLite checks it on open
    except OSError as exc:
        raise UnusableFile(f"cannot create the database file {path}: {_reason(exc)}") from None
    os.close(fd)


def _check_sqlite_header(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise UnusableFile(f"cannot read the database file {path}: {_reason(exc)}") from None
    if head and head != SQLITE_HEADER:  # SQLite makes an empty file a new database
        raise UnusableFile(
            f"{path} exists and is not a SQLite database: name another file, or move it aside"
        )


def _tighten(path: Path) -> None:
    for target in (path, *(path.with_name(path.name + s) for s in SQLITE_COMPANIONS)):
        try:
            target.chmod(PRIVATE_MODE)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UnusableFile(
                f"{target} is accessible to other users and cannot be made private "
                f"({_reason(exc)}); run: chmod 600 {target}"
            ) from None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def sync_directory(directory: Path) -> None:
    """fsync a directory, so that a file created or renamed in it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
