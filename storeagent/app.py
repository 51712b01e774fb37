"""Composition root and daemon lifecycle.

bootstrap() builds everything from settings, once, and hands each object what it uses through
its constructor. Agent.serve() runs the background tasks (the sync loop, the replayer, and
when configured the heartbeat and the systemd notifier), each a SupervisedTask, and the HTTP
servers in the main thread, on one event loop: the store terminal API on loopback and, when
configured, the metrics listener. SIGTERM/SIGINT set the stop event: uvicorn stops, the loop
finishes its batch, and serve() returns 0 within a few seconds. If a task dies with an
unexpected error, the HTTP servers are stopped too and serve() returns 1 so that systemd
restarts the agent.

Before it serves, the agent makes sure the replica file is its own (replica.identity: this
store's, intact) and that central last heard of no queued sales it lacks (sales.lost_queue).
A refusal found later by a task (the replica is another Kafka cluster's, seen when Kafka
first answers; a lost queue, seen when central first answers) stops the agent the same way:
serve() raises it, and the command line reports it with exit 2.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI

from invwire.errors.agent import (
    ListenUnavailable,
    OfflineQueueLost,
    ReplicaRefused,
    ReplicaUnavailable,
)
from invwire.failover import Failover
from invwire.http_head import BoundedHttpTools
from invwire.logs import EventLog
from storeagent.clock import Clock, utc_now
from storeagent.http.app import create_app, create_metrics_app
from storeagent.http.token import load_or_create_token
from storeagent.ops.metrics import AgentMetrics, WatchedState
from storeagent.ops.notify import AgentHealth, SystemdLink, SystemdNotify
from storeagent.ops.supervisor import SupervisedTask
from storeagent.ops.vitals import Vitals
from storeagent.replica.allowances import Allowances
from storeagent.replica.db import DATABASE_ERRORS, Replica, open_replica
from storeagent.replica.identity import StoreClaim, claim_cluster, claim_store
from storeagent.replica.integrity import ReplicaFileWatch, check_intact
from storeagent.replica.local_orders import LocalOrders
from storeagent.replica.queries import ReplicaReads
from storeagent.sales.allowance_keeper import AllowanceKeeper
from storeagent.sales.allowance_sales import AllowanceSales
from storeagent.sales.claims import KeyClaims
from storeagent.sales.desk import OrderDesk
from storeagent.sales.doubt import DoubtJournal, journal_path
from storeagent.sales.lost_queue import QueueCheck
from storeagent.sales.offline_policy import DEFAULT_POLICY, OfflinePolicy
from storeagent.sales.recovery import SalesRecovery
from storeagent.sales.replay import Replayer
from storeagent.sales.schedule import ReplaySchedule
from storeagent.sales.shelf import Shelf
from storeagent.settings import AgentSettings
from storeagent.sync.kafka_login import KafkaLogin
from storeagent.sync.kafka_source import KafkaRecordSource
from storeagent.sync.loop import SyncLoop, topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import RecordSource
from storeagent.upstream.client import CentralClient, connect_central, shared_failover
from storeagent.upstream.heartbeat import (
    Heartbeat,
    HeartbeatFailed,
    HeartbeatSender,
    connect_heartbeat,
    heartbeat_report,
)
from storeagent.upstream.last_heard import (
    LastHeardSource,
    LastHeardUnavailable,
    connect_last_heard,
)
from storeagent.upstream.resilience import ResilientCentral

STOP_GRACE_S = 3.0  # after the HTTP server stopped; both began at the signal
HTTP_GRACE_S = 1
SIDE_TASK_GRACE_S = 1.0  # a replay cut short is sent again with the same key next time


@dataclass(frozen=True)
class Sales:
    """The order desk and the replayer, sharing one replica handle's local orders, the key
    claims, the replay schedule, the doubt journal and this agent process's instance id."""

    desk: OrderDesk
    replayer: Replayer
    orders: LocalOrders
    claims: KeyClaims
    schedule: ReplaySchedule
    doubts: DoubtJournal
    instance_id: str
    recovery: SalesRecovery
    keeper: AllowanceKeeper


