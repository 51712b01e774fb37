"""`central serve --workers N`: N API processes on one port, under uvicorn's supervisor.

The parent does what must happen once: it migrates the schema, checks the database against
what Kafka holds (central.kafka_position), binds the port, then starts the workers and
restarts any that dies. Each worker is a new interpreter (spawned, not forked) that
bootstraps its own Central: its own database pool, metrics and relay thread, all the relays
contending for the one lease (central.outbox). SIGTERM or SIGINT to the parent stops every
worker gracefully (in-flight requests finish, the leader releases the lease), then the parent
exits 0; SIGHUP replaces the workers one by one. Every log line carries the `pid` of the
process that wrote it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from central.settings import Settings
from invwire.errors.central import WorkerFailed
from invwire.http_head import BoundedHttpTools
from invwire.logs import EventLog, configure_logging

log = EventLog("central.serve")

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def server_config(app: Any, settings: Settings, **extra: Any) -> Any:
    """uvicorn's configuration of `central serve`, one process or several (`extra`)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        ssl_certfile=settings.ssl_certfile or None,
        ssl_keyfile=settings.ssl_keyfile or None,
        # Over limit_concurrency, uvicorn answers 503 itself (docs/central.md). httptools
        # with the head bound uvicorn keeps only for h11 (invwire.http_head).
        http=BoundedHttpTools,
        limit_concurrency=settings.limit_concurrency,
        backlog=settings.backlog,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        **extra,
    )


def serve_workers(settings: Settings) -> None:
    """Run `settings.workers` worker processes until SIGTERM or SIGINT (after prepare_once);
    returns once all have stopped. Raises WorkerFailed when a worker could not start (uvicorn
    then stops them all)."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    config = server_config(WorkerApp(settings), settings, factory=True, workers=settings.workers)
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    log.info("serve.workers", workers=settings.workers, host=settings.host, port=settings.port)
    supervisor.run()
    failed = [p.pid for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
    if failed:
        raise WorkerFailed(
            f"worker process {failed[0]} could not start (its `worker.start_failed` log line "
            "says why); every worker was stopped",
            pids=failed,
        )


def prepare_once(settings: Settings) -> None:
    """Migrate, and refuse (central.behind_kafka) a database behind Kafka: once, in the parent,
    before any worker opens the database."""
    from central.app import build_positions, open_database
    from central.epochs import current_epoch
    from central.kafka_position import check_at_start
    from central.restore import close_database

    db = open_database(settings)
    try:
        positions = build_positions(settings)
        if positions is not None:
            check_at_start(positions, db, current_epoch(db))
    finally:
        close_database(db)


@dataclass(frozen=True)
class WorkerApp:
    """The app factory uvicorn calls in each worker process (it is pickled to it with the
    settings, so nothing is read again from the environment or files)."""

    settings: Settings

    def __call__(self) -> Any:
        configure_logging(self.settings.log_level, fields={"pid": os.getpid()})
        try:
            return self._build()
        except Exception as exc:
            # uvicorn restarts a worker that dies, for ever; one that exits STARTUP_FAILURE
            # makes it stop every worker instead: a broken start would break each restart.
            from uvicorn.config import STARTUP_FAILURE

            code = getattr(exc, "code", "internal")
            log.error(
                "worker.start_failed",
                exc=True,
                error=f"{type(exc).__name__}: {exc}"[:300],
                code=code,
            )
            sys.exit(STARTUP_FAILURE)

    def _build(self) -> Any:
        from central.api import create_app
        from central.app import bootstrap
        from central.cli import favour_latency, start_tracing

        favour_latency()
        start_tracing()
        central = bootstrap(self.settings)
        app = create_app(central)
        app.router.lifespan_context = closing_after(app.router.lifespan_context, central.close)
        return app


def closing_after(lifespan: Lifespan, close: Callable[[], None]) -> Lifespan:
    """`lifespan`, then `close` and the tracing flush: a worker's last words before uvicorn
    ends its process (the single process `serve` does the same after uvicorn returns)."""
    from invwire import tracing

    @asynccontextmanager
    async def closing(app: Any) -> AsyncIterator[Any]:
        async with lifespan(app) as state:
            yield state
        try:
            close()
        finally:
            tracing.shutdown()

    return closing
