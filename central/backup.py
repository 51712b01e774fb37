"""`central backup`: an online, consistent snapshot of central's database, in one file.

The file is an uncompressed tar of two members: `manifest.json` (what the snapshot holds,
its SHA-256) and the snapshot, `database.sqlite3` (SQLite's online backup API, in one step,
so one read transaction) or `database.sql` (`mariadb-dump --single-transaction`, one
InnoDB snapshot). Every figure of the manifest (schema version, epoch, outbox position,
row counts) is read from the snapshot itself, never from the live database, which has
moved on meanwhile: they describe exactly what a restore brings back.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

from central.epochs import INITIAL_EPOCH
from invwire.errors.central import (
    BackupChecksumMismatch,
    BackupExists,
    BackupFailed,
    BackupInvalid,
    BackupToolMissing,
    ConfigError,
    DatabaseConfigError,
    RecoveryRefused,
)
from invwire.files import UnusableFile, check_sqlite_path, sync_directory

FORMAT = "invctl-central-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
PAYLOAD_NAMES = {"sqlite": "database.sqlite3", "mariadb": "database.sql"}
# What the manifest counts, by the table that holds it.
COUNTED_TABLES = {
    "categories": "categories",
    "products": "products",
    "stock": "stock",
    "orders": "orders",
    "order_lines": "order_lines",
    "movements": "stock_movements",
}
DUMP_TOOLS = ("mariadb-dump", "mysqldump")
CLIENT_TOOLS = ("mariadb", "mysql")
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Facts:
    """What the snapshot holds, read from the snapshot."""

    schema_version: int
    epoch: int
    outbox_position: int  # the highest outbox id in the snapshot (0: an empty outbox)
    outbox_unpublished: int  # rows the relay had not yet marked published
    counts: dict[str, int]


@dataclass(frozen=True)
class Manifest:
    database: str  # "sqlite" or "mariadb"
    created_at: datetime  # naive UTC: when the snapshot was started
    sha256: str  # of the payload member
    size: int
    facts: Facts

    @property
    def payload_name(self) -> str:
        return PAYLOAD_NAMES[self.database]

    def to_json(self) -> bytes:
        body = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "database": self.database,
            "created_at": self.created_at.isoformat() + "Z",
            "payload": self.payload_name,
            "sha256": self.sha256,
            "size": self.size,
            **asdict(self.facts),
        }
        return json.dumps(body, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            body = json.loads(raw)
            if body.get("format") != FORMAT:
                raise BackupInvalid("the file is not a central backup (no manifest of one)")
            if body.get("format_version") != FORMAT_VERSION:
                raise BackupInvalid(
                    f"backup format {body.get('format_version')!r} is not one this central "
                    f"reads ({FORMAT_VERSION})"
                )
            facts = Facts(
                schema_version=int(body["schema_version"]),
                epoch=int(body["epoch"]),
                outbox_position=int(body["outbox_position"]),
                outbox_unpublished=int(body["outbox_unpublished"]),
                counts={str(k): int(v) for k, v in body["counts"].items()},
            )
            manifest = cls(
                database=str(body["database"]),
                created_at=datetime.fromisoformat(str(body["created_at"]).removesuffix("Z")),
                sha256=str(body["sha256"]),
                size=int(body["size"]),
                facts=facts,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackupInvalid("the backup's manifest is damaged") from None
        if manifest.database not in PAYLOAD_NAMES:
            raise BackupInvalid(f"the backup is of an unknown database {manifest.database!r}")
        return manifest


# --- where the database is -------------------------------------------------------------------


def database_kind(url: str) -> str:
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        return "sqlite"
    if scheme in {"mysql", "mariadb"}:
        return "mariadb"
    raise ConfigError(f"unsupported database URL scheme {scheme!r}")


def sqlite_path(url: str) -> Path:
    raw = urlparse(url).path
    path = raw[1:] if raw.startswith("//") else raw
    if not path or path == ":memory:":
        raise ConfigError("the sqlite URL names no database file to back up or restore")
    return Path(path)


@dataclass(frozen=True)
class MariadbLogin:
    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def from_url(cls, url: str) -> MariadbLogin:
        parsed = urlparse(url)
        try:
            port = parsed.port or 3306
        except ValueError:
            raise DatabaseConfigError("the port in INVCTL_DATABASE_URL is not a number") from None
        database = parsed.path.lstrip("/")
        if not database:
            raise ConfigError("the mysql URL names no database: mysql://USER:PW@HOST:PORT/DB")
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=port,
            user=unquote(parsed.username or ""),
            password=unquote(parsed.password or ""),
            database=database,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"


def option_file_text(login: MariadbLogin) -> str:
    """A [client] option file: how the MariaDB tools get the password without it being on
    their command line (visible to every user in `ps`) or in the deprecated MYSQL_PWD."""
    if any(c in login.password + login.user for c in "\n\r\0"):
        raise ConfigError("the database user or password holds a line break or NUL")
    return (
        "[client]\n"
        f"user={_quoted(login.user)}\n"
        f"password={_quoted(login.password)}\n"
        f"host={_quoted(login.host)}\n"
        f"port={login.port}\n"
        "protocol=TCP\n"  # as central connects: `localhost` would otherwise mean the socket
    )


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextmanager
def client_options(login: MariadbLogin) -> Iterator[Path]:
    """The option file, 0600 in a private directory, removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="invctl-mariadb-"))
    try:
        path = directory / "client.cnf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(option_file_text(login))
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def find_tool(names: tuple[str, ...]) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BackupToolMissing(
        f"{names[0]} is not installed (Debian/Ubuntu: apt install mariadb-client): "
        "backups and restores of a MariaDB database need it"
    )