def new_instance_id() -> str:
    """This agent process's id: made once at start (bootstrap), never stored for the next."""
    return uuid.uuid4().hex


def build_sales(
    replica: Replica,
    central: ResilientCentral,
    *,
    policy: OfflinePolicy = DEFAULT_POLICY,
    clock: Clock = utc_now,
    schedule: ReplaySchedule | None = None,
    instance_id: str | None = None,
    store_id: str | None = None,
    replica_file: ReplicaFileWatch | None = None,
    central_time: Clock | None = None,
) -> Sales:
    """The sales of one agent process (`instance_id`, a new one when not given), reading the
    doubt journal beside the replica's file; recorded under `store_id` (which then leaves
    other stores' sales unsent); never queued while `replica_file` reports a problem."""
    instance_id = instance_id or new_instance_id()
    orders = LocalOrders(replica, clock, store_id)
    shelf = Shelf(replica, ReplicaReads(replica))
    claims, schedule = KeyClaims(), schedule or ReplaySchedule()
    doubts = DoubtJournal(journal_path(Path(replica.db.database)))
    grants = Allowances(replica)
    keeper = AllowanceKeeper(
        grants,
        central,
        central_time=central_time or clock,
        clock=clock,
        central_answered=schedule.central_answered,
    )
    under_grants = AllowanceSales(
        grants, orders, central_time=central_time or clock, poke=keeper.poke
    )
    desk = OrderDesk(
        orders,
        shelf,
        central,
        claims=claims,
        schedule=schedule,
        doubts=doubts,
        instance_id=instance_id,
        policy=policy,
        clock=clock,
        replica_file=None if replica_file is None else replica_file.problem,
        allowances=under_grants,
    )
    replayer = Replayer(
        orders,
        shelf,
        central,
        claims=claims,
        schedule=schedule,
        doubts=doubts,
        instance_id=instance_id,
        clock=clock,
        allowances=under_grants,
    )
    recovery = SalesRecovery(orders, shelf, central, replica_epoch=replica.epoch)
    return Sales(desk, replayer, orders, claims, schedule, doubts, instance_id, recovery, keeper)


def start_sales(
    replica: Replica,
    central: ResilientCentral,
    *,
    instance_id: str,
    policy: OfflinePolicy,
    clock: Clock,
    store_id: str | None = None,
    replica_file: ReplicaFileWatch | None = None,
    central_time: Clock | None = None,
) -> Sales:
    """build_sales(), then the sales in doubt that an earlier process journaled are recorded
    in the replica (voided), before a till is served. A replica or journal that cannot be
    written now stops the agent (exit 1), as a replica that cannot be opened does."""
    try:
        sales = build_sales(
            replica,
            central,
            policy=policy,
            clock=clock,
            instance_id=instance_id,
            store_id=store_id,
            replica_file=replica_file,
            central_time=central_time,
        )
        sales.replayer.fold_doubts()
    except (*DATABASE_ERRORS, OSError) as exc:
        path = replica.db.database
        raise ReplicaUnavailable(
            f"cannot record the sales in doubt of the replica {path}: {exc}", path=path
        ) from exc
    return sales


class Closeable(Protocol):
    def close(self) -> None: ...


class Refusals:
    """The first refusal (ReplicaRefused) a background task met: it stops the agent, and
    Agent.serve() raises it once everything is closed."""

    def __init__(self) -> None:
        self.first: ReplicaRefused | None = None
        self._lock = threading.Lock()
        self._stop: Callable[[], None] = lambda: None

    def stop_with(self, stop: Callable[[], None]) -> None:
        self._stop = stop

    def refuse(self, refusal: ReplicaRefused) -> None:
        with self._lock:
            if self.first is None:
                self.first = refusal
        self._stop()

    def guarding(self, body: Callable[[], None]) -> Callable[[], None]:
        """`body`, with a refusal it raises taken here instead of crashing its task."""

        def guarded() -> None:
            try:
                body()
            except ReplicaRefused as refusal:
                self.refuse(refusal)

        return guarded


