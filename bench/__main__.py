"""Run the benchmarks and write docs/benchmarks.md.

python -m bench [--quick] [--plaintext] [NAME ...]   NAME: sync_latency orders replica cli fanout

Kafka runs with TLS, SCRAM logins and ACLs, as in production; `--plaintext` measures the same
without any of it (written to benchmarks[-quick]-plaintext.md), to show what security costs.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

from bench.common import ROOT, write_section

BENCHMARKS = {
    "sync_latency": "Sync latency: central commit to store replica",
    "orders": "Orders through HTTP",
    "replica": "Replica: apply rate, bootstrap, memory",
    "cli": "CLI start-up",
    "fanout": "Fan-out: 20 store agents on one stream",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quick, plaintext = "--quick" in argv, "--plaintext" in argv
    names = [a for a in argv if not a.startswith("-")] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"bench: unknown benchmark(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    folder = Path(os.environ.get("BENCH_OUT_DIR", ROOT / "docs"))
    target = folder / f"benchmarks{'-quick' if quick else ''}{'-plaintext' if plaintext else ''}.md"
    for name in names:
        started = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        body = module.run(quick=quick, plaintext=plaintext)
        took = time.perf_counter() - started
        write_section(BENCHMARKS[name], f"{body}\n\n_Measured in {took:.0f} s._", target)
        print(f"bench: {name} done in {took:.0f} s -> {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
