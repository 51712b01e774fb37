"""`central`: serve the API, run the outbox relay, make the first admin, migrate."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from invwire import tracing
from invwire.errors.central import CentralError, ConfigError, RecoveryRefused
from invwire.tracing import TracingUnavailable

# The service name central's spans carry unless OTEL_SERVICE_NAME names another.
TRACING_SERVICE = "invctl-central"

app = typer.Typer(
    help="invctl central: the inventory API and its Kafka outbox relay.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML file with a [central] table.")
]
DevOpt = Annotated[
    bool, typer.Option("--dev", help="Development mode: a generated JWT secret is allowed.")
]
DatabaseOpt = Annotated[
    str | None, typer.Option("--database-url", help="Overrides INVCTL_DATABASE_URL.")
]
KafkaOpt = Annotated[str | None, typer.Option("--kafka", help="Overrides INVCTL_KAFKA.")]


def _settings(**overrides: Any) -> Any:
    from central import settings

    config = overrides.pop("config", None)
    return settings.load(overrides, config_file=config)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    no_relay: Annotated[
        bool, typer.Option("--no-relay", help="Do not run the outbox relay in this process.")
    ] = False,
    config: ConfigOpt = None,
    dev: DevOpt = False,
    database_url: DatabaseOpt = None,
    kafka: KafkaOpt = None,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(
            "--ssl-certfile",
            help="Serve HTTPS with this PEM certificate (chain); with --ssl-keyfile. "
            "Env: INVCTL_SSL_CERTFILE.",
        ),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(
            "--ssl-keyfile",
            help="The certificate's private key (PEM, unencrypted, mode 600). "
            "Env: INVCTL_SSL_KEYFILE.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="API processes sharing the port, 1 to 64 (default 1). Each runs its own "
            "relay; one publishes at a time. A worker that dies is restarted; every log line "
            "carries its pid. Env: INVCTL_WORKERS.",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (and, unless --no-relay, the outbox relay).

    Example: INVCTL_JWT_SECRET=$(openssl rand -hex 32) central serve --port 8000
    --workers 2 --ssl-certfile /etc/invctl/central.pem --ssl-keyfile /etc/invctl/central.key
    """
    import uvicorn

    from central.api import create_app
    from central.app import bootstrap
    from central.supervisor import prepare_once, serve_workers, server_config
    from invwire.logs import configure_logging

    s = _settings(
        host=host,
        port=port,
        relay=not no_relay,
        config=config,
        dev=dev or None,
        database_url=database_url,
        kafka=kafka,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        workers=workers,
    )
    if s.workers > 1:
        configure_logging(s.log_level, fields={"pid": os.getpid()})
        prepare_once(s)
        _warn_if_plain_http(s)
        serve_workers(s)
        return
    configure_logging(s.log_level)
    favour_latency()
    start_tracing()
    central = bootstrap(s)
    _refuse_if_behind_kafka(central)
    _warn_if_plain_http(s)  # once the configuration is known to be good: else one line only
    server = uvicorn.Server(server_config(create_app(central), s))
    # uvicorn re-raises the signal it caught once it has shut down, to whatever handler was
    # installed before it: ours, so that a SIGTERM ends in a clean exit 0, not death by signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, server.handle_exit)
    try:
        server.run()
    finally:
        central.close()
        tracing.shutdown()


@app.command()
def relay(
    config: ConfigOpt = None,
    dev: DevOpt = False,
    database_url: DatabaseOpt = None,
    kafka: KafkaOpt = None,
) -> None:
    """Run the outbox relay alone (when `central serve --no-relay` runs elsewhere).

    Example: INVCTL_KAFKA=kafka-1:9093 INVCTL_KAFKA_USERNAME=central-relay
    INVCTL_KAFKA_PASSWORD_FILE=/etc/invctl/relay.password central relay
    """
    from central.app import bootstrap
    from invwire.logs import configure_logging

    s = _settings(config=config, dev=dev or None, database_url=database_url, kafka=kafka)
    configure_logging(s.log_level)
    if not s.kafka:
        raise ConfigError("INVCTL_KAFKA is not set: the relay has nowhere to publish")
    start_tracing()
    central = bootstrap(s, with_relay=True)
    _refuse_if_behind_kafka(central)
    assert central.relay is not None
    relay_ = central.relay
    signal.signal(signal.SIGTERM, lambda *_: relay_.stop())
    signal.signal(signal.SIGINT, lambda *_: relay_.stop())
    try:
        relay_.run()
    finally:
        central.close()
        tracing.shutdown()