@dataclass
class Agent:
    settings: AgentSettings
    log: EventLog
    stop: threading.Event
    server: _Servers
    consumer: SupervisedTask
    side_tasks: list[SupervisedTask]
    resources: list[Closeable]  # closed once the tasks are done
    instance_id: str = ""  # this process's (new_instance_id), as its sales record it
    refusals: Refusals = field(default_factory=Refusals)

    def serve(
        self, listener: socket.socket | None = None, metrics_listener: socket.socket | None = None
    ) -> int:
        """Run until stopped; the exit code for the process. The listeners are bound from the
        settings when not given (the metrics one only when the agent has a metrics server).
        Raises the ReplicaRefused that stopped it, if one did."""
        settings = self.settings
        listener = listener or bind_listener(settings.listen_host, settings.listen_port)
        if self.server.metrics is not None and metrics_listener is None:
            metrics_listener = bind_listener(settings.metrics_host, settings.metrics_port or 0)
        _install_signal_handlers(self.server.handle_exit)
        for task in (self.consumer, *self.side_tasks):
            task.start()
        self.log.info(
            "agent.started",
            port=listener.getsockname()[1],
            metrics_port=metrics_listener.getsockname()[1] if metrics_listener else None,
            instance_id=self.instance_id,
            **settings.summary(),
        )
        try:
            self.server.run(listener, metrics_listener)
        finally:
            self.stop.set()
            self.consumer.join(STOP_GRACE_S)
            for task in self.side_tasks:
                task.join(SIDE_TASK_GRACE_S)
            self.close()
        if self.refusals.first is not None:
            raise self.refusals.first
        return self._exit_code()

    def close(self) -> None:
        for resource in self.resources:
            resource.close()

    def _exit_code(self) -> int:
        if self.consumer.is_alive():
            self.log.warning("agent.consumer_stop_timeout", grace_s=STOP_GRACE_S)
        failed = self.server.failed or any(
            task.failed for task in (self.consumer, *self.side_tasks)
        )
        code = 1 if failed else 0
        self.log.info("agent.stopped", exit_code=code)
        return code


