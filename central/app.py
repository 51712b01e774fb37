"""The composition root: settings -> database, clock, relay, Kafka identities, token config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import peewee

from central import migrations, models
from central.allowance_sweep import AllowanceSweeper
from central.db import DatabaseClock, connect
from central.domain.kafka_access import relay_grants
from central.epochs import INITIAL_EPOCH, current_epoch
from central.kafka_position import PublishedPositions
from central.metrics import Metrics
from central.outbox import Publisher, Relay, TopicLog, events_stuck, outbox_backlog
from central.revocations import RevocationRetrier
from central.security import TokenConfig
from central.services.fleet import ACTIVE_STATES, active_store_health, duplicate_agents
from central.services.fleet_lags import FleetLags
from central.services.identities import KafkaIdentities, grant_store_access
from central.services.known_keys import KnownKeys
from central.services.recovery import unrecovered_count
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
    fleet_lags: FleetLags | None = None  # None: no Kafka configured
    identities: KafkaIdentities | None = None
    revocations: RevocationRetrier | None = None
    sweeper: AllowanceSweeper | None = None
    known_keys: KnownKeys = field(default_factory=KnownKeys)
    # Read once at start: a restore (or confirm-restore) needs every central stopped.
    epoch: int = INITIAL_EPOCH

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.db, self.clock, self.relay.wake if self.relay else None)

    def start_relay(self) -> None:
        if self.relay is not None:
            self.relay.start()

    def stop_relay(self, timeout: float = 10.0) -> None:
        if self.relay is not None:
            self.relay.join(timeout)

    def start_revocations(self) -> None:
        if self.revocations is not None:
            self.revocations.start()

    def stop_revocations(self, timeout: float = 10.0) -> None:
        if self.revocations is not None:
            self.revocations.join(timeout)

    def start_sweeper(self) -> None:
        if self.sweeper is not None:
            self.sweeper.start()

    def stop_sweeper(self, timeout: float = 10.0) -> None:
        if self.sweeper is not None:
            self.sweeper.join(timeout)

    def close(self) -> None:
        self.stop_relay()
        self.stop_revocations()
        self.stop_sweeper()
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
    identities: KafkaIdentities | None = None,
) -> Central:
    """`clock`: the system's when None. A clock given (a test's) also times the relay's
    lease; otherwise the database's clock does (build_relay)."""
    lease_clock = clock
    clock = clock or SystemClock()
    db = open_database(settings)
    tokens = TokenConfig(
        secret=settings.jwt_secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.token_ttl_seconds,
    )
    central = Central(settings, db, clock, tokens, epoch=current_epoch(db))
    central.identities = identities or build_identities(settings)
    central.sweeper = AllowanceSweeper(central.uow, settings.allowance_margin_s)
    if central.identities is not None:
        central.revocations = RevocationRetrier(central.uow, central.identities)
    relay_wanted = settings.relay if with_relay is None else with_relay
    if relay_wanted:
        central.relay = build_relay(
            settings,
            db,
            clock,
            publisher,
            central.metrics,
            central.identities,
            central.epoch,
            lease_clock=lease_clock,
        )
    central.metrics.watch_backlog(lambda: outbox_backlog(db))
    central.metrics.watch_unrecovered(lambda: unrecovered_count(central.uow()))
    if settings.kafka or central.relay is not None:
        failing_after = settings.relay_failing_after_seconds
        central.metrics.watch_relay(lambda: events_stuck(db, clock, failing_after))
    central.metrics.watch_agents(lambda: duplicate_agents(central.uow()))
    central.metrics.watch_fleet(lambda: active_store_health(central.uow()), ACTIVE_STATES)
    if settings.kafka:
        from central.kafka import KafkaLagReader, client_config

        reader = KafkaLagReader(
            settings.kafka, settings.topic_prefix, client_config(settings, admin=True)
        )
        central.fleet_lags = FleetLags(reader, clock)
    return central


def build_identities(settings: Settings) -> KafkaIdentities | None:
    """The admin's adapter that makes the stores' Kafka users; None (logged) without one."""
    if not settings.kafka_admin:
        reason = "no Kafka configured" if not settings.kafka else "no admin credential"
        log.info("kafka.identities_disabled", reason=reason)
        return None
    from central.kafka import KafkaAdminIdentities, client_config

    return KafkaAdminIdentities(
        settings.kafka,
        client_config(settings, admin=True),
        settings.kafka_sasl_mechanism,
        settings.topic_prefix,
    )


def build_relay(
    settings: Settings,
    db: peewee.Database,
    clock: Clock,
    publisher: Publisher | None = None,
    metrics: Metrics | None = None,
    identities: KafkaIdentities | None = None,
    epoch: int = INITIAL_EPOCH,
    *,
    lease_clock: Clock | None = None,
) -> Relay | None:
    """`lease_clock`: the database's when None: every host of a deployment shares it, their
    own clocks may disagree (central.outbox, the lease)."""
    topic_log: TopicLog | None = None
    positions: PublishedPositions | None = None
    if publisher is None:
        if not settings.kafka:
            log.warning("relay.disabled", reason="no Kafka configured: events wait in the outbox")
            return None
        from central.kafka import KafkaPublisher, client_config

        publisher = KafkaPublisher(
            settings.kafka,
            settings.topic_prefix,
            settings.replication_factor,
            security=client_config(settings),
            admin_security=client_config(settings, admin=True),
            prepare=relay_access(settings, identities, db),
        )
        topic_log = publisher
        positions = build_positions(settings)
    return Relay(
        db,
        publisher,
        clock,
        poll_seconds=settings.relay_poll_seconds,
        leader_poll_seconds=settings.relay_leader_poll_seconds,
        gather_seconds=settings.relay_gather_seconds,
        retention_seconds=settings.outbox_retention_seconds,
        metrics=metrics,
        topic_log=topic_log,
        audit_seconds=settings.relay_audit_seconds,
        epoch=epoch,
        positions=positions,
        lease_seconds=settings.relay_lease_seconds,
        lease_clock=lease_clock or DatabaseClock(db),
    )


# Short: at start, an unreachable Kafka delays `central serve` by this much, then the relay
# checks again (central.kafka_position.check_at_start).
POSITION_TIMEOUT_SECONDS = 5.0


def build_positions(settings: Settings) -> PublishedPositions | None:
    """What central published last (central.kafka_position), read with the admin credential
    when there is one (the relay's own user may only write); None without Kafka."""
    if not settings.kafka:
        return None
    from central.kafka import KafkaLastRecords, client_config

    return KafkaLastRecords(
        settings.kafka,
        settings.topic_prefix,
        client_config(settings, admin=True),
        timeout_seconds=POSITION_TIMEOUT_SECONDS,
    )


def relay_access(
    settings: Settings, identities: KafkaIdentities | None, db: peewee.Database | None = None
) -> Callable[[], None] | None:
    """With the admin credential, before the relay's first publish: the relay's own user gets
    its SCRAM credential (the configured password) and its ACLs, and (with `db`) every active
    store key the store grants of today (services.identities.grant_store_access)."""
    if identities is None:
        return None
    username = settings.kafka_username
    as_admin = bool(username) and username == settings.kafka_admin_username
    if as_admin:
        log.warning("relay.runs_as_admin", username=username)
    relay_user = username if username and not as_admin else None
    if relay_user is None and db is None:
        return None

    def grant() -> None:
        if relay_user is not None:
            grants = relay_grants(settings.topic_prefix)
            identities.provision(relay_user, settings.kafka_password, grants)
            log.info("kafka.relay_access", username=relay_user)
        if db is not None:
            grant_store_access(db, identities)

    return grant
