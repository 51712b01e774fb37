"""Shared benchmark plumbing: services, timing, percentiles, machine facts, report files."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from harness.kafka_security import KafkaCluster
from harness.proc import pids_where

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run" / "bench"
BIN = Path(sys.executable).parent


@dataclass
class Sample:
    """Latencies (seconds) of operations done by `clients` workers over `elapsed` seconds."""

    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)  # first words of each error

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float:
        return percentile(self.latencies, q)


def error_kind(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:80]}"


def errors_told(sample: Sample) -> str:
    """The errors of a sample in a few words, most frequent first ('' when none)."""
    kinds = sample.error_kinds.most_common(3)
    return "; ".join(f"{count} x {kind}" for kind, count in kinds)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def run_clients(
    clients: int, seconds: float, make_worker: Callable[[int], Callable[[], None]]
) -> Sample:
    """`clients` threads, each calling its operation back to back for `seconds`."""
    sample = Sample()
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    barrier = threading.Barrier(clients + 1)

    def loop(index: int) -> None:
        operation = make_worker(index)
        own: list[float] = []
        kinds: Counter[str] = Counter()
        barrier.wait()
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                operation()
            except Exception as exc:  # counted, not fatal: the report shows count and kinds
                kinds[error_kind(exc)] += 1
                continue
            own.append(time.perf_counter() - started)
        with lock:
            sample.latencies.extend(own)
            sample.errors += kinds.total()
            sample.error_kinds.update(kinds)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    sample.elapsed = time.perf_counter() - began
    if sample.errors:
        print(f"{clients} clients: {errors_told(sample)}", file=sys.stderr)
    return sample


def serving_pid(port: int) -> int:
    """The process serving on `port`: its command line holds `--port PORT`, as bench.stack
    starts central."""
    wanted = str(port).encode()
    for pid in pids_where(lambda argv: b"--port" in argv and wanted in argv):
        return pid
    raise RuntimeError(f"no process serving on port {port}")


def process_cpu_seconds(port: int) -> float:
    """User + system CPU seconds of the process serving on `port`, read from /proc."""
    return cpu_seconds([serving_pid(port)])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes, read from /proc (one gone counts 0)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def process_memory_kib(port: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (the peak so far) of the process serving on `port`."""
    status = Path(f"/proc/{serving_pid(port)}/status").read_text()
    wanted = ("VmRSS", "VmHWM")
    return {
        name: int(value.split()[0])
        for name, value in (line.split(":", 1) for line in status.splitlines() if ":" in line)
        if name in wanted
    }


def machine_facts() -> dict[str, str]:
    facts = {
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import kafka

        facts["kafka-python"] = kafka.__version__
    except ImportError:
        pass
    facts["sqlite"] = __import__("sqlite3").sqlite_version
    mariadb = _first_line(["mariadbd", "--version"]) or _first_line(
        ["/usr/sbin/mariadbd", "--version"]
    )
    if mariadb:
        facts["mariadb"] = mariadb
    pom = (ROOT / "scripts" / "kafka.d" / "pom.xml").read_text()
    facts["kafka broker"] = pom.split("<kafka.version>")[1].split("<")[0]
    return facts


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return ""
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


class _Kept:
    """Services kept up across benchmarks (services_kept()): their real stops, by name."""

    active = False
    stops: dict[str, Callable[[], None]] = {}


@contextmanager
def services_kept() -> Iterator[None]:
    """Inside it, the Kafka clusters and the MariaDB server a benchmark starts stay up until
    it ends: `python -m bench` runs its benchmarks on them and pays each start once (a start
    of a running one is a no-op). Each benchmark still makes its own topics and databases."""
    _Kept.active = True
    try:
        yield
    finally:
        stops = list(_Kept.stops.values())
        _Kept.active, _Kept.stops = False, {}
        for stop in reversed(stops):
            stop()


def _kept(name: str, stop: Callable[[], None]) -> Callable[[], None]:
    """`stop`, or a no-op while services are kept (the real one then runs at the end)."""
    if not _Kept.active:
        return stop
    _Kept.stops.setdefault(name, stop)
    return lambda: None


def start_kafka(
    name: str = "kafka", port: int = 29092, plaintext: bool = False
) -> tuple[KafkaCluster, Callable[[], None]]:
    """A one-node cluster in RUN/NAME-MODE: TLS + SCRAM + ACLs like production, or with
    `plaintext` none of it (to measure what security costs). Uses ports P, P+100 and P+200."""
    security = "plaintext" if plaintext else "sasl_ssl"
    cluster = RUN / f"{name}-{security}"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "kafka"),
            "start",
            "--dir",
            str(cluster),
            "--port",
            str(port),
            "--security",
            security,
        ],
        capture_output=True,
        text=True,
        check=True,
    )

    def stop() -> None:
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "kafka"), "stop", "--dir", str(cluster)],
            capture_output=True,
            check=False,
        )

    clients = KafkaCluster.from_client_env(cluster / "client.env", RUN / f"{name}-clients")
    return clients, _kept(str(cluster), stop)


def security_mode(plaintext: bool) -> str:
    """How the benchmark's Kafka clients connect, for the report."""
    return "plaintext (no TLS, logins or ACLs)" if plaintext else "TLS, SCRAM-SHA-512 logins, ACLs"


def start_mariadb(port: int = 13406) -> tuple[str, Callable[[], None]]:
    directory = RUN / "mariadb"
    started = subprocess.run(
        [str(ROOT / "scripts" / "mariadb"), "start", "--dir", str(directory), "--port", str(port)],
        capture_output=True,
        text=True,
        check=True,
    )

    def stop() -> None:
        subprocess.run(
            [str(ROOT / "scripts" / "mariadb"), "stop", "--dir", str(directory)],
            capture_output=True,
            check=False,
        )

    return started.stdout.strip().splitlines()[-1], _kept(str(directory), stop)


def add_mode_options(parser: argparse.ArgumentParser) -> None:
    """--quick and --plaintext: `python -m bench` and each benchmark module's own `main`."""
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="Kafka without TLS, logins or ACLs (to measure what security costs)",
    )


def module_args(prog: str, doc: str | None, argv: list[str] | None) -> argparse.Namespace:
    """The command line of `python -m bench.NAME`: --help prints the module's docstring and
    runs nothing."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {prog}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_mode_options(parser)
    return parser.parse_args(argv)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def write_section(title: str, body: str, path: Path = ROOT / "docs" / "benchmarks.md") -> None:
    """Replace (or append) the `## title` section of the benchmarks page."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    marker = f"\n## {title}\n"
    if marker in text:
        head, rest = text.split(marker, 1)
        tail = rest.split("\n## ", 1)
        text = head + marker + body.rstrip() + "\n" + ("\n## " + tail[1] if len(tail) > 1 else "")
    else:
        text = text.rstrip() + "\n" + marker + body.rstrip() + "\n"
    path.write_text(text)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(name: str, value: float, target: str, met: bool) -> str:
    """One line that says plainly whether a design target was met in this run."""
    return f"**Target** {name}: {target}; this run {value:.2f} -> {'met' if met else 'MISSED'}."


def wait_published(url: str, timeout: float = 120.0) -> None:
    """Until the central at `url` has published its whole outbox (invctl_outbox_backlog 0)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=10) as client:
        while time.monotonic() < deadline:
            if outbox_backlog(client.get("/metrics").text) == 0:
                return
            time.sleep(0.05)
    raise RuntimeError(f"{url}: the outbox was not published within {timeout:g} s")


def outbox_backlog(metrics: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith("invctl_outbox_backlog "):
            return float(line.split()[1])
    return None