def bootstrap(
    settings: AgentSettings,
    *,
    connect: Callable[[], RecordSource] | None = None,
    clock: Clock = utc_now,
    systemd: SystemdLink | None = None,
    central: CentralClient | None = None,
    heartbeat: HeartbeatSender | None = None,
    last_heard: LastHeardSource | None = None,
) -> Agent:
    """Build the agent; `connect` replaces the Kafka connection (tests pass a fake source);
    `systemd` (ops.notify.systemd_link) turns on sd_notify; `central`, `heartbeat` and
    `last_heard` replace the HTTP clients to central (with a `central` given and no
    `last_heard`, the queue is not compared with central's). A replica refused here
    (ReplicaRefused) is closed again."""
    log, metrics, stop = EventLog("storeagent"), AgentMetrics(), threading.Event()
    token = _terminal_token(settings, log)  # before the replica: a refused file changes nothing
    with ExitStack() as undo:
        writer, claim, watch = _own_replica(settings, log, undo)
        reader = open_replica(settings.db_path)
        undo.callback(reader.close)
        progress, refusals = SyncProgress(), Refusals()
        loop = SyncLoop(
            writer,
            _cluster_checked(connect or _kafka(settings), writer, settings.topic_prefix, log),
            prefix=settings.topic_prefix,
            stop=stop,
            progress=progress,
            log=EventLog("storeagent.consumer"),
            clock=clock,
            metrics=metrics,
            store_id=settings.store_id,
        )
        routes = shared_failover(settings.central_url)  # one current URL for every client
        resilient = ResilientCentral(central or connect_central(routes, settings.api_key))
        undo.callback(resilient.close)
        instance_id = new_instance_id()
        sales = start_sales(
            reader,
            resilient,
            instance_id=instance_id,
            policy=settings.offline,
            clock=clock,
            store_id=settings.store_id,
            replica_file=watch,
            central_time=lambda: progress.central_clock.central_time(clock()),
        )
        _report_foreign_sales(sales, log)
        replica_id = str(claim.identity.replica_id)
        if last_heard is None and central is None:
            last_heard = connect_last_heard(routes, settings.api_key)
        queue_check = QueueCheck(
            last_heard,
            sales.orders.queue_depth,
            replica_id=replica_id,
            path=settings.db_path,
            accept_loss=settings.accept_lost_queue,
        )
        queue_check.at_start()
        undo.pop_all()
    vitals = Vitals(reader, sales.orders, progress, replica_file=watch)
    metrics.watch(
        WatchedState(
            vitals,
            circuit=resilient.status,
            clock=clock,
            recovery=sales.recovery.status,
            allowances=sales.keeper.status,
        )
    )
    app = create_app(
        reader,
        progress,
        store_id=settings.store_id,
        topics=topic_names(settings.topic_prefix),
        orders=sales.desk,
        recovery=sales.recovery.status,
        resync=loop.request_resync,
        metrics=metrics,
        terminal_token=token,
        replica_file=watch,
        central_at=routes if central is None else None,
        allowances=sales.keeper.status,
    )
    server = _Servers(
        _Server(app, stop), _metrics_server(settings, reader, progress, metrics, stop, watch)
    )
    refusals.stop_with(partial(_stop_all, stop, server))
    supervise = _Supervisor(stop, server.request_exit, log)
    notify = None
    if systemd is not None:
        notify = SystemdNotify(systemd, AgentHealth(vitals, listening=lambda: server.started))
    report = _checked_report(
        partial(heartbeat_report, vitals, instance_id=instance_id, allowances=sales.keeper.status),
        replica_id,
        queue_check,
        refusals,
    )
    beats = _heartbeat(
        settings, heartbeat, vitals, metrics, report, routes, sales.schedule.central_answered
    )
    consumer = refusals.guarding(loop.run)
    return Agent(
        settings,
        log,
        stop,
        server,
        consumer=supervise.task("storeagent-consumer", consumer, "consumer.crashed"),
        side_tasks=supervise.side_tasks(
            sales, beats, notify, central_configured=central is not None or routes is not None
        ),
        resources=[writer, reader, resilient, *([systemd.notifier] if systemd else [])],
        instance_id=instance_id,
        refusals=refusals,
    )


def _own_replica(
    settings: AgentSettings, log: EventLog, undo: ExitStack
) -> tuple[Replica, StoreClaim, ReplicaFileWatch]:
    """The replica opened (its writer handle), intact and this store's (an older one adopts
    this store), before anything reads or writes its sales; the watch on its file."""
    writer = open_replica(settings.db_path)
    undo.callback(writer.close)
    claim = _claim_replica(settings, writer, log)
    return writer, claim, ReplicaFileWatch.of(settings.db_path)


def _stop_all(stop: threading.Event, server: _Servers) -> None:
    stop.set()
    server.request_exit()


def _claim_replica(settings: AgentSettings, replica: Replica, log: EventLog) -> StoreClaim:
    check_intact(replica)
    claim = claim_store(replica, settings.store_id)
    if claim.adopted:
        log.info(
            "replica.identity_recorded",
            path=str(settings.db_path),
            replica_id=claim.identity.replica_id,
            adopted_sales=claim.adopted_sales,
        )
    return claim


def _cluster_checked(
    connect: Callable[[], RecordSource], replica: Replica, topic_prefix: str, log: EventLog
) -> Callable[[], RecordSource]:
    """`connect`, then the replica is checked against (or given) the cluster's identity: a
    replica of another cluster or topic prefix is refused before any offset of it is used."""

    def connected() -> RecordSource:
        source = connect()
        try:
            cluster_id = source.cluster_id()
            if claim_cluster(replica, cluster_id, topic_prefix):
                log.info(
                    "replica.cluster_recorded", cluster_id=cluster_id, topic_prefix=topic_prefix
                )
        except BaseException:
            source.close()
            raise
        return source

    return connected


