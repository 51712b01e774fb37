"""Central's Prometheus metrics, on a registry of its own (one per Central, none global)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

import peewee
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from invwire.logs import EventLog
from invwire.metrics import LATENCY_BUCKETS, HttpMetrics

if TYPE_CHECKING:
    from central.services.fleet import StoreHealth

log = EventLog("central.metrics")


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        counter, gauge = partial(Counter, registry=r), partial(Gauge, registry=r)
        latency_histogram = partial(Histogram, buckets=LATENCY_BUCKETS, registry=r)
        self.http = HttpMetrics(
            r,
            requests=("invctl_http_requests_total", "HTTP requests by route and status"),
            latency=("invctl_http_request_duration_seconds", "HTTP request latency by route"),
        )
        self.orders = counter(
            "invctl_orders_total",
            "Order requests by outcome (confirmed, replayed, insufficient, refused, cancelled)",
            ["outcome"],
        )
        self.recovered = counter(
            "invctl_orders_recovered_total",
            "Sales sent back by the stores after a restore, by outcome (present, recovered, "
            "unrecovered, conflict)",
            ["outcome"],
        )
        self.allowances = counter(
            "invctl_allowances_total",
            "Allowance events an operator watches: written_off (units given back without "
            "the store's statement), statement_mismatch (a store said it sold fewer units "
            "than central booked)",
            ["outcome"],
        )
        self.stock_conflicts = counter(
            "invctl_stock_conflicts_total",
            "Stock changes refused: not enough or below zero",
            ["code"],
        )
        self.published = counter(
            "invctl_outbox_published_total", "Outbox events published to Kafka"
        )
        self.publish_latency = latency_histogram(
            "invctl_outbox_publish_latency_seconds", "From commit to Kafka acknowledgement"
        )
        self.relay_failures = counter(
            "invctl_outbox_relay_failures_total", "Relay rounds that failed and were retried"
        )
        self.up = gauge("invctl_central_up", "1 while the process serves")
        self.up.set(1)
        self.republishes = counter(
            "invctl_relay_republishes_total",
            "Times the relay found Kafka's log holding less than central's rows and "
            "republished central's whole state",
        )
        self.relay_failing = gauge(
            "invctl_relay_failing",
            "1 while an event has waited in the outbox longer than "
            "relay_failing_after_seconds (no relay publishes); NaN while the database "
            "does not answer",
        )

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http.observe(method, route, status, seconds)

    def watch_backlog(self, backlog: Callable[[], int]) -> None:
        """The outbox backlog is counted at scrape time, so it is exact and costs nothing idle."""
        self.registry.register(
            _CountCollector(
                "invctl_outbox_backlog",
                "Committed events not yet published to Kafka",
                backlog,
                "backlog",
            )
        )

    def watch_unrecovered(self, count: Callable[[], int]) -> None:
        """Unrecovered orders (left for review after a restore), counted at scrape time."""
        self.registry.register(
            _CountCollector(
                "invctl_orders_unrecovered",
                "Sales a store sent back after a restore that central could not take again: "
                "left for review (GET /orders?status=unrecovered) until an admin cancels them",
                count,
                "unrecovered",
            )
        )

    def watch_relay(self, failing: Callable[[], bool]) -> None:
        """Whether the relay is failing, asked at scrape time (outbox.relay_state)."""

        def value() -> float:
            try:
                return 1.0 if failing() else 0.0
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                log.warning("metrics.relay_unavailable", error=str(exc)[:200])
                return math.nan

        self.relay_failing.set_function(value)

    def watch_agents(self, duplicates: Callable[[], Mapping[str, list[str]]]) -> None:
        """Stores with agent processes running at once, read at scrape time (for each store,
        their instance ids: services.fleet.duplicate_agents)."""
        self.registry.register(_DuplicateAgentsCollector(duplicates))

    def watch_fleet(
        self, health: Callable[[], Sequence[StoreHealth]], states: Sequence[str]
    ) -> None:
        """Each active store's state and heartbeat age, read from the database at scrape time
        (services.fleet.active_store_health): central exports them, so they stay when an
        agent stops (its own metrics vanish with it)."""
        self.registry.register(_FleetCollector(health, states))


class _CountCollector(Collector):
    """A gauge counted in the database at each scrape: `what` names it in the log line of a
    scrape that found the database unavailable (which reports no value, not an error)."""

    def __init__(self, name: str, documentation: str, count: Callable[[], int], what: str):
        self._name, self._documentation = name, documentation
        self._count, self._what = count, what

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation)
        try:
            family.add_metric([], float(self._count()))
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            log.warning(f"metrics.{self._what}_unavailable", error=str(exc)[:200])
            return
        yield family


class _DuplicateAgentsCollector(Collector):
    def __init__(self, duplicates: Callable[[], Mapping[str, list[str]]]) -> None:
        self._duplicates = duplicates

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "invctl_store_duplicate_agents",
            "1 while agent processes run at once for the store (duplicate_agents in the "
            "fleet view): an operator mistake",
            labels=["store"],
        )
        try:
            duplicates = self._duplicates()
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            log.warning("metrics.agents_unavailable", error=str(exc)[:200])
            return
        for store, instance_ids in sorted(duplicates.items()):
            family.add_metric([store], 1.0 if instance_ids else 0.0)
        yield family


class _FleetCollector(Collector):
    def __init__(self, health: Callable[[], Sequence[StoreHealth]], states: Sequence[str]) -> None:
        self._health = health
        self._states = list(states)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        age = GaugeMetricFamily(
            "invctl_store_heartbeat_age_seconds",
            "Seconds since central last accepted a heartbeat from the store's agent, on "
            "central's clock (no sample: never heard from)",
            labels=["store"],
        )
        state = GaugeMetricFamily(
            "invctl_store_state",
            "1 for the store's state in the fleet view (ok, not_ready, stale, down, "
            "auth_failed, never_seen), 0 for the others; active stores only",
            labels=["store", "state"],
        )
        try:
            stores = self._health()
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            log.warning("metrics.fleet_unavailable", error=str(exc)[:200])
            return
        for store in stores:
            if store.seconds_since_seen is not None:
                age.add_metric([store.store_id], store.seconds_since_seen)
            for name in self._states:
                state.add_metric([store.store_id, name], 1.0 if store.state == name else 0.0)
        yield age
        yield state
