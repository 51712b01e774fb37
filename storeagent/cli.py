"""`storeagent` command line: parse flags, build the agent, run it, map errors to exit codes.

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 runtime failure (systemd restarts the agent),
2 invalid configuration. Errors are one JSON log line on stderr with a stable `code`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from invwire.logs import EventLog, configure_logging
from storeagent.app import bootstrap
from storeagent.errors import AgentError, ConfigError
from storeagent.ops.notify import systemd_link
from storeagent.settings import load_settings

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
        str | None, typer.Option(help="Central API base URL. Env: STOREAGENT_CENTRAL.")
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
        bool, typer.Option("--allow-remote", help="Allow a non-loopback listen address.")
    ] = False,
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
) -> None:
    """Run the agent until SIGTERM.

    Example: storeagent run --store-id s1 --central http://central:8000 --kafka 10.0.0.5:9092
    """
    configure_logging()
    # The sync loop, Kafka's IO thread and the HTTP server hand work to each other: switch
    # the GIL every 0.5 ms instead of 5 ms so each hand-off does not add milliseconds.
    sys.setswitchinterval(0.0005)
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
        "heartbeat_seconds": heartbeat_seconds,
        "offline": offline,
        "offline_max_units_per_order": offline_max_units_per_order,
        "offline_max_queued_units": offline_max_queued_units,
        "offline_max_age": offline_max_age,
    }
    try:
        settings = load_settings(flags, os.environ, config)
        configure_logging(fields={"store_id": settings.store_id})
        agent = bootstrap(settings, systemd=systemd_link(os.environ))
        code = agent.serve()
    except ConfigError as exc:
        log.error("agent.config_invalid", code=exc.code, message=exc.message, **exc.details)
        raise typer.Exit(2) from None
    except AgentError as exc:
        log.error("agent.failed", code=exc.code, message=exc.message, **exc.details)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def main() -> None:
    app()
