"""Composition root and daemon lifecycle.

bootstrap() builds everything from settings; Agent.serve() runs the sync loop in a
supervised thread and the HTTP API in the main thread. SIGTERM/SIGINT set the stop event:
uvicorn stops, the loop finishes its batch, and serve() returns 0 within a few seconds.
If the loop dies with an unexpected error, the HTTP server is stopped too and serve()
returns 1 so that systemd restarts the agent.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import FrameType

import uvicorn
from fastapi import FastAPI

from invwire.logs import EventLog
from storeagent.api import create_app
from storeagent.central_client import CentralClient, connect_central
from storeagent.clock import Clock, utc_now
from storeagent.consumer import SyncLoop, topic_names
from storeagent.errors import ListenUnavailable
from storeagent.heartbeat import (
    HeartbeatSender,
    HeartbeatThread,
    connect_heartbeat,
    heartbeat_report,
)
from storeagent.kafka_source import KafkaRecordSource
from storeagent.metrics import AgentMetrics, WatchedState
from storeagent.notify import AgentHealth, NotifyThread, SystemdLink
from storeagent.orders import OrderDesk
from storeagent.progress import SyncProgress
from storeagent.replay import Replayer, ReplayThread
from storeagent.replica import Replica, open_replica
from storeagent.resilience import ResilientCentral
from storeagent.settings import AgentSettings
from storeagent.source import RecordSource
from storeagent.views import readiness_checks

STOP_GRACE_S = 3.0  # after the HTTP server stopped; both began at the signal
HTTP_GRACE_S = 1
NOTIFY_GRACE_S = 1.0
HEARTBEAT_GRACE_S = 1.0
REPLAY_GRACE_S = 1.0  # a replay cut short is sent again with the same key next time


@dataclass
class Agent:
    settings: AgentSettings
    writer: Replica
    reader: Replica
    loop: SyncLoop
    progress: SyncProgress
    stop: threading.Event
    app: FastAPI
    log: EventLog
    systemd: SystemdLink | None = None
    orders: OrderDesk | None = None
    metrics: AgentMetrics | None = None
    heartbeat: HeartbeatSender | None = None
    replayer: Replayer | None = None

    def serve(self, listener: socket.socket | None = None) -> int:
        """Run until stopped; the exit code for the process."""
        listener = listener or bind_listener(self.settings.listen_host, self.settings.listen_port)
        server = _Server(self.app, self.stop)
        consumer = ConsumerThread(self.loop, on_exit=server.request_exit, log=self.log)
        notifier = self._notify_thread(server)
        beats = self._heartbeat_thread(server)
        replay = self._replay_thread(server)
        _install_signal_handlers(server.handle_exit)
        consumer.start()
        if notifier:
            notifier.start()
        if beats:
            beats.start()
        if replay:
            replay.start()
        self.log.info("agent.started", port=listener.getsockname()[1], **self.settings.summary())
        try:
            server.run(sockets=[listener])
        finally:
            self.stop.set()
            consumer.join(STOP_GRACE_S)
            if notifier:
                notifier.join(NOTIFY_GRACE_S)
            if beats:
                beats.join(HEARTBEAT_GRACE_S)
            if replay:
                replay.join(REPLAY_GRACE_S)
            self.close()
        return self._exit_code(consumer, notifier, beats, replay)

    def close(self) -> None:
        self.writer.close()
        self.reader.close()
        if self.orders:
            self.orders.close()
        if self.systemd:
            self.systemd.notifier.close()

    def _notify_thread(self, server: _Server) -> NotifyThread | None:
        """sd_notify side task, only when systemd gave us a NOTIFY_SOCKET."""
        if self.systemd is None:
            return None
        health = AgentHealth(self.reader, self.progress, listening=lambda: server.started)
        return NotifyThread(self.systemd, health, stop=self.stop, on_failure=server.request_exit)

    def _heartbeat_thread(self, server: _Server) -> HeartbeatThread | None:
        """Heartbeats to central, when the agent has a central URL, a key and an interval."""
        if self.heartbeat is None:
            return None
        reader, progress = self.reader, self.progress
        return HeartbeatThread(
            self.heartbeat,
            partial(heartbeat_report, reader, progress, lambda: _ready(reader, progress)),
            every_s=self.settings.heartbeat_seconds,
            stop=self.stop,
            on_failure=server.request_exit,
            metrics=self.metrics,
        )

    def _replay_thread(self, server: _Server) -> ReplayThread | None:
        """The offline replayer (and resolver of sales left pending), when orders are taken."""
        if self.replayer is None or self.orders is None:
            return None
        return ReplayThread(
            self.replayer, self.orders.schedule, stop=self.stop, on_failure=server.request_exit
        )

    def _exit_code(
        self,
        consumer: ConsumerThread,
        notifier: NotifyThread | None,
        beats: HeartbeatThread | None = None,
        replay: ReplayThread | None = None,
    ) -> int:
        if consumer.is_alive():
            self.log.warning("agent.consumer_stop_timeout", grace_s=STOP_GRACE_S)
        side_failed = any(task is not None and task.failed for task in (notifier, beats, replay))
        code = 1 if consumer.failed or side_failed else 0
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
    `systemd` (notify.systemd_link) turns on sd_notify; `central` and `heartbeat` replace the
    HTTP clients to central."""
    log = EventLog("storeagent")
    metrics = AgentMetrics()
    writer = open_replica(settings.db_path)
    reader = open_replica(settings.db_path)
    progress = SyncProgress()
    stop = threading.Event()
    connect = connect or partial(
        KafkaRecordSource.connect,
        settings.kafka,
        group_id=settings.group_id,
        client_id=f"storeagent-{settings.store_id}",
    )
    loop = SyncLoop(
        writer,
        connect,
        prefix=settings.topic_prefix,
        stop=stop,
        progress=progress,
        log=EventLog("storeagent.consumer"),
        clock=clock,
        metrics=metrics,
    )
    topics = topic_names(settings.topic_prefix)
    central = central or connect_central(settings.central_url, settings.api_key)
    resilient = ResilientCentral(central)
    orders = OrderDesk(reader, resilient, clock=clock, policy=settings.offline)
    replayer = Replayer(
        orders.sales, resilient, claims=orders.claims, schedule=orders.schedule, clock=clock
    )
    app = create_app(
        reader,
        progress,
        store_id=settings.store_id,
        topics=topics,
        orders=orders,
        resync=loop.request_resync,
        metrics=metrics,
    )
    metrics.watch(
        WatchedState(
            reader,
            progress,
            ready=lambda: _ready(reader, progress),
            circuit=orders.central_status,
            clock=clock,
        )
    )
    heartbeat = heartbeat or connect_heartbeat(
        settings.central_url, settings.api_key, settings.heartbeat_seconds
    )
    return Agent(
        settings,
        writer,
        reader,
        loop,
        progress,
        stop,
        app,
        log,
        systemd,
        orders,
        metrics=metrics,
        heartbeat=heartbeat,
        replayer=replayer,
    )


def _ready(replica: Replica, progress: SyncProgress) -> bool:
    return all(readiness_checks(replica, progress).values())


def bind_listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ListenUnavailable(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", host=host, port=port
        ) from None


class ConsumerThread(threading.Thread):
    """Runs the sync loop; records an unexpected failure and tells the server to exit."""

    def __init__(self, loop: SyncLoop, *, on_exit: Callable[[], None], log: EventLog) -> None:
        super().__init__(name="storeagent-consumer", daemon=True)
        self._loop, self._on_exit, self._log = loop, on_exit, log
        self.failed = False

    def run(self) -> None:
        try:
            self._loop.run()
        except Exception:
            self.failed = True
            self._log.error("consumer.crashed", exc=True)
        finally:
            self._on_exit()


class _Server(uvicorn.Server):
    """uvicorn, with its signal handling also setting the agent's stop event."""

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


def _install_signal_handlers(handler: Callable[[int, FrameType | None], None]) -> None:
    """uvicorn restores these after its own run and re-raises the signal it caught, so they
    must be ours (a default SIGTERM handler would kill the process before cleanup)."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)