@app.command()
def republish(
    config: ConfigOpt = None, dev: DevOpt = False, database_url: DatabaseOpt = None
) -> None:
    """Put central's whole current state back on Kafka: one event per category, product and
    stock row, at its current version, written to the outbox for the relay to publish
    (agents that hold a row drop its event as stale; a new store bootstraps from them).

    Example: INVCTL_DATABASE_URL=mysql://invctl:pw@db:3306/invctl central republish
    """
    from central.app import bootstrap
    from central.services.republish import republish as republish_state

    s = _settings(config=config, dev=dev or None, database_url=database_url)
    central = bootstrap(s, with_relay=False)
    try:
        done = republish_state(central.uow)
    finally:
        central.close()
    typer.echo(
        f"republished {done.categories} categories, {done.products} products and "
        f"{done.stock} stock rows: {done.events} events in the outbox for the relay"
    )


@app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Argument(help="The admin's user name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    config: ConfigOpt = None,
    dev: DevOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Create an admin user (there is no default account).

    Example: printf '%s' "$PW" | central create-admin alice --password-stdin
    """
    from central.app import bootstrap
    from central.services import accounts
    from central.services.principal import Role

    s = _settings(config=config, dev=dev or None, database_url=database_url)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else _prompt_password()
    central = bootstrap(s, with_relay=False)
    try:
        user = accounts.create_user(
            central.uow(), accounts.NewUser(username=username, password=password, role=Role.ADMIN)
        )
    finally:
        central.close()
    typer.echo(f"created admin {user['username']}")


@app.command()
def migrate(
    config: ConfigOpt = None, dev: DevOpt = False, database_url: DatabaseOpt = None
) -> None:
    """Apply pending schema migrations (serve does this on start too).

    Example: INVCTL_DATABASE_URL=mysql://invctl:pw@db:3306/invctl central migrate
    """
    from central.app import open_database

    s = _settings(config=config, dev=dev or None, database_url=database_url)
    db = open_database(s)
    db.close()
    typer.echo("schema is up to date")


@app.command()
def backup(
    to: Annotated[
        Path, typer.Option("--to", help="The backup file to write; it must not exist yet.")
    ],
    config: ConfigOpt = None,
    dev: DevOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Write an online, consistent backup of central's database to one file.

    Central keeps running. FILE (0600) is a tar of the snapshot and its manifest (SHA-256,
    the outbox position it covers, row counts). MariaDB: needs mariadb-dump. See
    docs/operations.md, "Backing up and restoring central".

    Example: central backup --to /var/backups/invctl/central-$(date +%Y%m%dT%H%M).backup
    """
    from central.backup import describe, make_backup
    from central.models import utcnow

    s = _settings(config=config, dev=dev or None, database_url=database_url)
    manifest = make_backup(s.database_url, to, utcnow())
    facts = describe(manifest)
    typer.echo(
        f"backup {to}: {manifest.database}, schema {facts['schema_version']}, epoch "
        f"{facts['epoch']}, outbox position {facts['outbox_position']}, "
        f"{facts['counts']['orders']} orders, sha256 {manifest.sha256}"
    )


@app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="A file written by `central backup`.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Replace the database without asking.")
    ] = False,
    config: ConfigOpt = None,
    dev: DevOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Replace central's database with a backup; the restored database starts a new epoch.

    Every central process must be stopped first. The backup's checksum is checked before
    anything changes; a replaced SQLite database is kept beside it. See docs/operations.md,
    "Backing up and restoring central".

    Example: systemctl stop central && central restore /var/backups/invctl/x.backup --yes
    """
    from central.models import utcnow
    from central.restore import restore_backup

    s = _settings(config=config, dev=dev or None, database_url=database_url)
    done = restore_backup(
        s.database_url, file, utcnow(), lambda manifest, where: yes or _confirm_restore(where)
    )
    was = "none, lost or empty" if done.previous_epoch is None else str(done.previous_epoch)
    typer.echo(
        f"restored {file} (taken {done.manifest.created_at.isoformat(timespec='seconds')}Z, "
        f"outbox position {done.manifest.facts.outbox_position}): epoch {done.epoch} "
        f"(the replaced database's: {was})"
    )
    if done.kept_aside is not None:
        typer.echo(f"the replaced database is kept as {done.kept_aside}")


@app.command("confirm-restore")
def confirm_restore(
    yes: Annotated[
        bool, typer.Option("--yes", help="Record the new epoch without asking.")
    ] = False,
    config: ConfigOpt = None,
    dev: DevOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Confirm that the database was restored by other means than `central restore` (a file
    copied back, a dump loaded by hand): record a new epoch, without loading anything.

    Central refuses to start on a database behind what it already published to Kafka until
    this is done; its relay then republishes the whole state at the new epoch, from which
    the stores rebuild. Every central process must be stopped first. See
    docs/operations.md, "Backing up and restoring central".

    Example: systemctl stop central && central confirm-restore --yes && systemctl start central
    """
    from central.confirm_restore import confirm_restored
    from central.models import utcnow

    s = _settings(config=config, dev=dev or None, database_url=database_url)
    done = confirm_restored(s.database_url, utcnow(), lambda where: yes or _confirm_epoch(where))
    typer.echo(
        f"confirmed the restore of {done.where}: epoch {done.epoch} (was {done.previous}); "
        "the relay republishes the whole state at this epoch when central starts"
    )


