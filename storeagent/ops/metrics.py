"""The agent's Prometheus metrics, on a registry of its own (one per agent, none global).

Counters and histograms move as things happen (HTTP requests, sales, applied batches,
heartbeats). Gauges that mirror state (lag, staleness, central's clock offset, offline
queue, dead letters, the central circuit, sync problems, readiness) and the event totals are
read at scrape time from the replica and the loop's progress: exact, and free between scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from invwire.metrics import LATENCY_BUCKETS, HttpMetrics, observe_all
from storeagent.clock import Clock, utc_now
from storeagent.ops.vitals import SYNC_PROBLEMS, Vitals
from storeagent.upstream.resilience import Circuit, CircuitStatus

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from storeagent.sales.recovery import RecoveryStatus
    from storeagent.sync.apply import BatchResult

SYNC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http = HttpMetrics(
            r,
            requests=(
                "storeagent_http_requests_total",
                "HTTP requests to the store API by route and status",
            ),
            latency=("storeagent_http_request_duration_seconds", "Store API latency by route"),
        )
        self.orders = Counter(
            "storeagent_orders_total",
            "Sales at this store by outcome (confirmed, replayed, queued, or the error code)",
            ["outcome"],
            registry=r,
        )
        self.apply_latency = Histogram(
            "storeagent_apply_batch_duration_seconds",
            "Applying one polled batch to the replica, commit included",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sync_latency = Histogram(
            "storeagent_sync_latency_seconds",
            "From a stock change at central (occurred_at) to its commit in this replica, "
            "on central's clock as estimated from heartbeat answers",
            buckets=SYNC_BUCKETS,
            registry=r,
        )
        self.negative_latency = Counter(
            "storeagent_sync_latency_negative",
            "Applied stock events whose sync latency came out negative (observed as is): "
            "a clock, or the estimate of central's, is wrong",
            registry=r,
        )
        self.heartbeats = Counter(
            "storeagent_heartbeats_total",
            "Heartbeats sent to central by result (ok, failed)",
            ["result"],
            registry=r,
        )

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http.observe(method, route, status, seconds)

    def order(self, outcome: str) -> None:
        self.orders.labels(outcome).inc()

    def batch_applied(self, result: BatchResult, seconds: float, applied_at: datetime) -> None:
        """One histogram sample per applied stock event: a few hundred per batch at most.
        `applied_at` is on central's clock, like the events' occurred_at; a negative latency
        is observed as it is (not clamped to 0) and counted."""
        self.apply_latency.observe(seconds)
        latencies = [(applied_at - at).total_seconds() for at in result.stock_event_times]
        observe_all(self.sync_latency, latencies)
        negative = sum(1 for latency in latencies if latency < 0)
        if negative:
            self.negative_latency.inc(negative)

    def heartbeat(self, ok: bool) -> None:
        self.heartbeats.labels("ok" if ok else "failed").inc()

    def watch(self, state: WatchedState) -> None:
        """Report the state gauges and event totals, read at each scrape."""
        self.registry.register(_StateCollector(state))


@dataclass(frozen=True)
class WatchedState:
    """What the scrape-time gauges read: the agent's vital signs (on the API's replica handle),
    and the order path's circuit breaker when the agent places orders."""

    vitals: Vitals
    circuit: Callable[[], CircuitStatus] | None = None
    clock: Clock = utc_now
    # The sales recovered after central's restore (sales.recovery), when the agent sells.
    recovery: Callable[[], RecoveryStatus] | None = None
    # The store's allowances (sales.allowance_keeper's status), when the agent sells.
    allowances: Callable[[], Mapping[str, Any]] | None = None


