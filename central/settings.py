"""Central's settings: CLI flags, then environment, then a TOML file, then defaults."""

from __future__ import annotations

import os
import secrets
import stat
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from central.errors import ConfigError

MIN_SECRET_BYTES = 32

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
    outbox_retention_seconds: int = 3600
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
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
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
    if settings.token_ttl_seconds <= 0:
        raise ConfigError("token_ttl_seconds must be positive")
    return _kafka_security(settings)


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
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{name} {path} is accessible to other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )
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
