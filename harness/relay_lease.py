"""What end-to-end tests of several central processes look at: the relay lease's row (who
holds it: `host:pid:random`), the worker processes of `central serve --workers`, and the
JSON log lines of a central process by field."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from central.db import DatabaseClock, connect
from central.restore import close_database


@dataclass(frozen=True)
class Lease:
    owner: str
    expires_at: datetime
    database_now: datetime  # the database's clock when the row was read

    @property
    def pid(self) -> int:
        return int(self.owner.split(":")[-2])

    @property
    def held(self) -> bool:
        return self.expires_at > self.database_now


def read_lease(database_url: str) -> Lease | None:
    """The relay lease's row of central's database, SQLite or MariaDB; None before any relay
    took it."""
    db = connect(database_url)
    try:
        with db.connection_context():
            row = db.execute_sql("SELECT owner, expires_at FROM relay_lease").fetchone()
            now = DatabaseClock(db).now()
    finally:
        close_database(db)
    if row is None:
        return None
    owner, expires_at = row
    if isinstance(expires_at, str):
        expires_at = datetime.fromisoformat(expires_at)
    return Lease(owner, expires_at, now)


def worker_pids(parent: int) -> set[int]:
    """The live worker processes of `central serve --workers` (`parent`'s spawned children)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        # the command may hold spaces and parentheses: the fields follow its last ')'
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z" and b"spawn_main" in cmdline:
            pids.add(int(entry.name))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def log_events(lines: list[str], event: str) -> list[dict[str, Any]]:
    """The JSON log lines of `event`, parsed (other lines, and non-JSON ones, skipped)."""
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            found.append(record)
    return found