class _StateCollector(Collector):
    def __init__(self, state: WatchedState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        readers: list[Callable[[], Iterable[Metric]]] = [
            self._lag,
            self._events,
            self._staleness,
            self._clock_offset,
            self._dead_letters,
            self._local_orders,
            self._recovery,
            self._allowances,
            self._circuit,
            self._sync_problems,
            self._ready,
        ]
        for read in readers:
            yield from _or_nothing(read)

    def _lag(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "storeagent_consumer_lag",
            "Records on the broker not yet applied to the replica",
            labels=["topic", "partition"],
        )
        lags = self._state.vitals.partition_lags()
        for tp, lag in sorted(lags.items()):
            family.add_metric([tp.topic, str(tp.partition)], lag)
        yield family

    def _events(self) -> Iterator[Metric]:
        totals = self._state.vitals.event_totals()
        yield CounterMetricFamily(
            "storeagent_events_applied",
            "Kafka events that changed the replica",
            value=totals["applied"],
        )
        yield CounterMetricFamily(
            "storeagent_events_stale",
            "Kafka events ignored as duplicates or older than the replica's version",
            value=totals["stale"],
        )

    def _staleness(self) -> Iterator[Metric]:
        staleness = self._state.vitals.staleness_s(self._state.clock())
        if staleness is not None:
            yield GaugeMetricFamily(
                "storeagent_replica_staleness_seconds",
                "Now minus the time of the newest event applied to the replica, both on "
                "central's clock; negative (not clamped) when a clock is wrong",
                value=staleness,
            )

    def _clock_offset(self) -> Iterator[Metric]:
        offset = self._state.vitals.clock_offset_s()
        if offset is not None:
            yield GaugeMetricFamily(
                "storeagent_clock_offset_seconds",
                "Central's clock minus this machine's, estimated from heartbeat answers",
                value=offset,
            )

    def _dead_letters(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "storeagent_dead_letters",
            "Kafka records that could not be applied (kept in dead_letters)",
            value=self._state.vitals.dead_letters(),
        )

    def _local_orders(self) -> Iterator[Metric]:
        counts = self._state.vitals.local_orders()
        yield GaugeMetricFamily(
            "storeagent_offline_queue_depth",
            "Sales accepted offline and waiting for central",
            value=counts.queued,
        )
        yield GaugeMetricFamily(
            "storeagent_offline_rejected_orders",
            "Sales taken offline that central then refused: staff must see to them",
            value=counts.rejected_offline,
        )

    def _recovery(self) -> Iterator[Metric]:
        if self._state.recovery is None:
            return
        status = self._state.recovery()
        yield GaugeMetricFamily(
            "storeagent_sales_to_recover",
            "Sales confirmed by an older incarnation of central, not yet sent to the restored one",
            value=status["to_check"],
        )
        yield GaugeMetricFamily(
            "storeagent_sales_unrecovered",
            "Sales a restored central lost and could not take again: the customer has the "
            "goods, central lists them for review",
            value=status["unrecovered"],
        )

    def _allowances(self) -> Iterator[Metric]:
        if self._state.allowances is None:
            return
        held = self._state.allowances()
        yield GaugeMetricFamily(
            "storeagent_allowance_units_held",
            "Units central holds for this store in its live allowances, as it last said",
            value=held["units_held"],
        )
        yield GaugeMetricFamily(
            "storeagent_allowance_units_left",
            "Units this store may still sell offline under its allowances",
            value=held["units_left"],
        )
        yield GaugeMetricFamily(
            "storeagent_allowance_units_unreplayed",
            "Units sold offline under allowances that central has not booked yet",
            value=held["units_waiting_replay"],
        )
        yield CounterMetricFamily(
            "storeagent_allowance_units_sold",
            "Units sold offline under allowances (final sales)",
            value=held["units_sold"],
        )

    def _circuit(self) -> Iterator[Metric]:
        if self._state.circuit is None:
            return
        current = self._state.circuit()["circuit"]
        family = GaugeMetricFamily(
            "storeagent_central_circuit",
            "The order path's circuit breaker to central: 1 for its current state",
            labels=["state"],
        )
        for state in Circuit:
            family.add_metric([state.value], 1.0 if state.value == current else 0.0)
        yield family

    def _sync_problems(self) -> Iterator[Metric]:
        current = {problem.code for problem in self._state.vitals.problems()}
        family = GaugeMetricFamily(
            "storeagent_sync_problem",
            "1 while this keeps the replica from following Kafka: kafka.auth_failed, "
            "kafka.not_authorized, apply_failing, kafka.log_behind",
            labels=["problem"],
        )
        for code in SYNC_PROBLEMS:
            family.add_metric([code], 1.0 if code in current else 0.0)
        yield family

    def _ready(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "storeagent_ready",
            "1 while /readyz answers 200",
            value=float(self._state.vitals.ready()),
        )


def _or_nothing(read: Callable[[], Iterable[Metric]]) -> list[Metric]:
    try:
        return list(read())
    except Exception:  # a scrape during a database hiccup reports less, not an error
        return []
