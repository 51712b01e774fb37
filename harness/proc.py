"""Processes found by their command line, read from /proc (benchmarks and tests alike)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def pids_where(argv_matches: Callable[[list[bytes]], bool]) -> list[int]:
    """The running processes whose argv (as bytes, NUL-split) `argv_matches`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if argv_matches(argv):
            found.append(int(entry.name))
    return found
