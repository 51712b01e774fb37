"""Where a machine's CPU goes while it serves orders: CPU seconds of central (its process and
any workers it started), the MariaDB server, the Kafka broker and the load generator, and
how busy the whole machine was, all read from /proc around one measured run."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import RUN, cpu_seconds, serving_pid
from harness.proc import pids_where

# part -> the pids it is made of (looked up at each reading: central's workers may change)
Parts = Mapping[str, Callable[[], list[int]]]


def process_tree(pid: int) -> list[int]:
    """`pid` and every process descended from it."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pending.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue  # gone meanwhile
    return found


def machine_ticks() -> tuple[int, int]:
    """(busy, all) ticks of every core since boot: all but idle and iowait is busy."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def in_run_dir(program: bytes) -> Callable[[], list[int]]:
    """Processes running `program` with an argument under the benchmarks' RUN directory (the
    MariaDB server and Kafka broker that bench.common started)."""
    run = str(RUN).encode()
    return lambda: pids_where(
        lambda argv: any(program in a for a in argv) and any(run in a for a in argv)
    )


def order_parts(central_port: int) -> dict[str, Callable[[], list[int]]]:
    return {
        "central": lambda: process_tree(serving_pid(central_port)),
        "mariadb": in_run_dir(b"mariadbd"),
        "kafka": in_run_dir(b"kafka.Kafka"),
        "load generator": lambda: [os.getpid()],
    }


@dataclass
class Spent:
    """CPU seconds each part spent, and the machine's busy share, over one run."""

    seconds: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0  # 0..1 of all cores

    def per_unit_ms(self, units: int) -> dict[str, float]:
        return {part: s / units * 1000 for part, s in self.seconds.items()} if units else {}


@contextmanager
def metered(parts: Parts) -> Iterator[Spent]:
    """Yields a Spent that is filled in when the block ends."""
    spent = Spent()
    before = {part: cpu_seconds(pids()) for part, pids in parts.items()}
    busy_before, all_before = machine_ticks()
    yield spent
    busy_after, all_after = machine_ticks()
    for part, pids in parts.items():
        spent.seconds[part] = cpu_seconds(pids()) - before[part]
    spent.machine_busy = (busy_after - busy_before) / max(1, all_after - all_before)