def _report_foreign_sales(sales: Sales, log: EventLog) -> None:
    foreign = sales.desk.foreign_sales()
    if foreign:
        log.warning(
            "replica.other_store_sales",
            sales=foreign,
            message="sales recorded under another store's id are never sent by this agent",
        )


def _checked_report(
    report: Callable[[], dict[str, Any]],
    replica_id: str,
    queue_check: QueueCheck,
    refusals: Refusals,
) -> Callable[[], dict[str, Any]]:
    """The heartbeat's report, with the replica's id; none goes out before the queue check
    passed (a new replica's report would overwrite central's memory of the old queue)."""

    def checked() -> dict[str, Any]:
        try:
            queue_check.check()
        except LastHeardUnavailable as exc:
            raise HeartbeatFailed(f"the queue check waits for central: {exc.message}") from None
        except OfflineQueueLost as refusal:
            refusals.refuse(refusal)
            raise HeartbeatFailed(refusal.message) from None
        return {**report(), "replica_id": replica_id}

    return checked


def _terminal_token(settings: AgentSettings, log: EventLog) -> str:
    path = settings.terminal_token_path
    token, created = load_or_create_token(path)
    if created:
        log.info("agent.terminal_token_created", path=str(path))
    return token


def _metrics_server(
    settings: AgentSettings,
    replica: Replica,
    progress: SyncProgress,
    metrics: AgentMetrics,
    stop: threading.Event,
    watch: ReplicaFileWatch,
) -> _Server | None:
    if settings.metrics_port is None:
        return None
    app = create_metrics_app(
        replica,
        progress,
        metrics=metrics,
        loopback_only=not settings.allow_remote,
        replica_file=watch,
    )
    return _Server(app, stop, handles_signals=False)


def _kafka(settings: AgentSettings) -> Callable[[], RecordSource]:
    ca_file = None if settings.kafka_ca_file is None else str(settings.kafka_ca_file)
    login = KafkaLogin.for_store(
        settings.kafka_security_protocol, settings.store_id, settings.api_key, ca_file
    )
    return partial(
        KafkaRecordSource.connect,
        settings.kafka,
        group_id=settings.group_id,
        client_id=f"storeagent-{settings.store_id}",
        login=login,
    )


def _heartbeat(
    settings: AgentSettings,
    sender: HeartbeatSender | None,
    vitals: Vitals,
    metrics: AgentMetrics,
    report: Callable[[], dict[str, Any]],
    routes: Failover | None = None,
    answered: Callable[[], None] = lambda: None,
) -> Heartbeat | None:
    """Heartbeats to central, when the agent has a central URL, a key and an interval (or a
    sender was given); their answers feed the estimate of central's clock and call
    `answered` (the replay schedule's: central is back). `routes`: the central URLs the
    other clients share."""
    sender = sender or connect_heartbeat(routes, settings.api_key, settings.heartbeat_seconds)
    if sender is None:
        return None
    return Heartbeat(
        sender,
        report,
        every_s=settings.heartbeat_seconds,
        metrics=metrics,
        central_clock=vitals.central_clock,
        answered=answered,
    )