def run_tool(args: list[str], stdin: BinaryIO | None = None) -> None:
    name = Path(args[0]).name
    try:
        done = subprocess.run(
            args, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
        )
    except OSError as exc:
        raise BackupFailed(f"cannot run {name}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        reason = said[-1] if said else "no message"
        raise BackupFailed(f"{name} failed (exit {done.returncode}): {reason}")


# --- making a backup -------------------------------------------------------------------------


def make_backup(database_url: str, target: Path, now: datetime) -> Manifest:
    """Snapshot the database into `target` (which must not exist), created 0600."""
    kind = database_kind(database_url)
    if target.exists() or target.is_symlink():
        raise BackupExists(f"{target} exists already: name a new backup file", path=str(target))
    if not target.parent.is_dir():
        raise RecoveryRefused(f"the directory {target.parent} does not exist")
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        payload = work / PAYLOAD_NAMES[kind]
        if kind == "sqlite":
            facts = _sqlite_snapshot(sqlite_path(database_url), payload)
        else:
            facts = _mariadb_snapshot(MariadbLogin.from_url(database_url), payload)
        sha256, size = digest(payload)
        manifest = Manifest(kind, now, sha256, size, facts)
        _write_archive(target, manifest, payload, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def _sqlite_snapshot(source: Path, into: Path) -> Facts:
    if not source.is_file():
        raise DatabaseConfigError(f"there is no database at {source}", path=str(source))
    try:
        check_sqlite_path(source)
    except UnusableFile as exc:
        raise DatabaseConfigError(exc.message, path=str(source)) from None
    with (
        closing(sqlite3.connect(source, timeout=10)) as live,
        closing(sqlite3.connect(into)) as copy,
    ):
        live.backup(copy)  # all pages in one step: one read transaction, one state
        # One self-contained file: no -wal beside it to lose on the way.
        copy.execute("PRAGMA journal_mode=DELETE")
        return sqlite_facts(copy)


def sqlite_facts(connection: sqlite3.Connection) -> Facts:
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    if "schema_migrations" not in tables:
        raise DatabaseConfigError("the database has no central schema (run `central migrate`)")

    def scalar(sql: str) -> int:
        return int(connection.execute(sql).fetchone()[0] or 0)

    has_outbox = "outbox" in tables
    return Facts(
        schema_version=scalar("SELECT MAX(version) FROM schema_migrations"),
        epoch=scalar("SELECT MAX(epoch) FROM epochs") if "epochs" in tables else INITIAL_EPOCH,
        outbox_position=scalar("SELECT MAX(id) FROM outbox") if has_outbox else 0,
        outbox_unpublished=(
            scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL") if has_outbox else 0
        ),
        counts={
            name: scalar(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 (our own table names)
            if table in tables
            else 0
            for name, table in COUNTED_TABLES.items()
        },
    )


def _mariadb_snapshot(login: MariadbLogin, into: Path) -> Facts:
    tool = find_tool(DUMP_TOOLS)
    with client_options(login) as options:
        run_tool(
            [
                tool,
                f"--defaults-extra-file={options}",  # must come first
                "--single-transaction",  # one consistent InnoDB snapshot, no table locks
                "--routines",
                "--triggers",
                "--hex-blob",
                "--skip-extended-insert",  # one row a line: the facts are read from the dump
                "--no-autocommit",  # a restore commits once a table, not once a row
                "--default-character-set=utf8mb4",
                f"--result-file={into}",
                login.database,
            ]
        )
    return dump_facts(into)


def dump_facts(dump: Path) -> Facts:
    """The facts of a `mariadb-dump --skip-extended-insert` file: one INSERT a row, whose
    first value is the id for the tables read here. A dump without its closing line was cut
    short (the tool died, a disk filled)."""
    counts = dict.fromkeys(COUNTED_TABLES.values(), 0)
    firsts: dict[str, int] = {"schema_migrations": 0, "epochs": 0, "outbox": 0}
    unpublished = 0
    completed = False
    with dump.open("rb") as handle:
        for line in handle:
            if line.startswith(b"-- Dump completed"):
                completed = True
            if not line.startswith(b"INSERT INTO `"):
                continue
            table, first = _insert_row(line)
            if table in counts:
                counts[table] += 1
            if table in firsts:
                firsts[table] = max(firsts[table], int(first))
            if table == "outbox" and line.rstrip().endswith(b",NULL);"):
                unpublished += 1  # published_at, its last column, is NULL
    if not completed:
        raise BackupFailed("the dump is incomplete: it has no `-- Dump completed` line")
    if not firsts["schema_migrations"]:
        raise DatabaseConfigError("the database has no central schema (run `central migrate`)")
    return Facts(
        schema_version=firsts["schema_migrations"],
        epoch=firsts["epochs"] or INITIAL_EPOCH,
        outbox_position=firsts["outbox"],
        outbox_unpublished=unpublished,
        counts={name: counts[table] for name, table in COUNTED_TABLES.items()},
    )


def _insert_row(line: bytes) -> tuple[str, bytes]:
    start = len(b"INSERT INTO `")
    end = line.index(b"`", start)
    values = line[end:]
    if not values.startswith(b"` VALUES ("):
        raise BackupFailed("the dump has an INSERT of a form this central does not read")
    first = values[len(b"` VALUES (") :].split(b",", 1)[0]
    return line[start:end].decode(), first


def digest(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def _write_archive(target: Path, manifest: Manifest, payload: Path, work: Path) -> None:
    """Written beside the target, synced, then linked in: the target appears whole or not at
    all, and a file that appeared meanwhile is never overwritten."""
    partial = work / f"{target.name}.partial-{uuid.uuid4().hex[:8]}"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, MANIFEST_NAME, manifest.to_json(), manifest.created_at)
            tar.add(payload, arcname=manifest.payload_name, filter=_private_member)
        raw.flush()
        os.fsync(raw.fileno())
    try:
        os.link(partial, target)
    except FileExistsError:
        raise BackupExists(f"{target} exists already: name a new backup file") from None
    sync_directory(target.parent)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, when: datetime) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    info.mtime = int(when.timestamp())
    tar.addfile(info, io.BytesIO(data))


def _private_member(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
    return info


# --- reading a backup ------------------------------------------------------------------------


def read_manifest(archive: Path) -> Manifest:
    """The backup's manifest, once the file is found to be a backup of this format."""
    with _open_archive(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        manifest_member = members.get(MANIFEST_NAME)
        if manifest_member is None or not manifest_member.isfile():
            raise BackupInvalid(f"{archive} is not a central backup (it has no manifest)")
        handle = tar.extractfile(manifest_member)
        assert handle is not None
        manifest = Manifest.from_json(handle.read(1024 * 1024))
        payload = members.get(manifest.payload_name)
        if (
            payload is None
            or not payload.isfile()
            or set(members)
            != {
                MANIFEST_NAME,
                manifest.payload_name,
            }
        ):
            raise BackupInvalid(f"{archive} does not hold exactly a manifest and its database")
        return manifest


def extract_payload(archive: Path, manifest: Manifest, directory: Path) -> Path:
    """The payload, copied into `directory` (0600) and checked against the manifest."""
    into = directory / manifest.payload_name
    sha, size = hashlib.sha256(), 0
    with _open_archive(archive) as tar:
        source = tar.extractfile(manifest.payload_name)
        assert source is not None
        fd = os.open(into, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            try:
                while chunk := source.read(CHUNK):
                    sha.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            except (tarfile.TarError, EOFError):
                raise BackupChecksumMismatch("the backup file is truncated") from None
    if size != manifest.size or sha.hexdigest() != manifest.sha256:
        raise BackupChecksumMismatch(
            f"the backup's database does not match its checksum (sha256 {sha.hexdigest()[:16]}"
            f"..., expected {manifest.sha256[:16]}...): the file is damaged",
            expected=manifest.sha256,
            actual=sha.hexdigest(),
        )
    return into


@contextmanager
def _open_archive(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(archive, mode="r:")  # noqa: SIM115 (closed below, once mapped)
    except FileNotFoundError:
        raise BackupInvalid(f"there is no file {archive}") from None
    except IsADirectoryError:
        raise BackupInvalid(f"{archive} is a directory, not a backup file") from None
    except PermissionError:
        raise BackupInvalid(f"cannot read {archive}: permission denied") from None
    except (tarfile.TarError, EOFError, OSError):
        raise BackupInvalid(f"{archive} is not a central backup (not a tar file)") from None
    try:
        yield tar
    except (tarfile.TarError, EOFError) as exc:
        raise BackupInvalid(f"{archive} is damaged: {exc}") from None
    finally:
        tar.close()


def describe(manifest: Manifest) -> dict[str, Any]:
    """The manifest as the CLI prints it."""
    return json.loads(manifest.to_json())
