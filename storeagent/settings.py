"""Agent settings: CLI flags, then environment, then a TOML file (--config), then defaults.

Environment names: STOREAGENT_STORE_ID, STOREAGENT_CENTRAL, STOREAGENT_KAFKA (falling back
to INVCTL_KAFKA), STOREAGENT_KAFKA_SECURITY_PROTOCOL (falling back to
INVCTL_KAFKA_SECURITY_PROTOCOL), STOREAGENT_KAFKA_CA_FILE (falling back to
INVCTL_KAFKA_CA_FILE), STOREAGENT_DB, STOREAGENT_LISTEN, STOREAGENT_API_KEY (the key itself),
STOREAGENT_TOPIC_PREFIX (falling back to INVCTL_TOPIC_PREFIX), STOREAGENT_HEARTBEAT_SECONDS,
STOREAGENT_OFFLINE, STOREAGENT_OFFLINE_MAX_UNITS_PER_ORDER, STOREAGENT_OFFLINE_MAX_QUEUED_UNITS,
STOREAGENT_OFFLINE_MAX_AGE, STOREAGENT_TERMINAL_TOKEN_FILE, STOREAGENT_METRICS_PORT. TOML keys:
store_id, central, kafka, kafka_security_protocol, kafka_ca_file, db, listen, api_key_file,
topic_prefix, allow_remote, heartbeat_seconds, offline, offline_max_units_per_order,
offline_max_queued_units, offline_max_age, terminal_token_file, metrics_port.

The store terminal API (`listen`) is always on loopback. The metrics listener (`metrics_port`:
/metrics, /healthz, /readyz only; off by default) shares its address, or with `allow_remote`
listens on every interface (0.0.0.0).

Kafka security: PLAINTEXT, or SASL_SSL (TLS, and SCRAM-SHA-512 as the store's own Kafka user,
whose password is the store's API key; see sync.kafka_login). The API key is never logged.

Central's URL is https://, or http:// to loopback: the API key travels with every request, so
plain http:// to another machine needs `insecure` (--insecure, STOREAGENT_INSECURE=1, or
`insecure = true` in the TOML file). `central` may name several URLs, comma-separated (a chain
without a load balancer): each is checked so, and a call that cannot connect to one is sent
to the next (invwire.failover).

`accept_lost_queue` (--accept-lost-queue, STOREAGENT_ACCEPT_LOST_QUEUE=1; never from the TOML
file: it is a decision for one start) lets the agent start although central last heard of
queued sales this replica does not hold (sales.lost_queue), once an operator salvaged them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from invwire.errors.agent import (
    ConfigError,
    ConfigFileError,
    ConfigMissing,
    InsecureTransport,
    KeyFileInsecure,
    ListenRefused,
)
from invwire.files import SharedFile, UnusableFile, check_sqlite_path, read_private_text
from invwire.identity import consumer_group, kafka_username
from invwire.rules import is_store_id
from invwire.transport import is_plain_http_to_remote, split_url_list, without_credentials
from storeagent.http.token import TOKEN_FILE_NAME
from storeagent.sales.offline_policy import DEFAULT_POLICY, OfflinePolicy

DEFAULT_KAFKA = "127.0.0.1:9092"
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_SSL")
# The one place the default changes when every deployment's brokers require TLS + SCRAM.
DEFAULT_KAFKA_SECURITY_PROTOCOL = "SASL_SSL"
DEFAULT_LISTEN = "127.0.0.1:8787"
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 (the metrics listener, and only with allow_remote)
DEFAULT_HEARTBEAT_S = 10.0
MAX_HEARTBEAT_S = 3600.0

ENV_NAMES: dict[str, tuple[str, ...]] = {
    "store_id": ("STOREAGENT_STORE_ID",),
    "central": ("STOREAGENT_CENTRAL",),
    "kafka": ("STOREAGENT_KAFKA", "INVCTL_KAFKA"),
    "kafka_security_protocol": (
        "STOREAGENT_KAFKA_SECURITY_PROTOCOL",
        "INVCTL_KAFKA_SECURITY_PROTOCOL",
    ),
    "kafka_ca_file": ("STOREAGENT_KAFKA_CA_FILE", "INVCTL_KAFKA_CA_FILE"),
    "db": ("STOREAGENT_DB",),
    "listen": ("STOREAGENT_LISTEN",),
    "topic_prefix": ("STOREAGENT_TOPIC_PREFIX", "INVCTL_TOPIC_PREFIX"),
    "heartbeat_seconds": ("STOREAGENT_HEARTBEAT_SECONDS",),
    "offline": ("STOREAGENT_OFFLINE",),
    "offline_max_units_per_order": ("STOREAGENT_OFFLINE_MAX_UNITS_PER_ORDER",),
    "offline_max_queued_units": ("STOREAGENT_OFFLINE_MAX_QUEUED_UNITS",),
    "offline_max_age": ("STOREAGENT_OFFLINE_MAX_AGE",),
    "terminal_token_file": ("STOREAGENT_TERMINAL_TOKEN_FILE",),
    "metrics_port": ("STOREAGENT_METRICS_PORT",),
    "insecure": ("STOREAGENT_INSECURE",),
}
# TOML numbers, checked where they are parsed
NUMBER_KEYS = frozenset({"heartbeat_seconds", "metrics_port"})
# The offline policy: `offline` is "on"/"off" (or a TOML boolean), the limits whole numbers.
OFFLINE_KEYS = frozenset(name for name in ENV_NAMES if name.startswith("offline"))
MAX_OFFLINE_UNITS = 1_000_000
MAX_OFFLINE_AGE_S = 30 * 24 * 3600
TOML_KEYS = frozenset(ENV_NAMES) | {"api_key_file", "allow_remote"}
BOOL_KEYS = frozenset({"allow_remote", "insecure"})


@dataclass(frozen=True)
class AgentSettings:
    store_id: str
    central_url: str | None = None  # one URL, or several comma-separated (central_urls)
    kafka: str = DEFAULT_KAFKA
    kafka_security_protocol: str = DEFAULT_KAFKA_SECURITY_PROTOCOL
    kafka_ca_file: Path | None = None  # SASL_SSL: the CA that signed the brokers' certificates
    db_path: Path = Path("storeagent.db")
    listen_host: str = "127.0.0.1"
    listen_port: int = 8787
    topic_prefix: str = ""
    allow_remote: bool = False
    api_key: str | None = field(default=None, repr=False)
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_S  # to central; 0 turns heartbeats off
    offline: OfflinePolicy = DEFAULT_POLICY
    terminal_token_file: Path | None = None  # default: terminal.token next to the replica
    metrics_port: int | None = None  # the metrics-only listener, when wanted (0: any port)
    insecure: bool = False  # plain http:// to a central beyond loopback was asked for
    accept_lost_queue: bool = False  # start although central heard of queued sales not here

    @property
    def central_urls(self) -> tuple[str, ...]:
        """Central's URLs in the order they are tried (none without a central)."""
        return tuple(split_url_list(self.central_url)) if self.central_url else ()

    @property
    def terminal_token_path(self) -> Path:
        return self.terminal_token_file or self.db_path.parent / TOKEN_FILE_NAME

    @property
    def metrics_host(self) -> str:
        return ANY_ADDRESS if self.allow_remote else self.listen_host

    @property
    def group_id(self) -> str:
        return consumer_group(self.store_id)

    @property
    def kafka_user(self) -> str | None:
        """The store's SCRAM user name with SASL_SSL (it holds no secret)."""
        if self.kafka_security_protocol != "SASL_SSL" or not self.api_key:
            return None
        return kafka_username(self.store_id, self.api_key)

    def summary(self) -> dict[str, object]:
        """Loggable view: everything but the API key, which is only reported as present."""
        return {
            "store_id": self.store_id,
            "central": self.central_url,
            "kafka": self.kafka,
            "kafka_security_protocol": self.kafka_security_protocol,
            "kafka_ca_file": None if self.kafka_ca_file is None else str(self.kafka_ca_file),
            "kafka_user": self.kafka_user,
            "db": str(self.db_path),
            "listen": f"{self.listen_host}:{self.listen_port}",
            "topic_prefix": self.topic_prefix,
            "api_key": "set" if self.api_key else "unset",
            "heartbeat_s": self.heartbeat_seconds,
            **self.offline.summary(),
            "terminal_token_file": str(self.terminal_token_path),
            "metrics_listen": _metrics_address(self),
            **({"accept_lost_queue": True} if self.accept_lost_queue else {}),
        }


