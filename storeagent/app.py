"""Composition root and daemon lifecycle.

bootstrap() builds everything from settings, once, and hands each object what it uses through
its constructor. Agent.serve() runs the background tasks (the sync loop, the replayer, and
when configured the heartbeat and the systemd notifier), each a SupervisedTask, and the HTTP
API in the main thread. SIGTERM/SIGINT set the stop event: uvicorn stops, the loop finishes
its batch, and serve() returns 0 within a few seconds. If a task dies with an unexpected
error, the HTTP server is stopped too and serve() returns 1 so that systemd restarts the agent.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import FrameType
from typing import Protocol

import uvicorn
from fastapi import FastAPI

from invwire.logs import EventLog
from storeagent.clock import Clock, utc_now
from storeagent.errors import ListenUnavailable
from storeagent.http.app import create_app
from storeagent.ops.metrics import AgentMetrics, WatchedState
from storeagent.ops.notify import AgentHealth, SystemdLink, SystemdNotify
from storeagent.ops.supervisor import SupervisedTask
from storeagent.ops.vitals import Vitals
from storeagent.replica.db import Replica, open_replica
from storeagent.replica.local_orders import LocalOrders
from storeagent.replica.queries import ReplicaReads
from storeagent.sales.claims import KeyClaims
from storeagent.sales.desk import OrderDesk
from storeagent.sales.offline_policy import DEFAULT_POLICY, OfflinePolicy
from storeagent.sales.replay import Replayer
from storeagent.sales.schedule import ReplaySchedule
from storeagent.sales.shelf import Shelf
from storeagent.settings import AgentSettings
from storeagent.sync.kafka_login import KafkaLogin
from storeagent.sync.kafka_source import KafkaRecordSource
from storeagent.sync.loop import SyncLoop, topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import RecordSource
from storeagent.upstream.client import CentralClient, connect_central
from storeagent.upstream.heartbeat import (
    Heartbeat,
    HeartbeatSender,
    connect_heartbeat,
    heartbeat_report,
)
from storeagent.upstream.resilience import ResilientCentral

STOP_GRACE_S = 3.0  # after the HTTP server stopped; both began at the signal
HTTP_GRACE_S = 1
SIDE_TASK_GRACE_S = 1.0  # a replay cut short is sent again with the same key next time


@dataclass(frozen=True)
class Sales:
    """The order desk and the replayer, sharing one replica handle's local orders, the key
    claims and the replay schedule."""

    desk: OrderDesk
    replayer: Replayer
    orders: LocalOrders
    claims: KeyClaims
    schedule: ReplaySchedule


def build_sales(
    replica: Replica,
    central: ResilientCentral,
    *,
    policy: OfflinePolicy = DEFAULT_POLICY,
    clock: Clock = utc_now,
    schedule: ReplaySchedule | None = None,
) -> Sales:
    orders = LocalOrders(replica, clock)
    shelf = Shelf(replica, ReplicaReads(replica))
    claims, schedule = KeyClaims(), schedule or ReplaySchedule()
    desk = OrderDesk(
        orders, shelf, central, claims=claims, schedule=schedule, policy=policy, clock=clock
    )
    replayer = Replayer(orders, shelf, central, claims=claims, schedule=schedule, clock=clock)
    return Sales(desk, replayer, orders, claims, schedule)


class Closeable(Protocol):
    def close(self) -> None: ...


@dataclass
class Agent:
    settings: AgentSettings
    log: EventLog
    stop: threading.Event
    server: _Server
    consumer: SupervisedTask
    side_tasks: list[SupervisedTask]
    resources: list[Closeable]  # closed once the tasks are done

    def serve(self, listener: socket.socket | None = None) -> int:
        """Run until stopped; the exit code for the process."""
        listener = listener or bind_listener(self.settings.listen_host, self.settings.listen_port)
        _install_signal_handlers(self.server.handle_exit)
        for task in (self.consumer, *self.side_tasks):
            task.start()
        self.log.info("agent.started", port=listener.getsockname()[1], **self.settings.summary())
        try:
            self.server.run(sockets=[listener])
        finally:
            self.stop.set()
            self.consumer.join(STOP_GRACE_S)
            for task in self.side_tasks:
                task.join(SIDE_TASK_GRACE_S)
            self.close()
        return self._exit_code()

    def close(self) -> None:
        for resource in self.resources:
            resource.close()

    def _exit_code(self) -> int:
        if self.consumer.is_alive():
            self.log.warning("agent.consumer_stop_timeout", grace_s=STOP_GRACE_S)
        failed = any(task.failed for task in (self.consumer, *self.side_tasks))
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
) -> Agent:
    """Build the agent; `connect` replaces the Kafka connection (tests pass a fake source);
    `systemd` (ops.notify.systemd_link) turns on sd_notify; `central` and `heartbeat` replace
    the HTTP clients to central."""
    log, metrics, stop = EventLog("storeagent"), AgentMetrics(), threading.Event()
    writer, reader = open_replica(settings.db_path), open_replica(settings.db_path)
    progress = SyncProgress()
    loop = SyncLoop(
        writer,
        connect or _kafka(settings),
        prefix=settings.topic_prefix,
        stop=stop,
        progress=progress,
        log=EventLog("storeagent.consumer"),
        clock=clock,
        metrics=metrics,
    )
    resilient = ResilientCentral(central or connect_central(settings.central_url, settings.api_key))
    sales = build_sales(reader, resilient, policy=settings.offline, clock=clock)
    vitals = Vitals(reader, sales.orders, progress)
    metrics.watch(WatchedState(vitals, circuit=resilient.status, clock=clock))
    app = create_app(
        reader,
        progress,
        store_id=settings.store_id,
        topics=topic_names(settings.topic_prefix),
        orders=sales.desk,
        resync=loop.request_resync,
        metrics=metrics,
    )
    server = _Server(app, stop)
    supervise = _Supervisor(stop, server.request_exit, log)
    notify = None
    if systemd is not None:
        notify = SystemdNotify(systemd, AgentHealth(vitals, listening=lambda: server.started))
    beats = _heartbeat(settings, heartbeat, vitals, metrics)
    return Agent(
        settings,
        log,
        stop,
        server,
        consumer=supervise.task("storeagent-consumer", loop.run, "consumer.crashed"),
        side_tasks=supervise.side_tasks(sales.replayer, beats, notify),
        resources=[writer, reader, resilient, *([systemd.notifier] if systemd else [])],
    )


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
) -> Heartbeat | None:
    """Heartbeats to central, when the agent has a central URL, a key and an interval (or a
    sender was given)."""
    sender = sender or connect_heartbeat(
        settings.central_url, settings.api_key, settings.heartbeat_seconds
    )
    if sender is None:
        return None
    return Heartbeat(
        sender,
        partial(heartbeat_report, vitals),
        every_s=settings.heartbeat_seconds,
        metrics=metrics,
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
        self, replayer: Replayer, heartbeat: Heartbeat | None, notify: SystemdNotify | None
    ) -> list[SupervisedTask]:
        tasks = [
            self.task(
                "storeagent-replay",
                partial(replayer.run, self.stop),
                "offline.replayer_crashed",
                # the agent may close the replica under a last replay
                errors_once_stopping_fail=False,
            )
        ]
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

    def __init__(self, app: FastAPI, stop: threading.Event) -> None:
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=HTTP_GRACE_S,
        )
        super().__init__(config)
        self._stop = stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._stop.set()
        super().handle_exit(sig, frame)

    def request_exit(self) -> None:
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        return await super().on_tick(counter) or self._stop.is_set()


def _install_signal_handlers(handler: Callable[[int, FrameType | None], None]) -> None:
    """uvicorn restores these after its own run and re-raises the signal it caught, so they
    must be ours (a default SIGTERM handler would kill the process before cleanup)."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)
