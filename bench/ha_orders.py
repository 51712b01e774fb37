"""Orders through HAProxy on a Galera cluster (issue #14), next to a single central on a single
MariaDB, in the same run: 8 and 32 clients placing orders over HTTP back to back.

    python -m bench.ha_orders [--quick] [--plaintext]

Cells: *single*: one `central serve` process on one MariaDB server, clients straight to it;
*HA 1x2*: one central host (`--workers 2`) on Galera node 1, behind HAProxy; *HA 2x2*: two
hosts of 2 workers each, on Galera nodes 1 and 2, behind HAProxy. On this 2-core machine
with the load generator, Kafka, three Galera nodes and HAProxy on the same cores, this shows
the layouts' cost and gain on one machine, not how they scale across machines.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.common import (
    ROOT,
    RUN,
    Sample,
    errors_told,
    machine_facts,
    module_args,
    ms,
    run_clients,
    security_mode,
    start_kafka,
    start_mariadb,
)
from bench.orders import fresh_database, http_orders, seed
from bench.stack import central_process, serving
from harness.haproxy import haproxy_config
from harness.kafka_security import KafkaCluster

GALERA_PORT = 13620  # ports 13620 .. 13631
PROXY_PORT, CENTRAL_PORTS = 18930, (18931, 18932, 18933)


def start_galera() -> tuple[list[str], Path]:
    directory = RUN / "galera"
    script = str(ROOT / "scripts" / "mariadb")
    started = subprocess.run(
        [script, "start", "--nodes", "3", "--dir", str(directory), "--port", str(GALERA_PORT)],
        capture_output=True,
        text=True,
        check=True,
    )
    return started.stdout.strip().splitlines()[-3:], directory


def stop_galera(directory: Path) -> None:
    script = str(ROOT / "scripts" / "mariadb")
    subprocess.run([script, "stop", "--dir", str(directory)], capture_output=True, check=False)


@contextmanager
def haproxy(servers: dict[str, str]) -> Iterator[str]:
    config = RUN / "haproxy.cfg"
    config.write_text(haproxy_config(PROXY_PORT, servers))
    argv = [shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", str(config)]
    with serving("haproxy", argv, f"http://127.0.0.1:{PROXY_PORT}") as url:
        yield url


def cell(
    database_urls: list[str], kafka: KafkaCluster, hosts: int, levels: list[int], seconds: float
) -> list[Sample]:
    """`hosts` central hosts of 2 workers on database_urls[0..], behind HAProxy; or, with
    hosts == 0, one plain `central serve` on database_urls[0], clients straight to it."""
    keys = seed(database_urls[0])
    prefix = f"ha{uuid.uuid4().hex[:6]}."
    with ExitStack() as stack:
        if hosts == 0:
            url = stack.enter_context(
                central_process(database_urls[0], kafka, CENTRAL_PORTS[0], prefix)
            )
        else:
            servers = {}
            for n in range(hosts):
                central = stack.enter_context(
                    central_process(
                        database_urls[n], kafka, CENTRAL_PORTS[n], prefix, args=["--workers", "2"]
                    )
                )
                servers[f"central-{n + 1}"] = central.removeprefix("http://")
            url = stack.enter_context(haproxy(servers))
        run_clients(8, 1.0, http_orders(url, keys))  # warm: connections, caches, the JIT of none
        samples = []
        for clients in levels:
            samples.append(run_clients(clients, seconds, http_orders(url, keys)))
            print(f"hosts={hosts} c={clients} orders/s={samples[-1].rate:.0f}", file=sys.stderr)
        return samples


def galera_database(node_urls: list[str]) -> list[str]:
    """A fresh database made on node 1 (replicated): its URL on every node."""
    on_first = fresh_database("mariadb", node_urls[0])
    name = on_first.rsplit("/", 1)[1]
    return [url.rstrip("/") + "/" + name for url in node_urls]


def run(quick: bool = False, plaintext: bool = False) -> str:
    RUN.mkdir(parents=True, exist_ok=True)
    seconds = 2.0 if quick else 10.0
    levels = [8] if quick else [8, 32]
    kafka, stop_kafka = start_kafka(plaintext=plaintext)
    mariadb, stop_mariadb = start_mariadb()
    nodes, galera_dir = start_galera()
    try:
        results = {
            "single central, single MariaDB": cell(
                [fresh_database("mariadb", mariadb)], kafka, 0, levels, seconds
            ),
            "HAProxy, 1 host x 2 workers, Galera": cell(
                galera_database(nodes), kafka, 1, levels, seconds
            ),
            "HAProxy, 2 hosts x 2 workers, Galera": cell(
                galera_database(nodes), kafka, 2, levels, seconds
            ),
        }
    finally:
        stop_galera(galera_dir)
        stop_mariadb()
        stop_kafka()
    return report(results, levels, seconds, quick, plaintext)


def report(
    results: dict[str, list[Sample]],
    levels: list[int],
    seconds: float,
    quick: bool,
    plaintext: bool,
) -> str:
    base = results["single central, single MariaDB"]
    lines = [
        "| layout | clients | orders/s | / single | p50 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for layout, samples in results.items():
        for clients, sample, single in zip(levels, samples, base, strict=True):
            ratio = sample.rate / single.rate if single.rate else 0.0
            lines.append(
                f"| {layout} | {clients} | {sample.rate:.0f} | {ratio:.2f}x "
                f"| {ms(sample.pct(50))} | {ms(sample.pct(99))} | {sample.errors} |"
            )
    failed = [
        f"- {layout}, {clients} clients: {errors_told(sample)}"
        for layout, samples in results.items()
        for clients, sample in zip(levels, samples, strict=True)
        if sample.errors
    ]
    if failed:
        lines += ["", "Errors, most frequent first:", *failed]
    facts = ", ".join(f"{k} {v}" for k, v in machine_facts().items())
    return (
        f"Machine: {facts}. {seconds:.0f} s per cell{' (quick mode)' if quick else ''}.\n\n"
        "Clients place 1-3 line orders back to back over keep-alive connections, as in the "
        "orders section. *single*: one `central serve` process on one MariaDB server (no "
        "proxy). The HA layouts: `central serve --workers 2` per host, each host on its own "
        "node of a 3-node Galera cluster (state transfers by rsync; central reads causally, "
        "`wsrep_sync_wait` 1), "
        "HAProxy (deploy/haproxy/haproxy.cfg, `balance leastconn`, /readyz checks) in front. "
        "Everything shares this machine's 2 cores: one `central serve` process uses one core "
        "at most and two workers can use both, which here outweighs what Galera "
        "(certification, replication) and the proxy hop cost; 2 hosts x 2 workers only put "
        "more processes on the same cores. The figures are the layouts' cost and gain on one "
        "machine, not how they scale across machines.\n\n" + "\n".join(lines) + "\n\n"
        f"Kafka: {security_mode(plaintext)}."
    )


def main(argv: list[str] | None = None) -> None:
    args = module_args("bench.ha_orders", __doc__, argv)
    print(run(quick=args.quick, plaintext=args.plaintext))


if __name__ == "__main__":
    main()
