"""The `storeagent run` command line that process tests and benchmarks start an agent with:
one store, against one central and one Kafka cluster, on a loopback port."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

STOREAGENT = Path(sys.executable).parent / "storeagent"


def storeagent_run(
    store_id: str,
    *,
    central: str,
    kafka: str,
    db: Path,
    port: int,
    topic_prefix: str,
    extra: Sequence[str] = (),
) -> list[str]:
    """`kafka` is the bootstrap list; `extra` goes after the common flags (e.g. the offline
    policy's, or --api-key-file)."""
    return [
        str(STOREAGENT),
        "run",
        "--store-id",
        store_id,
        "--central",
        central,
        "--kafka",
        kafka,
        "--db",
        str(db),
        "--listen",
        f"127.0.0.1:{port}",
        "--topic-prefix",
        topic_prefix,
        *extra,
    ]
