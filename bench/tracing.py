"""Tracing overhead (issue #17): the steady sync latency and orders over HTTP with tracing
off, on with every trace sampled, and on with one in a hundred, measured in the same run.

    python -m bench.tracing [--quick] [--plaintext]

"On" is the standard variables given to central and the store agent:
OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/HTTP receiver inside the benchmark (it answers
200 and counts what it gets) and OTEL_TRACES_SAMPLER=parentbased_traceidratio with
OTEL_TRACES_SAMPLER_ARG 1.0 or 0.01; "off" is none of them, the default. Every cell has its
own database and topics; the settings take turns (off, 1.0, 0.01, then the other way round)
so that a slow spell of the shared machine does not fall on one setting only.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    RUN,
    Sample,
    machine_facts,
    module_args,
    ms,
    percentile,
    process_cpu_seconds,
    run_clients,
    security_mode,
    start_kafka,
)
from bench.orders import http_orders, seed
from bench.stack import agent_process, catalog_rows, central_process, seed_central, sqlite_url
from bench.sync_latency import (
    ReplicaWatcher,
    admin_headers,
    commit_times,
    last_movement,
    latencies,
    steady,
)
from harness.kafka_security import KafkaCluster

STORE = "trace-store"
SKUS = [f"TRACE-{i:05d}" for i in range(200)]
CLIENTS = 8
SYNC_CENTRAL_PORT, SYNC_AGENT_PORT, ORDERS_CENTRAL_PORT = 18960, 18961, 18962


@dataclass(frozen=True)
class Setting:
    name: str
    ratio: str | None  # OTEL_TRACES_SAMPLER_ARG; None: tracing off

    def env(self, endpoint: str) -> dict[str, str]:
        """What central and the agent get on top of their usual environment."""
        if self.ratio is None:
            return {}
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": self.ratio,
        }


OFF = Setting("off", None)
SETTINGS = (OFF, Setting("on, sampled 1.0", "1.0"), Setting("on, sampled 0.01", "0.01"))


@dataclass(frozen=True)
class Sizes:
    changes: int  # stock changes a sync cell makes, at `rate` a second
    rate: float
    seconds: float  # an orders cell's measured time, after `warmup` seconds not counted
    warmup: float
    rounds: int  # each setting measured this many times, its samples pooled


QUICK = Sizes(changes=300, rate=100.0, seconds=2.0, warmup=0.5, rounds=1)
FULL = Sizes(changes=2000, rate=100.0, seconds=5.0, warmup=1.0, rounds=2)


@dataclass
class Exported:
    """What the OTLP receiver got: export requests, their body bytes, the spans in them."""

    requests: int = 0
    size: int = 0
    spans: int = 0

    def __add__(self, other: Exported) -> Exported:
        return Exported(
            self.requests + other.requests, self.size + other.size, self.spans + other.spans
        )


class OtlpReceiver:
    """POST /v1/traces answered 200, as a collector answers it. The bodies are kept and
    decoded only when taken, between cells, so that decoding does not compete with the
    processes being measured for the machine's cores."""

    def __init__(self) -> None:
        self._bodies: list[bytes] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        keep = self._keep

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's session expects

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                keep(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")  # an empty ExportTraceServiceResponse
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet: counts only
                pass

        return Handler

    def _keep(self, body: bytes) -> None:
        with self._lock:
            self._bodies.append(body)

    def take(self) -> Exported:
        """What arrived since the last take (call it once the exporting processes ended:
        each sends what it still holds as it stops)."""
        with self._lock:
            bodies, self._bodies = self._bodies, []
        return Exported(len(bodies), sum(map(len, bodies)), sum(map(count_spans, bodies)))

    @contextmanager
    def serving(self) -> Iterator[OtlpReceiver]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


def count_spans(body: bytes) -> int:
    """Spans in one OTLP/HTTP export (protobuf, uncompressed: the exporter's default)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(
        len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans
    )


@dataclass
class Measured:
    """One setting's samples, pooled over its rounds."""

    sync: list[float] = field(default_factory=list)
    not_seen: int = 0
    orders: Sample = field(default_factory=Sample)
    exported: Exported = field(default_factory=Exported)
    central_cpu_s: float = 0.0  # central's CPU time over the orders cells' measured spans

    def add_orders(self, sample: Sample) -> None:
        self.orders.latencies += sample.latencies
        self.orders.elapsed += sample.elapsed
        self.orders.errors += sample.errors


def sync_cell(kafka: KafkaCluster, env: dict[str, str], sizes: Sizes) -> tuple[list[float], int]:
    """Central and one agent on a fresh database and topics: `sizes.changes` stock changes at
    a steady rate, each one's commit -> visible in the replica (bench.sync_latency)."""
    prefix = f"trace{uuid.uuid4().hex[:6]}."
    database_url = sqlite_url()
    central_db = Path(database_url.removeprefix("sqlite:///"))
    keys = seed_central(database_url, catalog_rows(SKUS, 10), [STORE], kafka, prefix)
    with (
        central_process(database_url, kafka, SYNC_CENTRAL_PORT, prefix, env) as central,
        agent_process(
            STORE, keys[STORE], central, kafka, SYNC_AGENT_PORT, prefix, extra_env=env
        ) as (_, replica, _pid),
        httpx.Client(base_url=central, timeout=30) as client,
    ):
        admin = admin_headers(client, database_url)
        watcher = ReplicaWatcher(replica)
        watcher.start()
        time.sleep(0.5)  # the watcher has read the replica once before the first change
        mark = last_movement(central_db)
        steady(client, admin, SKUS, sizes.changes, sizes.rate)
        commits = wait_seen(watcher, central_db, mark)
        watcher.stop.set()
        watcher.join(5)
    return latencies(watcher, commits)


def wait_seen(
    watcher: ReplicaWatcher, central_db: Path, mark: int, timeout: float = 15.0
) -> dict[tuple[str, int], float]:
    """The commits since `mark`, once the replica shows all of them or `timeout` passed (the
    report counts the rest as not seen)."""
    deadline = time.monotonic() + timeout
    while True:
        commits = commit_times(central_db, mark)
        if all(key in watcher.seen for key in commits) or time.monotonic() > deadline:
            return commits
        time.sleep(0.1)


def orders_cell(kafka: KafkaCluster, env: dict[str, str], sizes: Sizes) -> tuple[Sample, float]:
    """Central on a fresh SQLite database and topics: CLIENTS clients placing orders over
    HTTP back to back (bench.orders), after a warm-up that is not counted; with central's CPU
    seconds over the counted span."""
    prefix = f"trace{uuid.uuid4().hex[:6]}."
    database_url = sqlite_url()
    keys = seed(database_url)
    with central_process(database_url, kafka, ORDERS_CENTRAL_PORT, prefix, env) as url:
        run_clients(CLIENTS, sizes.warmup, http_orders(url, keys))
        before = process_cpu_seconds(ORDERS_CENTRAL_PORT)
        sample = run_clients(CLIENTS, sizes.seconds, http_orders(url, keys))
        return sample, process_cpu_seconds(ORDERS_CENTRAL_PORT) - before


def off_hooks_seconds(repeat: int = 200_000) -> float:
    """What the tracing hooks on one order's path cost with tracing off, in this process:
    the request middleware's check, the order.reserve use case with its annotation, the
    trace context the unit of work keeps with the outbox rows, and the trace id looked up
    for two log lines. Each returns at once when tracing is off; this says how fast."""
    from central.spans import use_case
    from central.uow import written_by
    from invwire import tracing

    if tracing.enabled():
        raise RuntimeError("the off-path measure needs tracing off in the benchmark process")

    def one_order() -> None:
        tracing.enabled()
        with use_case("order.reserve", store_id="s", lines=2, units=3) as span:
            tracing.annotate(span, order_id="o", outcome="confirmed")
        written_by()
        tracing.trace_id()
        tracing.trace_id()

    started = time.perf_counter()
    for _ in range(repeat):
        one_order()
    return (time.perf_counter() - started) / repeat


def measure(kafka: KafkaCluster, sizes: Sizes) -> dict[Setting, Measured]:
    measured = {setting: Measured() for setting in SETTINGS}
    with OtlpReceiver().serving() as receiver:
        for turn in range(sizes.rounds):
            for setting in SETTINGS if turn % 2 == 0 else SETTINGS[::-1]:
                env, got = setting.env(receiver.endpoint), measured[setting]
                lat, missing = sync_cell(kafka, env, sizes)
                got.sync += lat
                got.not_seen += missing
                got.exported += receiver.take()  # its processes have stopped: all is in
                sample, cpu_s = orders_cell(kafka, env, sizes)
                got.add_orders(sample)
                got.central_cpu_s += cpu_s
                got.exported += receiver.take()
                print(_progress(setting, lat, sample), file=sys.stderr)
    return measured


def _progress(setting: Setting, lat: list[float], sample: Sample) -> str:
    return (
        f"tracing {setting.name:17} sync p50={_ms(lat, 50)}ms p99={_ms(lat, 99)}ms "
        f"| orders/s={sample.rate:.0f} p50={_ms(sample.latencies, 50)}ms"
    )


def _ms(values: list[float], q: float) -> str:
    return ms(percentile(values, q)) if values else "-"


def _ratio(value: float, base: float) -> str:
    """value / base, or "-" when either has no samples (NaN compares false, as 0 would)."""
    if not (value > 0 and base > 0):
        return "-"
    return f"{value / base:.2f}x"


def table(measured: dict[Setting, Measured]) -> str:
    base = measured[OFF]
    lines = [
        "| tracing | sync p50 ms | / off | sync p99 ms | / off | not seen | orders/s | / off "
        "| orders p50 ms | / off | order errors | spans exported | export requests | KiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for setting, got in measured.items():
        sync50, sync99 = percentile(got.sync, 50), percentile(got.sync, 99)
        order50 = got.orders.pct(50)
        lines.append(
            f"| {setting.name} | {_ms(got.sync, 50)} "
            f"| {_ratio(sync50, percentile(base.sync, 50))} | {_ms(got.sync, 99)} "
            f"| {_ratio(sync99, percentile(base.sync, 99))} | {got.not_seen} "
            f"| {got.orders.rate:.0f} | {_ratio(got.orders.rate, base.orders.rate)} "
            f"| {_ms(got.orders.latencies, 50)} | {_ratio(order50, base.orders.pct(50))} "
            f"| {got.orders.errors} | {got.exported.spans} | {got.exported.requests} "
            f"| {got.exported.size / 1024:.0f} |"
        )
    return "\n".join(lines)


def off_check(measured: dict[Setting, Measured]) -> str:
    """The acceptance "with tracing off, nothing is exported", as this run saw it."""
    off = measured[OFF].exported
    met = off.requests == 0
    return (
        f"**Check** tracing off exports nothing: the receiver got {off.requests} requests, "
        f"{off.spans} spans -> {'met' if met else 'MISSED'}."
    )


def off_cost_check(measured: dict[Setting, Measured], hooks_s: float) -> str:
    """The acceptance "with tracing off the hot paths pay no measurable cost": what the off
    hooks take per order, next to central's CPU per order in this run's off cells."""
    off = measured[OFF]
    orders = len(off.orders.latencies)
    cpu_per_order = off.central_cpu_s / orders if orders else 0.0
    share = hooks_s / cpu_per_order if cpu_per_order else 0.0
    met = cpu_per_order > 0 and share < 0.01
    return (
        f"**Check** tracing off costs nothing measurable: the hooks an order passes with "
        f"tracing off take {hooks_s * 1e6:.2f} us (timed in-process), "
        f"{share * 100:.3f}% of the {cpu_per_order * 1000:.2f} ms of CPU central spent per order "
        f"in this run's off cells (target under 1%) -> {'met' if met else 'MISSED'}."
    )


def require_exporter() -> None:
    """The "on" settings need the OTLP exporter in this environment (central and the agent
    run from it); say so before anything starts."""
    try:
        importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        importlib.import_module("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
    except ImportError:
        raise RuntimeError(
            "the tracing benchmark needs the OTLP exporter: pip install 'invctl[otlp]'"
        ) from None


def run(quick: bool = False, plaintext: bool = False) -> str:
    require_exporter()
    RUN.mkdir(parents=True, exist_ok=True)
    sizes = QUICK if quick else FULL
    kafka, stop_kafka = start_kafka(plaintext=plaintext)
    try:
        measured = measure(kafka, sizes)
    finally:
        stop_kafka()
    return (
        report(measured, sizes, quick, plaintext)
        + "\n\n"
        + off_cost_check(measured, off_hooks_seconds())
    )


def report(measured: dict[Setting, Measured], sizes: Sizes, quick: bool, plaintext: bool) -> str:
    facts = ", ".join(f"{k} {v}" for k, v in machine_facts().items())
    rounds = "once" if sizes.rounds == 1 else f"{sizes.rounds} times, in turns, samples pooled"
    return (
        f"Machine: {facts}.{' Quick mode.' if quick else ''}\n\n"
        "Central and the store agent with tracing off (no `OTEL_*` variable), and on "
        "(`OTEL_EXPORTER_OTLP_ENDPOINT` to an OTLP/HTTP receiver in the benchmark, "
        "`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, `OTEL_TRACES_SAMPLER_ARG` 1.0 or "
        f"0.01; the batch processor's defaults). Each setting measured {rounds}, each time on "
        "a fresh SQLite database and fresh topics. *sync*: central + one agent, "
        f"{sizes.changes} stock changes at {sizes.rate:.0f}/s (`PUT /api/v1/stock/{{sku}}`), "
        "central commit -> visible in the replica, as in the sync latency section. *orders*: "
        f"{CLIENTS} clients placing 1-3 line orders over HTTP back to back for "
        f"{sizes.seconds:.0f} s (after {sizes.warmup:.1f} s not counted), as in the orders "
        "section. */ off*: the figure divided by the same figure with tracing off. *spans "
        "exported*: what the receiver decoded, from both cells.\n\n"
        + table(measured)
        + "\n\n"
        + off_check(measured)
        + f"\n\nKafka: {security_mode(plaintext)}."
    )


def main(argv: list[str] | None = None) -> None:
    args = module_args("bench.tracing", __doc__, argv)
    print(run(quick=args.quick, plaintext=args.plaintext))


if __name__ == "__main__":
    main()
