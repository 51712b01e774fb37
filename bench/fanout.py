"""Fan-out: 20 store agents on this machine consume one stream while central takes a steady
write rate; reports the slowest replica's lag (events behind) during the run and how long the
last agent takes to catch up once writes stop.

    python -m bench.fanout [--quick] [--plaintext]
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import ExitStack

import httpx

from bench.common import RUN, machine_facts, module_args, percentile, security_mode, start_kafka
from bench.stack import agent_process, catalog_rows, central_process, seed_central, sqlite_url
from bench.sync_latency import admin_headers


def total_lag(client: httpx.Client, url: str) -> int:
    report = client.get(f"{url}/sync/status", timeout=5).json()
    return sum(int(p.get("lag") or 0) for p in report.get("partitions") or [])


def sample_lags(agents: list[str], stop: threading.Event, samples: list[int]) -> None:
    with httpx.Client() as client:
        while not stop.is_set():
            samples.append(max(total_lag(client, url) for url in agents))
            time.sleep(0.5)


def write_steadily(
    central: str, headers: dict[str, str], skus: list[str], rate: float, seconds: float
) -> int:
    sent, interval = 0, 1 / rate
    next_at, end = time.perf_counter(), time.perf_counter() + seconds
    with httpx.Client(base_url=central, timeout=30) as client:
        while time.perf_counter() < end:
            sku = skus[sent % len(skus)]
            client.put(f"/api/v1/stock/{sku}", json={"quantity": sent}, headers=headers)
            sent += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
    return sent


def catch_up(agents: list[str], timeout: float = 120) -> float:
    started = time.perf_counter()
    with httpx.Client() as client:
        while any(total_lag(client, url) for url in agents):
            if time.perf_counter() - started > timeout:
                return float("inf")
            time.sleep(0.1)
    return time.perf_counter() - started


def run(quick: bool = False, plaintext: bool = False) -> str:
    RUN.mkdir(parents=True, exist_ok=True)
    count, rate, seconds = (5, 20.0, 5.0) if quick else (20, 50.0, 20.0)
    stores = [f"fan-{i:02d}" for i in range(count)]
    skus = [f"FAN-{i:03d}" for i in range(100)]
    kafka, stop_kafka = start_kafka(plaintext=plaintext)
    prefix = f"fan{uuid.uuid4().hex[:6]}."
    try:
        database_url = sqlite_url()
        keys = seed_central(database_url, catalog_rows(skus, 10), stores, kafka, prefix)
        with ExitStack() as stack, central_process(database_url, kafka, 18980, prefix) as central:
            agents = [
                stack.enter_context(agent_process(s, keys[s], central, kafka, 19000 + i, prefix))[0]
                for i, s in enumerate(stores)
            ]
            with httpx.Client(base_url=central) as client:
                headers = admin_headers(client, database_url)
            stop = threading.Event()
            lags: list[int] = []
            sampler = threading.Thread(target=sample_lags, args=(agents, stop, lags), daemon=True)
            sampler.start()
            sent = write_steadily(central, headers, skus, rate, seconds)
            stop.set()
            sampler.join(10)
            drained = catch_up(agents)
    finally:
        stop_kafka()
    report_text = report(count, rate, seconds, sent, lags, drained, quick)
    return f"{report_text}\n\nKafka: {security_mode(plaintext)}."


def report(
    count: int, rate: float, seconds: float, sent: int, lags: list[int], drained: float, quick: bool
) -> str:
    facts = ", ".join(f"{k} {v}" for k, v in machine_facts().items())
    return "\n".join(
        [
            f"Machine: {facts}.{' Quick mode.' if quick else ''} {count} agent processes, one "
            f"central, one broker, all on this machine; {sent} stock changes at {rate:.0f}/s for "
            f"{seconds:.0f} s; every 0.5 s the largest total lag (events behind) among the agents.",
            "",
            "| agents | changes | slowest lag p50 | slowest lag p95 | slowest lag max "
            "| last agent caught up after writes stopped |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {count} | {sent} | {percentile([float(x) for x in lags], 50):.0f} "
            f"| {percentile([float(x) for x in lags], 95):.0f} | {max(lags, default=0)} "
            f"| {drained:.2f} s |",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    args = module_args("bench.fanout", __doc__, argv)
    print(run(quick=args.quick, plaintext=args.plaintext))


if __name__ == "__main__":
    main()
