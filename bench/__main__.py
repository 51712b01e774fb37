"""Run the benchmarks: `python -m bench [NAME ...] [--quick] [--plaintext] [--out FILE]`.

Prints each benchmark's section (Markdown) to stdout; `--out docs/benchmarks.md` replaces
those sections in that file instead (the published figures are written only when asked).
Kafka runs with TLS, SCRAM logins and ACLs, as in production; `--plaintext` measures the
same without any of it, to show what security costs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import add_mode_options, services_kept, write_section

BENCHMARKS = {
    "sync_latency": "Sync latency: central commit to store replica",
    "orders": "Orders through HTTP",
    "replica": "Replica: apply rate, bootstrap, memory",
    "cli": "CLI start-up",
    "fanout": "Fan-out: 20 store agents on one stream",
    "tracing": "Tracing overhead",
    "relay_failover": "Relay failover: SIGKILL of the lease holder",
    "ha_orders": "Orders through HAProxy on a Galera cluster",
    "fleet": "Fleet view: 1,000 stores heartbeating",
    "flat_cost": "Flat cost: orders on a new database and after 1,000,000 orders",
    "allowances": "Orders with allowances on, next to off",
}


@dataclass(frozen=True)
class Run:
    names: list[str]
    quick: bool = False
    plaintext: bool = False
    out: Path | None = None


def build_parser() -> argparse.ArgumentParser:
    listed = "\n".join(f"  {name:<15} {title}" for name, title in BENCHMARKS.items())
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run invctl's benchmarks against real processes (Kafka, central, store\n"
        "agents) and print each one's Markdown section; nothing is written unless --out.",
        epilog=f"benchmarks:\n{listed}\n\nexamples:\n"
        "  python -m bench --quick                 # every one, small sizes, to stdout\n"
        "  python -m bench replica --out docs/benchmarks.md\n"
        "  python -m bench --plaintext --out docs/benchmarks-plaintext.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_mode_options(parser)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="benchmarks to run (default: all, in the order listed below)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="replace these benchmarks' sections in FILE (created if missing) instead of "
        "printing them; e.g. docs/benchmarks.md",
    )
    return parser


def parse(argv: list[str]) -> Run:
    """The command line as a `Run`; --help, or an unknown name, exits (0, 2) before anything
    runs."""
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)  # names may come after options
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        known = ", ".join(BENCHMARKS)
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (choose from {known})")
    names = list(dict.fromkeys(args.names)) or list(BENCHMARKS)
    return Run(names, quick=args.quick, plaintext=args.plaintext, out=args.out)


def main(argv: list[str] | None = None) -> int:
    run = parse(sys.argv[1:] if argv is None else argv)
    with services_kept():
        for name in run.names:
            _run_one(run, name)
    return 0


def _run_one(run: Run, name: str) -> None:
    started = time.perf_counter()
    module = importlib.import_module(f"bench.{name}")
    body = module.run(quick=run.quick, plaintext=run.plaintext)
    took = time.perf_counter() - started
    section = f"{body}\n\n_Measured in {took:.0f} s._"
    if run.out is None:
        print(f"## {BENCHMARKS[name]}\n{section}\n", flush=True)
    else:
        write_section(BENCHMARKS[name], section, run.out)
    where = run.out or "stdout"
    print(f"bench: {name} done in {took:.0f} s -> {where}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