def load_settings(
    flags: Mapping[str, Any], env: Mapping[str, str], config: Path | None = None
) -> AgentSettings:
    """`flags` holds CLI values by name (None = not given): store_id, central, kafka,
    kafka_security_protocol, kafka_ca_file, db, listen, topic_prefix, api_key_file,
    allow_remote, metrics_port, terminal_token_file, and the heartbeat and offline
    settings."""
    toml = read_config(config) if config is not None else {}

    def pick(name: str, default: Any = None) -> Any:
        if flags.get(name) is not None:
            return flags[name]
        for var in ENV_NAMES.get(name, ()):
            if env.get(var):
                return env[var]
        return toml.get(name, default)

    store_id = _store_id(pick("store_id"))
    host, port = parse_listen(pick("listen", DEFAULT_LISTEN))
    allow_remote = bool(pick("allow_remote", False))
    insecure = _insecure(pick("insecure"))
    _check_loopback(host, TERMINAL_LOOPBACK_ONLY)
    api_key = _api_key(flags.get("api_key_file"), env, toml.get("api_key_file"))
    protocol = _security_protocol(pick("kafka_security_protocol", DEFAULT_KAFKA_SECURITY_PROTOCOL))
    settings = AgentSettings(
        store_id=store_id,
        central_url=_central(pick("central"), insecure),
        kafka=_kafka(pick("kafka", DEFAULT_KAFKA)),
        kafka_security_protocol=protocol,
        kafka_ca_file=_ca_file(pick("kafka_ca_file")) if protocol == "SASL_SSL" else None,
        db_path=_db_path(Path(pick("db") or default_db_path(store_id)).expanduser()),
        listen_host=host,
        listen_port=port,
        topic_prefix=_topic_prefix(pick("topic_prefix", "")),
        allow_remote=allow_remote,
        api_key=api_key,
        heartbeat_seconds=_heartbeat_seconds(pick("heartbeat_seconds", DEFAULT_HEARTBEAT_S)),
        offline=offline_policy(pick),
        insecure=insecure,
        terminal_token_file=_optional_path(pick("terminal_token_file")),
        metrics_port=_metrics_port(pick("metrics_port"), port),
        accept_lost_queue=_accept_lost_queue(
            flags.get("accept_lost_queue") or env.get("STOREAGENT_ACCEPT_LOST_QUEUE")
        ),
    )
    _check_kafka_login(settings)
    return settings


