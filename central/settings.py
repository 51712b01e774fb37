"""Central's settings: CLI flags, then environment, then a TOML file, then defaults."""

from __future__ import annotations

import os
import secrets
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
}


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
    return settings


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
