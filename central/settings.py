"""Central's settings: CLI flags, then environment, then a TOML file, then defaults."""

from __future__ import annotations

import math
import os
import secrets
import ssl
import tomllib
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from invwire.errors.central import ConfigError, ConfigFileInsecure
from invwire.files import not_private, shared_mode

MIN_SECRET_BYTES = 32
# A JWT secret also needs variety: 32 spaces, or "abab...", are long but guessable.
MIN_SECRET_DISTINCT_CHARS = 10
MIN_SECRET_ENTROPY_BITS = 80  # estimated from character frequencies; random hex of 32+ has ~90+
MIN_TOKEN_TTL_S = 60
MAX_TOKEN_TTL_S = 24 * 3600
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

ENV_NAMES = {
    "database_url": "INVCTL_DATABASE_URL",
    "kafka": "INVCTL_KAFKA",
    "jwt_secret": "INVCTL_JWT_SECRET",
    "topic_prefix": "INVCTL_TOPIC_PREFIX",
    "token_ttl_seconds": "INVCTL_TOKEN_TTL",
    "log_level": "INVCTL_LOG_LEVEL",
    "kafka_security_protocol": "INVCTL_KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "INVCTL_KAFKA_SASL_MECHANISM",
    "kafka_ca_file": "INVCTL_KAFKA_CA_FILE",
    "kafka_username": "INVCTL_KAFKA_USERNAME",
    "kafka_password_file": "INVCTL_KAFKA_PASSWORD_FILE",
    "kafka_password": "INVCTL_KAFKA_PASSWORD",
    "kafka_admin_username": "INVCTL_KAFKA_ADMIN_USERNAME",
    "kafka_admin_password_file": "INVCTL_KAFKA_ADMIN_PASSWORD_FILE",
    "ssl_certfile": "INVCTL_SSL_CERTFILE",
    "ssl_keyfile": "INVCTL_SSL_KEYFILE",
    "max_body_bytes": "INVCTL_MAX_BODY_BYTES",
    "max_import_bytes": "INVCTL_MAX_IMPORT_BYTES",
    "limit_concurrency": "INVCTL_LIMIT_CONCURRENCY",
    "backlog": "INVCTL_BACKLOG",
    "max_header_bytes": "INVCTL_MAX_HEADER_BYTES",
    "api_docs": "INVCTL_API_DOCS",
    "workers": "INVCTL_WORKERS",
    "allowance_margin_s": "INVCTL_ALLOWANCE_MARGIN_S",
}

