"""The composition root: settings -> database, clock, relay, token config."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import peewee

from central import migrations, models
from central.db import connect
from central.metrics import Metrics
from central.outbox import Publisher, Relay, outbox_backlog
from central.security import TokenConfig
from central.services.fleet import LagReader
from central.settings import Settings
from central.uow import Clock, SystemClock, UnitOfWork
from invwire.logs import EventLog

log = EventLog("central")


@dataclass
class Central:
    settings: Settings
    db: peewee.Database
    clock: Clock
    tokens: TokenConfig
    relay: Relay | None = None
    metrics: Metrics = field(default_factory=Metrics)
    lag_reader: LagReader | None = None
    _relay_thread: threading.Thread | None = field(default=None, repr=False)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.db, self.clock, self.relay.wake if self.relay else None)

    def start_relay(self) -> None:
        if self.relay is None or self._relay_thread is not None:
            return
        self._relay_thread = threading.Thread(target=self.relay.run, name="relay", daemon=True)
        self._relay_thread.start()

    def stop_relay(self, timeout: float = 10.0) -> None:
        if self.relay is not None and self._relay_thread is not None:
            self.relay.stop()
            self._relay_thread.join(timeout)
            self._relay_thread = None

    def close(self) -> None:
        self.stop_relay()
        if hasattr(self.db, "close_all"):
            self.db.close_all()
        elif not self.db.is_closed():
            self.db.close()


def open_database(settings: Settings) -> peewee.Database:
    db = connect(settings.database_url)
    db.bind(models.ALL_MODELS, bind_refs=False, bind_backrefs=False)
    migrations.migrate(db)
    return db


def bootstrap(
    settings: Settings,
    *,
    publisher: Publisher | None = None,
    clock: Clock | None = None,
    with_relay: bool | None = None,
) -> Central:
    clock = clock or SystemClock()
    db = open_database(settings)
    tokens = TokenConfig(
        secret=settings.jwt_secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.token_ttl_seconds,
    )
    central = Central(settings, db, clock, tokens)
    relay_wanted = settings.relay if with_relay is None else with_relay
    if relay_wanted:
        central.relay = build_relay(settings, db, clock, publisher, central.metrics)
    central.metrics.watch_backlog(lambda: outbox_backlog(db))
    if settings.kafka:
        from central.kafka import KafkaLagReader

        central.lag_reader = KafkaLagReader(settings.kafka, settings.topic_prefix)
    return central


def build_relay(
    settings: Settings,
    db: peewee.Database,
    clock: Clock,
    publisher: Publisher | None = None,
    metrics: Metrics | None = None,
) -> Relay | None:
    if publisher is None:
        if not settings.kafka:
            log.warning("relay.disabled", reason="no Kafka configured: events wait in the outbox")
            return None
        from central.kafka import KafkaPublisher

        publisher = KafkaPublisher(
            settings.kafka, settings.topic_prefix, settings.replication_factor
        )
    return Relay(
        db,
        publisher,
        clock,
        poll_seconds=settings.relay_poll_seconds,
        retention_seconds=settings.outbox_retention_seconds,
        metrics=metrics,
    )
