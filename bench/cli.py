"""CLI speed: `invctl --help` and `invctl stock show SKU` against a local agent, next to
`python -c pass` and `python -c "import httpx"`, measured in the same run.

    python -m bench.cli [--quick] [--plaintext]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import uuid

from bench.common import (
    BIN,
    RUN,
    machine_facts,
    module_args,
    ms,
    security_mode,
    start_kafka,
    verdict,
)
from bench.stack import agent_process, catalog_rows, central_process, seed_central, sqlite_url


def timed(argv: list[str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        samples.append(time.perf_counter() - started)
    return samples


def run(quick: bool = False, plaintext: bool = False) -> str:
    RUN.mkdir(parents=True, exist_ok=True)
    runs = 5 if quick else 20
    python = sys.executable
    rows = [
        ("python -c pass", timed([python, "-c", "pass"], runs)),
        ('python -c "import httpx"', timed([python, "-c", "import httpx"], runs)),
        ("invctl --help", timed([str(BIN / "invctl"), "--help"], runs)),
    ]
    kafka, stop_kafka = start_kafka(plaintext=plaintext)
    prefix = f"cli{uuid.uuid4().hex[:6]}."
    try:
        database_url = sqlite_url()
        catalog = catalog_rows(["MILK-1L"], 40)
        keys = seed_central(database_url, catalog, ["cli-store"], kafka, prefix)
        with (
            central_process(database_url, kafka, 18970, prefix) as central,
            agent_process("cli-store", keys["cli-store"], central, kafka, 18971, prefix) as (
                agent,
                _,
                _,
            ),
        ):
            argv = [str(BIN / "invctl"), "--agent", agent, "stock", "show", "MILK-1L"]
            rows.append(("invctl stock show MILK-1L (local agent)", timed(argv, runs)))
    finally:
        stop_kafka()
    return f"{report(rows, runs, quick)}\n\nKafka: {security_mode(plaintext)}."


def report(rows: list[tuple[str, list[float]]], runs: int, quick: bool) -> str:
    medians = {name: statistics.median(samples) for name, samples in rows}
    httpx_import = medians['python -c "import httpx"']
    facts = ", ".join(f"{k} {v}" for k, v in machine_facts().items())
    lines = [
        f"Machine: {facts}.{' Quick mode.' if quick else ''} Median of {runs} runs each, "
        "wall time of the whole process. Target: `invctl --help` within 3x of "
        '`python -c "import httpx"`.',
        "",
        "| command | median ms | min ms | / import httpx |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, samples in rows:
        lines.append(
            f"| `{name}` | {ms(medians[name])} | {ms(min(samples))} "
            f"| {medians[name] / httpx_import:.2f}x |"
        )
    ratio = medians["invctl --help"] / httpx_import
    lines += [
        "",
        verdict('`invctl --help` / `python -c "import httpx"`', ratio, "at most 3", ratio <= 3),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = module_args("bench.cli", __doc__, argv)
    print(run(quick=args.quick, plaintext=args.plaintext))


if __name__ == "__main__":
    main()