KAFKA_PROTOCOLS = ("PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("invctl"))


@dataclass(frozen=True)
class Settings:
    database_url: str = ""
    kafka: str = ""
    jwt_secret: str = field(default="", repr=False)
    topic_prefix: str = ""
    token_ttl_seconds: int = 3600
    host: str = "127.0.0.1"
    port: int = 8000
    relay: bool = True
    relay_poll_seconds: float = 0.5
    # How often the lease holder looks for rows other processes committed (its own commits
    # wake it at once): other workers' and hosts' events wait this long at most.
    relay_leader_poll_seconds: float = 0.02
    # A busy relay (its last round published GATHER_FROM records or more) starts its next
    # round this long after the last one began: fewer, larger batches (docs/operations.md).
    relay_gather_seconds: float = 0.02
    # A relay that stops renewing (SIGKILLed, cut off) is replaced once this runs out, on the
    # database's clock; the holder renews once a third has passed (docs/operations.md).
    relay_lease_seconds: float = 3.0
    outbox_retention_seconds: int = 3600
    # /readyz says `relay: failing` once an event has waited this long (docs/operations.md).
    relay_failing_after_seconds: float = 30.0
    # How often the relay checks Kafka's topics for lost records besides after a failure.
    relay_audit_seconds: float = 300.0
    replication_factor: int = 0
    dev: bool = False
    log_level: str = "INFO"
    jwt_issuer: str = "invctl-central"
    jwt_audience: str = "invctl"
    # Central's own Kafka credential (the relay's), and the admin's that provisions the
    # stores' identities, creates topics and reads lag. Passwords are read from 0600 files.
    # Secure by default: PLAINTEXT only when asked for.
    kafka_security_protocol: str = "SASL_SSL"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_ca_file: str = ""
    kafka_username: str = ""
    kafka_password_file: str = ""
    kafka_password: str = field(default="", repr=False)
    kafka_admin_username: str = ""
    kafka_admin_password_file: str = ""
    kafka_admin_password: str = field(default="", repr=False)
    # HTTPS for `serve`: a PEM certificate (chain) and its private key (a 0600 file).
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    # Login throttling (central.services.throttle): a limit of 0 switches that key off.
    login_user_limit: int = 5
    login_address_limit: int = 20
    login_window_seconds: int = 900
    login_lock_seconds: int = 60
    login_max_lock_seconds: int = 900
    # The HTTP edge. A body over its limit is answered 413 before it is read (invwire.limits).
    max_body_bytes: int = 1024 * 1024
    # An import's body is read and parsed before its caller is authenticated, so its limit is
    # what anyone may make central parse: the largest request the route takes, 1,000 rows of
    # the longest valid text (2,400 characters a row) with every character sent as a 6-byte
    # \uXXXX escape, is about 14.7 MB. invctl sends 500 rows a request, as UTF-8.
    max_import_bytes: int = 16 * 1024 * 1024
    # uvicorn answers 503 (text/plain) to a request arriving while this many connections are
    # open or requests in progress. Idle keep-alive connections count, so it must stay well
    # above the fleet's connections (an agent holds one or two); it stays below the usual
    # 1,024 open files, so overload is a 503 rather than failed accept()s.
    limit_concurrency: int = 512
    backlog: int = 2048  # connections the kernel queues before central accepts them
    max_header_bytes: int = 16 * 1024  # the request line and headers (h11's default)
    api_docs: bool = True  # /docs, /redoc and /openapi.json
    # `serve`: API processes sharing the port, each with its own relay (central.supervisor).
    workers: int = 1
    # Clock skew allowed for between central and a store: the agent stops selling under a
    # grant this long before its expiry, central settles it this long after.
    allowance_margin_s: int = 300

    @property
    def kafka_admin(self) -> bool:
        """An admin credential is configured: central provisions the Kafka identities."""
        return bool(self.kafka and self.kafka_admin_username)

    def topic(self, base: str) -> str:
        return f"{self.topic_prefix}{base}"


def load(
    overrides: dict[str, Any] | None = None,
    config_file: Path | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    """Merge the sources and check the result; raises ConfigError with a clear message."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_toml(config_file))
    values.update({k: env[name] for k, name in ENV_NAMES.items() if env.get(name)})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    settings = Settings(**_coerce(values))
    return _finish(settings)


def _read_toml(path: Path) -> dict[str, Any]:
    """The file may hold the JWT secret or a password, so only its owner may read it."""
    try:
        _check_private(path, "config file")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    section = data.get("central", data)
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
    return dict(section)


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    types = {f.name: f.type for f in fields(Settings)}
    out: dict[str, Any] = {}
    for name, raw in values.items():
        kind = types[name]
        try:
            if kind == "int":
                out[name] = int(raw)
            elif kind == "float":
                out[name] = float(raw)
            elif kind == "bool":
                out[name] = raw if isinstance(raw, bool) else str(raw).lower() in {"1", "true"}
            else:
                out[name] = str(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {name} must be {kind}, got {raw!r}") from None
    return out


def _finish(settings: Settings) -> Settings:
    if not settings.database_url:
        path = default_data_dir() / "central.db"
        settings = replace(settings, database_url=f"sqlite:///{path}")
    if not settings.jwt_secret:
        if not settings.dev:
            raise ConfigError(
                "INVCTL_JWT_SECRET is not set: set it to a random string of at least "
                f"{MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`), or use --dev"
            )
        settings = replace(settings, jwt_secret=_dev_secret())
    if len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"INVCTL_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long")
    weakness = None if settings.dev else secret_weakness(settings.jwt_secret)
    if weakness:
        raise ConfigError(
            f"INVCTL_JWT_SECRET is guessable ({weakness}): set it to a random string, "
            "e.g. `openssl rand -hex 32`"
        )
    if not MIN_TOKEN_TTL_S <= settings.token_ttl_seconds <= MAX_TOKEN_TTL_S:
        raise ConfigError(
            f"INVCTL_TOKEN_TTL (token_ttl_seconds) must be {MIN_TOKEN_TTL_S} to "
            f"{MAX_TOKEN_TTL_S} seconds, got {settings.token_ttl_seconds}"
        )
    if not 0 <= settings.port <= 65535:
        raise ConfigError(f"port must be 0 to 65535, got {settings.port}")
    settings = replace(settings, log_level=_log_level(settings.log_level))
    _check_http_limits(settings)
    _check_relay_timing(settings)
    _check_workers(settings)
    _check_allowance_margin(settings)
    return _kafka_security(_tls(settings))


# The relay's timings (config file only), in seconds: 0 or less would report every event as
# failing, or audit Kafka's topics without pause.
RELAY_TIMINGS = {
    "relay_failing_after_seconds": (1.0, 86_400.0),
    "relay_audit_seconds": (10.0, 86_400.0),
    "relay_lease_seconds": (1.0, 300.0),
    "relay_poll_seconds": (0.05, 100.0),
    "relay_leader_poll_seconds": (0.005, 100.0),
    "relay_gather_seconds": (0.0, 1.0),
}


def _check_relay_timing(settings: Settings) -> None:
    for name, (low, high) in RELAY_TIMINGS.items():
        value = getattr(settings, name)
        if not low <= value <= high:
            raise ConfigError(f"setting {name} must be {low:g} to {high:g} seconds, got {value}")
    # The holder renews at its first round once a third of the lease has passed: it must get
    # a round before the lease runs out, and a standby must look soon after it has.
    if settings.relay_poll_seconds > settings.relay_lease_seconds / 3:
        raise ConfigError(
            f"setting relay_poll_seconds ({settings.relay_poll_seconds:g}) must be at most a "
            f"third of relay_lease_seconds ({settings.relay_lease_seconds:g})"
        )
    if settings.relay_leader_poll_seconds > settings.relay_poll_seconds:
        raise ConfigError(
            f"setting relay_leader_poll_seconds ({settings.relay_leader_poll_seconds:g}) must "
            f"be at most relay_poll_seconds ({settings.relay_poll_seconds:g})"
        )


MAX_WORKERS = 64
MAX_ALLOWANCE_MARGIN_S = 86_400


def _check_allowance_margin(settings: Settings) -> None:
    if not 0 <= settings.allowance_margin_s <= MAX_ALLOWANCE_MARGIN_S:
        raise ConfigError(
            "INVCTL_ALLOWANCE_MARGIN_S (allowance_margin_s) must be a whole number of seconds "
            f"from 0 to {MAX_ALLOWANCE_MARGIN_S}, got {settings.allowance_margin_s}"
        )


def _check_workers(settings: Settings) -> None:
    if not 1 <= settings.workers <= MAX_WORKERS:
        raise ConfigError(
            f"INVCTL_WORKERS (workers, --workers) must be a whole number from 1 to "
            f"{MAX_WORKERS}, got {settings.workers}"
        )


# Each HTTP limit's range: 0 or less is a mistake, and so is a number no server should take.
HTTP_LIMITS = {
    "max_body_bytes": (1, 1024**3),
    "max_import_bytes": (1, 1024**3),
    "limit_concurrency": (1, 100_000),
    "backlog": (1, 65_535),
    "max_header_bytes": (1024, 1024**2),
}


def _check_http_limits(settings: Settings) -> None:
    for name, (low, high) in HTTP_LIMITS.items():
        value = getattr(settings, name)
        if not low <= value <= high:
            raise ConfigError(
                f"{ENV_NAMES[name]} ({name}) must be a whole number from {low} to {high}, "
                f"got {value}"
            )


def secret_weakness(secret: str) -> str | None:
    """Why a JWT secret of the right length is still guessable, or None when it is not."""
    counts = Counter(secret)
    if len(counts) < MIN_SECRET_DISTINCT_CHARS:
        return (
            f"only {len(counts)} different characters; at least "
            f"{MIN_SECRET_DISTINCT_CHARS} are needed"
        )
    if _repeats_a_shorter_string(secret):
        return "it repeats a shorter string"
    bits = -sum(n * math.log2(n / len(secret)) for n in counts.values())
    if bits < MIN_SECRET_ENTROPY_BITS:
        return f"about {bits:.0f} bits of entropy; at least {MIN_SECRET_ENTROPY_BITS} are needed"
    return None


def _repeats_a_shorter_string(text: str) -> bool:
    """Whether `text` is one shorter piece repeated (e.g. "0123456789" four times): such a
    text is found inside its own doubling, shifted by less than its length."""
    return text in (text + text)[1:-1]


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"INVCTL_LOG_LEVEL (log_level) must be one of {', '.join(LOG_LEVELS)}, got {raw!r}"
        )
    return level


def _tls(settings: Settings) -> Settings:
    """Both files or neither; the key private; the pair loadable (checked now, not by the
    first client). The paths are kept expanded, as uvicorn will open them."""
    cert, key = settings.ssl_certfile, settings.ssl_keyfile
    if not cert and not key:
        return settings
    if not (cert and key):
        raise ConfigError(
            "INVCTL_SSL_CERTFILE and INVCTL_SSL_KEYFILE (--ssl-certfile, --ssl-keyfile) go "
            "together: set both for HTTPS, or neither"
        )
    cert_path, key_path = Path(cert).expanduser(), Path(key).expanduser()
    try:
        for path in (cert_path, key_path):
            path.open("rb").close()
        _check_private(key_path, "TLS key file")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        # an encrypted key would make OpenSSL prompt on the terminal; an empty passphrase fails
        context.load_cert_chain(cert_path, key_path, password=lambda: b"")
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            raise ConfigError(
                f"cannot use the TLS certificate {cert_path} with the key {key_path}: "
                f"{exc.reason or exc} (PEM files, the key unencrypted and matching the "
                "certificate)"
            ) from None
        raise ConfigError(f"cannot read TLS file {exc.filename}: {exc.strerror or exc}") from None
    return replace(settings, ssl_certfile=str(cert_path), ssl_keyfile=str(key_path))


def _check_private(path: Path, what: str) -> None:
    """Refuse a secret file its group or other users may access (stat's OSError passes)."""
    mode = path.stat().st_mode
    if shared_mode(mode):
        raise ConfigFileInsecure(not_private(path, what, mode), path=str(path))


def _kafka_security(settings: Settings) -> Settings:
    protocol = settings.kafka_security_protocol.upper()
    if protocol not in KAFKA_PROTOCOLS:
        raise ConfigError(
            f"INVCTL_KAFKA_SECURITY_PROTOCOL must be {' or '.join(KAFKA_PROTOCOLS)}, "
            f"got {settings.kafka_security_protocol!r}"
        )
    mechanism = settings.kafka_sasl_mechanism.upper()
    if mechanism not in SASL_MECHANISMS:
        raise ConfigError(
            f"INVCTL_KAFKA_SASL_MECHANISM must be {' or '.join(SASL_MECHANISMS)}, "
            f"got {settings.kafka_sasl_mechanism!r}"
        )
    settings = replace(
        settings,
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_password=_password(
            settings.kafka_password, settings.kafka_password_file, "INVCTL_KAFKA_PASSWORD"
        ),
        kafka_admin_password=_password(
            settings.kafka_admin_password,
            settings.kafka_admin_password_file,
            "INVCTL_KAFKA_ADMIN_PASSWORD",
        ),
    )
    credentials = (settings.kafka_username, settings.kafka_password)
    admin = (settings.kafka_admin_username, settings.kafka_admin_password)
    if protocol == "PLAINTEXT":
        if any(credentials + admin):
            raise ConfigError(
                "Kafka credentials are set but INVCTL_KAFKA_SECURITY_PROTOCOL is PLAINTEXT, "
                "which would send none of them: set it to SASL_SSL"
            )
        return settings
    if any(admin) and not all(admin):
        raise ConfigError(
            "INVCTL_KAFKA_ADMIN_USERNAME and INVCTL_KAFKA_ADMIN_PASSWORD_FILE go together"
        )
    if settings.kafka_ca_file and not Path(settings.kafka_ca_file).is_file():
        raise ConfigError(
            f"INVCTL_KAFKA_CA_FILE {settings.kafka_ca_file} is not a file: point it at the "
            "cluster's CA certificate (PEM), or unset it to trust the system's CAs"
        )
    if settings.kafka_ca_file and not os.access(settings.kafka_ca_file, os.R_OK):
        raise ConfigError(f"cannot read INVCTL_KAFKA_CA_FILE {settings.kafka_ca_file}")
    missing = [
        name
        for name, value in (
            ("INVCTL_KAFKA_USERNAME", settings.kafka_username),
            ("INVCTL_KAFKA_PASSWORD_FILE (or INVCTL_KAFKA_PASSWORD)", settings.kafka_password),
        )
        if not value
    ]
    if settings.kafka and missing:  # without INVCTL_KAFKA nothing logs in
        raise ConfigError(
            "INVCTL_KAFKA_SECURITY_PROTOCOL is SASL_SSL (the default), so central needs its "
            f"own Kafka login: set {' and '.join(missing)}; for a broker without TLS and "
            "logins set INVCTL_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"
        )
    return settings


def _password(value: str, path: str, name: str) -> str:
    if value and path:
        raise ConfigError(f"set {name} or {name}_FILE, not both")
    return read_secret_file(Path(path), f"{name}_FILE") if path else value


def read_secret_file(path: Path, name: str) -> str:
    """A secret from a file only its owner may read or write (like `chmod 600`)."""
    path = path.expanduser()
    try:
        mode = path.stat().st_mode
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {name} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name} {path} is not UTF-8 text") from None
    if shared_mode(mode):
        raise ConfigFileInsecure(not_private(path, name, mode), path=str(path))
    if not secret:
        raise ConfigError(f"{name} {path} is empty")
    return secret


def _dev_secret() -> str:
    """A random per-installation secret, kept in a 0600 file so dev tokens survive restarts."""
    path = default_data_dir() / "dev-jwt-secret"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret
