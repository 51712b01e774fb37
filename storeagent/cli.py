"""`storeagent` command line: parse flags, build the agent, run it, map errors to exit codes.

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 runtime failure (systemd restarts the agent),
2 invalid configuration, or a replica file refused (another store's or cluster's, damaged,
or missing queued sales central heard of). Errors are one JSON log line on stderr with a
stable `code`. Traces asked for (OTEL_EXPORTER_OTLP_ENDPOINT) without the OTLP exporter
installed are a configuration error (`config.tracing_unavailable`).

`storeagent salvage` reads the sales a replica still has to send out of it, damaged or not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from invwire import tracing
from invwire.errors.agent import AgentError, ConfigError, ReplicaRefused
from invwire.logs import EventLog, configure_logging
from invwire.tracing import TracingUnavailable
from invwire.transport import is_plain_http_to_remote
from storeagent.app import bootstrap
from storeagent.ops import runtime
from storeagent.ops.notify import systemd_link
from storeagent.salvage import salvage as salvage_replica
from storeagent.salvage import write_salvage
from storeagent.settings import AgentSettings, load_settings

app = typer.Typer(
    help="invctl store agent: keeps this store's SQLite replica in sync with Kafka and "
    "serves the store terminal on loopback.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """invctl store agent."""


@app.command()
def run(
    store_id: Annotated[
        str | None, typer.Option(help="This store's id (a-z, 0-9, '-'). Env: STOREAGENT_STORE_ID.")
    ] = None,
    central: Annotated[
        str | None,
        typer.Option(
            help="Central API base URL, or several comma-separated: a call that cannot connect "
            "to one goes to the next (docs/operations.md). Env: STOREAGENT_CENTRAL."
        ),
    ] = None,
    kafka: Annotated[
        str | None,
        typer.Option(
            help="Kafka bootstrap servers HOST:PORT[,...]. Env: STOREAGENT_KAFKA, INVCTL_KAFKA."
        ),
    ] = None,
    kafka_security_protocol: Annotated[
        str | None,
        typer.Option(
            metavar="PLAINTEXT|SASL_SSL",
            help="SASL_SSL: TLS, and SCRAM-SHA-512 as this store's Kafka user with its API key "
            "as the password (docs/operations.md). Default PLAINTEXT. "
            "Env: STOREAGENT_KAFKA_SECURITY_PROTOCOL, INVCTL_KAFKA_SECURITY_PROTOCOL.",
        ),
    ] = None,
    kafka_ca_file: Annotated[
        Path | None,
        typer.Option(
            help="PEM file of the CA that signed the brokers' certificates (SASL_SSL). "
            "Default: the system's CAs. Env: STOREAGENT_KAFKA_CA_FILE, INVCTL_KAFKA_CA_FILE."
        ),
    ] = None,
    db: Annotated[
        Path | None,
        typer.Option(help="Replica SQLite file. Default: the user data dir, storeagent-ID.db."),
    ] = None,
    listen: Annotated[
        str | None, typer.Option(help="HOST:PORT of the store API. Default: 127.0.0.1:8787.")
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(help="File holding the store's API key (mode 600). Env: STOREAGENT_API_KEY."),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file with defaults.")] = None,
    topic_prefix: Annotated[
        str | None, typer.Option(help="Kafka topic prefix. Env: INVCTL_TOPIC_PREFIX.")
    ] = None,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Serve --metrics-port on every interface, for a Prometheus on the store "
            "network. The store API itself stays on loopback.",
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Port of a second listener serving only /metrics, /healthz and /readyz, "
            "on the store API's address (every interface with --allow-remote). Default: none. "
            "Env: STOREAGENT_METRICS_PORT.",
            min=0,
            max=65535,
        ),
    ] = None,
    terminal_token_file: Annotated[
        Path | None,
        typer.Option(
            help="The token every POST to the store API must carry (mode 600; made when "
            "missing). Default: terminal.token next to the replica. "
            "Env: STOREAGENT_TERMINAL_TOKEN_FILE."
        ),
    ] = None,
    heartbeat_seconds: Annotated[
        float | None,
        typer.Option(
            help="Seconds between heartbeats to central (0: none). Default 10. "
            "Env: STOREAGENT_HEARTBEAT_SECONDS."
        ),
    ] = None,
    offline: Annotated[
        str | None,
        typer.Option(
            metavar="on|off",
            help="Queue sales while central is unreachable (docs/offline.md). Default off. "
            "Env: STOREAGENT_OFFLINE.",
        ),
    ] = None,
    offline_max_units_per_order: Annotated[
        int | None,
        typer.Option(help="Most units one sale may have to be queued offline. Default 20."),
    ] = None,
    offline_max_queued_units: Annotated[
        int | None,
        typer.Option(help="Most units queued offline in all. Default 200."),
    ] = None,
    offline_max_age: Annotated[
        int | None,
        typer.Option(help="Seconds after which a queued sale is reported overdue. Default 3600."),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Allow plain http:// to a central on another machine (the API key then "
            "crosses the network in clear). Env: STOREAGENT_INSECURE.",
        ),
    ] = False,
    accept_lost_queue: Annotated[
        bool,
        typer.Option(
            "--accept-lost-queue",
            help="Start although central last heard of queued sales that this replica does "
            "not hold: only once they were salvaged (storeagent salvage, invctl sales "
            "replay). For one start. Env: STOREAGENT_ACCEPT_LOST_QUEUE.",
        ),
    ] = False,
) -> None:
    """Run the agent until SIGTERM.

    Example: storeagent run --store-id s1 --central https://central.example --kafka 10.0.0.5:9092
    """
    configure_logging()
    runtime.tune()
    log = EventLog("storeagent")
    flags = {
        "store_id": store_id,
        "central": central,
        "kafka": kafka,
        "kafka_security_protocol": kafka_security_protocol,
        "kafka_ca_file": kafka_ca_file,
        "db": db,
        "listen": listen,
        "api_key_file": api_key_file,
        "topic_prefix": topic_prefix,
        "allow_remote": True if allow_remote else None,
        "metrics_port": metrics_port,
        "terminal_token_file": terminal_token_file,
        "heartbeat_seconds": heartbeat_seconds,
        "offline": offline,
        "offline_max_units_per_order": offline_max_units_per_order,
        "offline_max_queued_units": offline_max_queued_units,
        "offline_max_age": offline_max_age,
        "insecure": True if insecure else None,
        "accept_lost_queue": True if accept_lost_queue else None,
    }
    try:
        settings = load_settings(flags, os.environ, config)
        configure_logging(fields={"store_id": settings.store_id})
        tracing.setup("storeagent")  # OTEL_* variables (docs/operations.md "Tracing")
        agent = bootstrap(settings, systemd=systemd_link(os.environ))
        runtime.settle()
        _warn_if_plain_http(settings, log)  # after every configuration check: else one line
        code = agent.serve()
    except ReplicaRefused as exc:
        log.error("agent.replica_refused", code=exc.code, message=exc.message, **exc.details)
        raise typer.Exit(2) from None
    except (ConfigError, TracingUnavailable) as exc:
        log.error("agent.config_invalid", code=exc.code, message=exc.message, **exc.details)
        raise typer.Exit(2) from None
    except AgentError as exc:
        log.error("agent.failed", code=exc.code, message=exc.message, **exc.details)
        raise typer.Exit(1) from None
    except Exception as exc:  # a bug: one log line with the traceback in it, and exit 1
        message = f"{type(exc).__name__}: {exc}"
        log.error("agent.crashed", exc=True, code="internal", message=message)
        raise typer.Exit(1) from None
    finally:
        tracing.shutdown()  # the spans still buffered are sent before the process ends
    raise typer.Exit(code)


@app.command()
def salvage(
    db: Annotated[
        Path, typer.Option(help="The replica file (damaged or not; it is never changed).")
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="The JSON-lines file to write (new). Default: DB.salvage.jsonl."),
    ] = None,
) -> None:
    """Save the sales a replica still has to send (queued, pending) and those to void, with
    their idempotency keys, for `invctl sales replay`. Stop the agent first.

    Example: storeagent salvage --db /var/lib/invctl-agent/replica.db --out sales.jsonl
    """
    configure_logging()
    log = EventLog("storeagent.salvage")
    out = out or db.with_name(db.name + ".salvage.jsonl")
    try:
        found = salvage_replica(db)
        write_salvage(found, out)
    except ConfigError as exc:
        log.error("salvage.refused", code=exc.code, message=exc.message, **exc.details)
        raise typer.Exit(2) from None
    except AgentError as exc:
        log.error("salvage.failed", code=exc.code, message=exc.message, **exc.details)
        raise typer.Exit(1) from None
    counts = found.counts()
    log.info(
        "salvage.done",
        db=str(db),
        out=str(out),
        method=found.method,
        store_id=found.store_id,
        problem=found.problem,
        **counts,
    )
    typer.echo(
        f"salvaged {counts['sales']} sales from {db} ({found.method}): {counts['to_replay']} "
        f"to replay, {counts['voided']} voided, {counts['unreadable']} unreadable; "
        f"written to {out}. Next: invctl sales replay {out}"
    )


def _warn_if_plain_http(settings: AgentSettings, log: EventLog) -> None:
    """One warning for each central URL that is plain http:// to another machine."""
    for url in settings.central_urls:
        if is_plain_http_to_remote(url):
            log.warning(
                "central.plain_http",
                central=url,
                hint="--insecure: the store's API key crosses the network in clear",
            )


def main() -> None:
    os.umask(0o077)  # the replica, its -wal and -shm, the terminal token: this user's only
    app()