@app.command()
def status(config: ConfigOpt = None, dev: DevOpt = False, database_url: DatabaseOpt = None) -> None:
    """Show the database's epoch (one more at each restore), its schema, its last restore and
    which process holds the relay lease (`host:pid:random`).

    Example: central status
    """
    from central import migrations, models
    from central.db import connect
    from central.epochs import current_epoch, last_restore
    from central.outbox import lease_status
    from central.restore import close_database

    s = _settings(config=config, dev=dev or None, database_url=database_url)
    db = connect(s.database_url)
    try:
        with db.bind_ctx(models.ALL_MODELS, bind_refs=False, bind_backrefs=False):
            epoch, pending, restored = current_epoch(db), migrations.pending(db), last_restore(db)
            lease = lease_status(db) if not pending else "relay lease: unknown until migrated"
    finally:
        close_database(db)
    typer.echo(f"epoch {epoch}")
    typer.echo(f"schema: {len(pending)} migration(s) pending" if pending else "schema: up to date")
    if restored is not None:
        typer.echo(
            f"last restore: {models.as_utc(restored.started_at)}, of a backup taken "
            f"{models.as_utc(restored.backup_created_at)} (epoch {restored.backup_epoch}, "
            f"outbox position {restored.backup_outbox_position})"
        )
    typer.echo(lease)


def _confirm_restore(where: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return bool(typer.confirm(f"Replace the content of the database {where}?", default=False))


def _confirm_epoch(where: str) -> bool:
    if not sys.stdin.isatty():
        return False
    question = f"Record a new epoch for the restored database {where}?"
    return bool(typer.confirm(question, default=False))


def _refuse_if_behind_kafka(central: Any) -> None:
    """Before serving or relaying: refuse (exit 2, central.behind_kafka) a database behind
    what central already published to Kafka; when Kafka cannot be read, start all the same
    and leave the check to the relay (central.kafka_position.check_at_start)."""
    from central.app import build_positions
    from central.kafka_position import check_at_start

    positions = build_positions(central.settings)
    if positions is None:
        return
    try:
        check_at_start(positions, central.db, central.epoch)
    except BaseException:
        central.close()
        raise


def _warn_if_plain_http(s: Any) -> None:
    """Plain HTTP beyond loopback is allowed (a TLS proxy may terminate in front), but said."""
    from invwire.logs import EventLog
    from invwire.transport import is_loopback_host

    if not s.ssl_certfile and not is_loopback_host(s.host):
        EventLog("central").warning(
            "serve.plain_http",
            host=s.host,
            hint="passwords, tokens and store keys cross the network in clear unless a TLS "
            "proxy terminates in front; or serve HTTPS with --ssl-certfile/--ssl-keyfile",
        )


def start_tracing() -> None:
    """Export spans when the OTEL_* variables ask for it (invwire.tracing); asked for and
    impossible (no exporter installed) is a configuration error: TracingUnavailable, exit 2."""
    tracing.setup(TRACING_SERVICE)


def favour_latency() -> None:
    """Hand the GIL over every 0.5 ms instead of 5 ms: the relay, Kafka's IO thread and the
    request threads pass work to each other, and each hand-off could otherwise wait 5 ms."""
    sys.setswitchinterval(0.0005)


def _prompt_password() -> str:
    first = typer.prompt("Password", hide_input=True)
    if typer.prompt("Repeat password", hide_input=True) != first:
        raise CentralError("the passwords do not match")
    return str(first)


def main() -> None:
    """The one boundary: a configuration error is one line on stderr and exit 2; any other
    error is logged (with its traceback, as one JSON line), then one line, and exit 1."""
    from invwire.logs import EventLog, configure_logging

    os.umask(0o077)  # central.db, its -wal and -shm, the dev secret: this user's only
    configure_logging("WARNING")  # until a command knows the configured level
    try:
        app()
    except (ConfigError, RecoveryRefused, TracingUnavailable) as exc:  # before any change
        _fail(2, exc.message, exc.code)
    except CentralError as exc:
        _fail(1, exc.message, exc.code)
    except Exception as exc:
        EventLog("central").error("central.crashed", exc=True, error=type(exc).__name__)
        _fail(1, f"internal error: {type(exc).__name__}: {exc} (traceback logged)", "internal")


def _fail(code: int, message: str, error_code: str) -> None:
    typer.echo(f"central: {' '.join(message.splitlines())} [{error_code}]", err=True)
    sys.exit(code)
