"""Where invctl keeps its settings (`config.toml`) and logins (`credentials.json`).

Nothing here runs at import time; paths and environment variables are read when asked.
Both files are written mode 0600 in a 0700 directory; tokens are only ever written to the
credentials file, never printed, and a credentials file others may read is refused.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from invctl.errors import ConfigError
from invwire.files import shared_mode
from invwire.transport import is_plain_http_to_remote, split_url_list, without_credentials

DEFAULT_AGENT = "http://127.0.0.1:8787"
CONFIG_KEYS = ("agent", "central", "agent_token_file")
AGENT_TOKEN_FILE_NAME = "terminal.token"  # noqa: S105 (a file name, not a secret)
API_PREFIX = "/api/v1"


CONFIG_DIR_ENV = "INVCTL_CONFIG_DIR"


def config_dir() -> Path:
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("invctl"))


def default_agent_token_file() -> Path:
    """Where an agent run with its default replica path makes its terminal token (the user
    data directory): on a developer's machine invctl finds it without a setting."""
    import platformdirs

    return Path(platformdirs.user_data_dir("invctl")) / AGENT_TOKEN_FILE_NAME


@dataclass(frozen=True)
class AgentTokenFile:
    """The store agent's terminal token, sent with every POST to the agent (a sale, a
    resync). The agent makes the file (mode 0600) beside its replica; reads need no token."""

    path: Path

    def headers(self) -> dict[str, str]:
        """The Authorization header, or none when there is no file (the agent then answers
        401 agent.token_required, and `hint` says where invctl looked)."""
        token = self.read()
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    def read(self) -> str | None:
        try:
            mode = self.path.stat().st_mode
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            message = f"cannot read the agent token file {self.path}: {reason}"
            raise self._unusable(message) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"the agent token file {self.path} is accessible to other users "
                f"(mode {stat.S_IMODE(mode):o})",
                code="config.agent_token_insecure",
                hint=f"run: chmod 600 {self.path}",
            )
        token = text.strip()
        if not token or not all(33 <= ord(char) <= 126 for char in token):
            raise self._unusable(f"the agent token file {self.path} holds no usable token")
        return token

    def hint(self) -> str:
        found = "" if self.path.exists() else " (there is no such file)"
        return (
            f"selling or a resync needs the agent's terminal token; invctl reads it from "
            f"{self.path}{found}: copy the agent's terminal.token there (mode 600), or name it "
            "with --agent-token-file, INVCTL_AGENT_TOKEN_FILE or "
            "`invctl config set agent_token_file PATH`"
        )

    def _unusable(self, message: str) -> ConfigError:
        return ConfigError(
            message,
            code="config.agent_token",
            hint="copy the agent's terminal.token (beside its replica) there, mode 600",
        )


def normalize_url(url: str) -> str:
    """Return the URL without a trailing slash or `/api/v1`; reject non-HTTP URLs."""
    cleaned = url.strip().rstrip("/")
    cleaned = cleaned.removesuffix(API_PREFIX)
    parts = urlsplit(cleaned)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"not an http(s) URL: {url!r}",
            code="config.url",
            hint="URLs look like http://127.0.0.1:8787",
        )
    return cleaned


def normalize_url_list(value: str, name: str = "central") -> tuple[str, ...]:
    """Central's URL, or several comma-separated (tried in turn when one cannot be reached:
    invwire.failover), each normalized as normalize_url does and holding no user name,
    password, query or fragment; no element empty, none twice."""
    urls = tuple(_listed_url(part, name) for part in split_url_list(value))
    if len(set(urls)) < len(urls):
        raise ConfigError(
            f"the {name} URL list {without_credentials(value)!r} names a URL twice",
            code="config.url",
            hint="name each URL once, in the order to try them",
        )
    return urls


def _listed_url(part: str, name: str) -> str:
    hint = "URLs look like https://central.example:8000, several separated by commas"
    if not part:
        raise ConfigError(f"the {name} URL list has an empty element", code="config.url", hint=hint)
    shown = without_credentials(part)  # a password in the URL is never echoed
    parts = urlsplit(part)
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"the {name} URL {shown!r} holds a user name or password",
            code="config.url",
            hint="log in with `invctl login` (or INVCTL_TOKEN, INVCTL_API_KEY) instead",
        )
    if parts.query or parts.fragment or part.endswith(("?", "#")):
        raise ConfigError(
            f"the {name} URL {shown!r} has a query or fragment", code="config.url", hint=hint
        )
    return normalize_url(part)


def refuse_plain_http(name: str, url: str) -> None:
    """Plain http:// is for this machine only: to another one, the password, token or key
    sent with the request could be read on the network (--insecure overrides)."""
    if is_plain_http_to_remote(url):
        raise ConfigError(
            f"refusing plain HTTP to the {name} at {url}: passwords, tokens and keys would "
            "cross the network in clear",
            code="config.insecure_transport",
            hint="use an https:// URL (--ca-file for a private CA), or pass --insecure "
            "(INVCTL_INSECURE=1) on a network you trust",
        )


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` so readers see the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ConfigFile:
    """`config.toml`: flat string settings (`agent`, `central`)."""

    path: Path

    def load(self) -> dict[str, str]:
        import tomllib

        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise self._broken(exc.strerror or str(exc)) from exc
        try:
            parsed = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise self._broken(str(exc)) from exc
        return {key: str(parsed[key]) for key in CONFIG_KEYS if key in parsed}

    def set(self, key: str, value: str | None) -> None:
        values = self.load()
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
        atomic_write(self.path, _to_toml(values).encode("utf-8"), mode=0o600)

    def _broken(self, reason: str) -> ConfigError:
        return ConfigError(
            f"cannot read {self.path}: {reason}",
            code="config.invalid",
            hint=f"fix or delete {self.path}",
        )


def _to_toml(values: dict[str, str]) -> str:
    import json

    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in sorted(values.items()))


@dataclass(frozen=True)
class SavedLogin:
    token: str
    expires_at: datetime | None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True)
class CredentialStore:
    """`credentials.json`: one saved login per central URL, file mode 0600."""

    path: Path

    def get(self, central_url: str) -> SavedLogin | None:
        entry = self._load().get(central_url)
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            return None
        return SavedLogin(entry["token"], _parse_time(entry.get("expires_at")))

    def save(self, central_url: str, token: str, expires_at: datetime | None) -> None:
        logins = self._load()
        logins[central_url] = {
            "token": token,
            "expires_at": expires_at.isoformat() if expires_at else None,
        }
        self._write(logins)

    def remove(self, central_url: str) -> bool:
        logins = self._load()
        if logins.pop(central_url, None) is None:
            return False
        self._write(logins)
        return True

    def _load(self) -> dict[str, Any]:
        import json

        try:
            self._check_private()
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}
        logins = data.get("logins") if isinstance(data, dict) else None
        return logins if isinstance(logins, dict) else {}

    def _check_private(self) -> None:
        """invctl writes it 0600; wider, someone else may have read the tokens in it."""
        mode = self.path.stat().st_mode
        if shared_mode(mode):
            raise ConfigError(
                f"{self.path} holds login tokens and is accessible to other users "
                f"(mode {stat.S_IMODE(mode):o})",
                code="config.file_insecure",
                hint=f"run: chmod 600 {self.path} (and `invctl login` again if others could "
                "have read it)",
            )

    def _write(self, logins: dict[str, Any]) -> None:
        import json

        body = json.dumps({"version": 1, "logins": logins}, indent=2, sort_keys=True)
        atomic_write(self.path, body.encode("utf-8"), mode=0o600)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