@dataclass(frozen=True)
class _Supervisor:
    """Makes the agent's tasks: a failed one stops the HTTP server, and so the agent."""

    stop: threading.Event
    on_failure: Callable[[], None]
    log: EventLog

    def task(
        self,
        name: str,
        body: Callable[[], None],
        crashed: str,
        *,
        errors_once_stopping_fail: bool = True,
    ) -> SupervisedTask:
        return SupervisedTask(
            name,
            body,
            crashed=crashed,
            stop=self.stop,
            on_failure=self.on_failure,
            log=self.log,
            errors_once_stopping_fail=errors_once_stopping_fail,
        )

    def side_tasks(
        self,
        sales: Sales,
        heartbeat: Heartbeat | None,
        notify: SystemdNotify | None,
        *,
        central_configured: bool = True,
    ) -> list[SupervisedTask]:
        tasks = [
            self.task(
                "storeagent-replay",
                partial(sales.replayer.run, self.stop),
                "offline.replayer_crashed",
                # the agent may close the replica under a last replay
                errors_once_stopping_fail=False,
            ),
            self.task(
                "storeagent-recovery",
                partial(sales.recovery.run, self.stop),
                "order.recovery_crashed",
                errors_once_stopping_fail=False,  # as the replayer's
            ),
        ]
        if central_configured:
            tasks.append(
                self.task(
                    "storeagent-allowances",
                    partial(sales.keeper.run, self.stop),
                    "allowance.keeper_crashed",
                    errors_once_stopping_fail=False,  # as the replayer's
                )
            )
        if heartbeat is not None:
            body = partial(heartbeat.run, self.stop)
            tasks.append(self.task("storeagent-heartbeat", body, "heartbeat.crashed"))
        if notify is not None:
            body = partial(notify.run, self.stop)
            tasks.append(self.task("storeagent-notify", body, "notify.crashed"))
        return tasks


def bind_listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ListenUnavailable(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", host=host, port=port
        ) from None


class _Server(uvicorn.Server):
    """uvicorn, stopping when the agent's stop event is set, and with its signal handling
    also setting that event."""

    def __init__(
        self, app: FastAPI, stop: threading.Event, *, handles_signals: bool = True
    ) -> None:
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            http=BoundedHttpTools,  # request heads bounded at h11's default, 16 KiB
            timeout_graceful_shutdown=HTTP_GRACE_S,
        )
        super().__init__(config)
        self._stop = stop
        self._handles_signals = handles_signals

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._stop.set()
        super().handle_exit(sig, frame)

    def request_exit(self) -> None:
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        return await super().on_tick(counter) or self._stop.is_set()

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Only one server of the process takes the signals (and re-raises them after)."""
        if self._handles_signals:
            with super().capture_signals():
                yield
        else:
            yield


class _Servers:
    """The terminal API's server and, when configured, the metrics listener's, on one event
    loop: the terminal one leads, and the metrics one stops with it. A metrics server that
    fails stops the agent with exit code 1."""

    def __init__(self, terminal: _Server, metrics: _Server | None) -> None:
        self.terminal, self.metrics = terminal, metrics
        self.failed = False

    @property
    def started(self) -> bool:
        return self.terminal.started and (self.metrics is None or self.metrics.started)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.terminal.handle_exit(sig, frame)

    def request_exit(self) -> None:
        for server in (self.terminal, self.metrics):
            if server is not None:
                server.request_exit()

    def run(self, listener: socket.socket, metrics_listener: socket.socket | None) -> None:
        with asyncio.Runner(loop_factory=self.terminal.config.get_loop_factory()) as runner:
            runner.run(self._serve(listener, metrics_listener))

    async def _serve(self, listener: socket.socket, metrics_listener: socket.socket | None) -> None:
        if self.metrics is None or metrics_listener is None:
            await self.terminal.serve(sockets=[listener])
            return
        beside = asyncio.create_task(self.metrics.serve(sockets=[metrics_listener]))
        beside.add_done_callback(self._metrics_done)
        try:
            await self.terminal.serve(sockets=[listener])
        finally:
            self.metrics.request_exit()
            await asyncio.wait([beside])

    def _metrics_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failed = True
            EventLog("storeagent").error("metrics.crashed", error=repr(task.exception()))
        self.terminal.request_exit()


def _install_signal_handlers(handler: Callable[[int, FrameType | None], None]) -> None:
    """uvicorn restores these after its own run and re-raises the signal it caught, so they
    must be ours (a default SIGTERM handler would kill the process before cleanup)."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)