def _check_kafka_login(settings: AgentSettings) -> None:
    """Checked last, so a malformed value is reported as itself first."""
    if settings.kafka_security_protocol == "SASL_SSL" and not settings.api_key:
        raise ConfigMissing(
            "the agent logs in to Kafka (SASL_SSL, the default) with the store's API key, and "
            "none is given: --api-key-file FILE (or STOREAGENT_API_KEY, or api_key_file in the "
            "config); a development broker without TLS needs "
            "STOREAGENT_KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
            field="api_key",
        )


def default_db_path(store_id: str) -> Path:
    return Path(platformdirs.user_data_dir("invctl")) / f"storeagent-{store_id}.db"


def read_config(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"cannot read config file {path}: {exc}", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(
            f"config file {path} is not valid TOML: {exc}", path=str(path)
        ) from None
    unknown = sorted(set(data) - TOML_KEYS)
    if unknown:
        raise ConfigFileError(
            f"config file {path} has unknown keys: {', '.join(unknown)}", path=str(path)
        )
    for key, value in data.items():
        if key in NUMBER_KEYS or key in OFFLINE_KEYS:
            continue
        expected = bool if key in BOOL_KEYS else str
        if not isinstance(value, expected):
            raise ConfigFileError(
                f"config file {path}: {key} must be a {expected.__name__}", path=str(path)
            )
    return data


def parse_listen(raw: object) -> tuple[str, int]:
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", str(raw))
    port = int(match.group(2) or match.group(4)) if match else -1
    if match is None or not 0 <= port <= 65535:
        raise ConfigError(f"listen address {raw!r} must be HOST:PORT", field="listen")
    return match.group(1) or match.group(3), port


TERMINAL_LOOPBACK_ONLY = (
    "refusing to listen on {host}: the store terminal API (it sells) is loopback-only; "
    "--allow-remote applies to --metrics-port only"
)


def _check_loopback(host: str, refusal: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ListenRefused(refusal.format(host=host), host=host)


def _metrics_port(raw: object, listen_port: int) -> int | None:
    """A TOML integer, or digits from a flag or the environment: 0 to 65535 (0: any free),
    not the store API's own."""
    if raw is None or raw == "":
        return None
    port = -1
    if isinstance(raw, int) and not isinstance(raw, bool):
        port = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        port = int(raw)
    if not 0 <= port <= 65535 or port == listen_port != 0:
        raise ConfigError(
            f"metrics port {raw!r} must be 0 to 65535, and not the store API's port",
            field="metrics_port",
        )
    return port


def _metrics_address(settings: AgentSettings) -> str | None:
    if settings.metrics_port is None:
        return None
    host = settings.metrics_host
    return f"[{host}]:{settings.metrics_port}" if ":" in host else f"{host}:{settings.metrics_port}"


def _optional_path(raw: object) -> Path | None:
    return None if raw is None or raw == "" else Path(str(raw)).expanduser()


def _store_id(raw: object) -> str:
    if raw is None or raw == "":
        raise ConfigMissing("the store id is required: --store-id or STOREAGENT_STORE_ID")
    if not is_store_id(raw):
        raise ConfigError(
            f"store id {raw!r} must be 1-64 of a-z, 0-9 and '-', starting with a letter or digit",
            field="store_id",
        )
    return raw


def _central(raw: object, insecure: bool) -> str | None:
    """Central's URL, or several comma-separated (tried in turn when one cannot be reached:
    invwire.failover), each checked; kept as one normalized comma-separated string."""
    if raw is None or raw == "":
        return None
    urls = [_central_url(part, insecure) for part in split_url_list(str(raw))]
    if len(urls) > len(set(urls)):
        raise ConfigError(
            f"central URL list {without_credentials(str(raw))!r} names a URL twice",
            field="central",
        )
    return ",".join(urls)


def _central_url(raw: str, insecure: bool) -> str:
    if not raw:
        raise ConfigError(
            "central URL list has an empty element: give URLs separated by single commas",
            field="central",
        )
    shown = without_credentials(raw)  # a password in the URL is never echoed
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or not _has_valid_port(raw):
        raise ConfigError(f"central URL {shown!r} must be http(s)://HOST[:PORT]", field="central")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"central URL {shown!r} must hold no user name or password (the store's API key "
            "is sent in a header)",
            field="central",
        )
    if parts.query or parts.fragment or raw.endswith(("?", "#")):
        raise ConfigError(f"central URL {shown!r} must have no query or fragment", field="central")
    url = raw.rstrip("/")
    if not insecure and is_plain_http_to_remote(url):
        raise InsecureTransport(
            f"refusing plain HTTP to central at {url}: the store's API key would cross the "
            "network in clear; use https://, or --insecure (STOREAGENT_INSECURE=1) on a "
            "network you trust",
            field="central",
        )
    return url


def _db_path(path: Path) -> Path:
    """Checked with the settings, before anything is made next to it: not a directory, and
    not an existing file of another kind (the replica is made 0600 when it is opened)."""
    try:
        check_sqlite_path(path)
    except UnusableFile as exc:
        raise ConfigError(f"replica: {exc.message}", field="db", path=str(path)) from None
    return path


def _has_valid_port(url: object) -> bool:
    try:
        _ = urlsplit(str(url)).port  # raises for a port that is no number from 0 to 65535
    except ValueError:
        return False
    return True


def _insecure(raw: object) -> bool:
    """--insecure, STOREAGENT_INSECURE=1/true/yes/on (0/false/no/off), or a TOML boolean."""
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    text = str(raw).strip().lower()
    if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ConfigError(f"insecure {raw!r} must be true or false", field="insecure")
    return text in ("1", "true", "yes", "on")


def _accept_lost_queue(raw: object) -> bool:
    """--accept-lost-queue, or STOREAGENT_ACCEPT_LOST_QUEUE=1/true/yes/on (0/false/no/off)."""
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    text = str(raw).strip().lower()
    if text not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
        raise ConfigError(
            f"accept_lost_queue {raw!r} must be true or false", field="accept_lost_queue"
        )
    return text in ("1", "true", "yes", "on")


def _kafka(raw: object) -> str:
    servers = [s.strip() for s in str(raw).split(",")]
    if not all(re.fullmatch(r"[^\s:,]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", s) for s in servers):
        raise ConfigError(
            f"Kafka bootstrap servers {raw!r} must be HOST:PORT[,HOST:PORT...]", field="kafka"
        )
    return ",".join(servers)


def _security_protocol(raw: object) -> str:
    protocol = str(raw).strip().upper()
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise ConfigError(
            f"Kafka security protocol {raw!r} must be {' or '.join(KAFKA_SECURITY_PROTOCOLS)}",
            field="kafka_security_protocol",
        )
    return protocol


def _ca_file(raw: object) -> Path | None:
    if raw is None or raw == "":
        return None
    path = Path(str(raw)).expanduser()
    if not path.is_file():
        raise ConfigError(f"Kafka CA file {path} is not a file", field="kafka_ca_file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"cannot read Kafka CA file {path}", field="kafka_ca_file")
    return path


def _heartbeat_seconds(raw: object) -> float:
    try:
        seconds = float(str(raw))  # a TOML number, or text from a flag or the environment
    except ValueError:
        seconds = -1.0
    if not (seconds == 0 or 0.1 <= seconds <= MAX_HEARTBEAT_S):
        raise ConfigError(
            f"heartbeat interval {raw!r} must be 0 (off) or 0.1 to {MAX_HEARTBEAT_S:g} seconds",
            field="heartbeat_seconds",
        )
    return seconds


def offline_policy(pick: Callable[[str, Any], Any]) -> OfflinePolicy:
    """The offline policy from `pick(name, default)`: flag, environment, TOML or default."""
    per_order = _whole(
        pick("offline_max_units_per_order", DEFAULT_POLICY.max_units_per_order),
        "offline_max_units_per_order",
        MAX_OFFLINE_UNITS,
    )
    total = _whole(
        pick("offline_max_queued_units", DEFAULT_POLICY.max_queued_units),
        "offline_max_queued_units",
        MAX_OFFLINE_UNITS,
    )
    if total < per_order:
        raise ConfigError(
            f"offline_max_queued_units ({total}) must be at least offline_max_units_per_order "
            f"({per_order})",
            field="offline_max_queued_units",
        )
    return OfflinePolicy(
        enabled=_on_off(pick("offline", "off")),
        max_units_per_order=per_order,
        max_queued_units=total,
        max_age_s=_whole(
            pick("offline_max_age", DEFAULT_POLICY.max_age_s), "offline_max_age", MAX_OFFLINE_AGE_S
        ),
    )


def _on_off(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text not in ("on", "off"):
        raise ConfigError(f"offline mode {raw!r} must be on or off", field="offline")
    return text == "on"


def _whole(raw: object, name: str, maximum: int) -> int:
    """A whole number from 1 to `maximum`: a TOML integer, or digits from a flag or the env."""
    number = -1
    if isinstance(raw, int) and not isinstance(raw, bool):
        number = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        number = int(raw)
    if not 1 <= number <= maximum:
        raise ConfigError(f"{name} {raw!r} must be a whole number from 1 to {maximum}", field=name)
    return number


def _topic_prefix(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{0,200}", raw):
        raise ConfigError(
            f"topic prefix {raw!r} may only hold A-Z, a-z, 0-9, '.', '_' and '-'",
            field="topic_prefix",
        )
    return raw


def _api_key(flag_file: object, env: Mapping[str, str], toml_file: object) -> str | None:
    if flag_file is not None:
        return read_key_file(Path(str(flag_file)))
    if env.get("STOREAGENT_API_KEY"):
        return env["STOREAGENT_API_KEY"].strip()
    if toml_file is not None:
        return read_key_file(Path(str(toml_file)).expanduser())
    return None


def read_key_file(path: Path) -> str:
    try:
        key = read_private_text(path, "API key file")
    except SharedFile as exc:
        raise KeyFileInsecure(exc.message, path=str(path)) from None
    except UnusableFile as exc:
        raise ConfigError(exc.message, field="api_key_file") from None
    if not key:
        raise ConfigError(f"API key file {path} is empty", field="api_key_file")
    return key
