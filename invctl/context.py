"""Per-invocation state: resolved targets, credentials, clients and the output sink.

The root command's callback builds one `State`; commands fetch it with `state_of(ctx)`.
Tests inject a `Deps` (fake HTTP transport, fixed clock) through the click context object.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from invctl.client import ApiClient, Target, tls_context
from invctl.config import (
    API_PREFIX,
    CONFIG_KEYS,
    DEFAULT_AGENT,
    AgentTokenFile,
    ConfigFile,
    CredentialStore,
    config_dir,
    default_agent_token_file,
    normalize_url,
    normalize_url_list,
    refuse_plain_http,
)
from invctl.errors import ConfigError
from invctl.output import Output
from invwire import tracing
from invwire.rules import is_request_id
from invwire.transport import is_plain_http_to_remote

if TYPE_CHECKING:
    import ssl

    import httpx


def _utcnow() -> datetime:
    return datetime.now(UTC)


def new_request_id() -> str:
    """This invocation's X-Request-ID: INVCTL_REQUEST_ID when set and usable (a script can
    then find its requests in the agent's and central's logs), else the trace id when
    tracing is on (invctl.traced: logs and traces join), else a random one."""
    chosen = os.environ.get("INVCTL_REQUEST_ID", "")
    if is_request_id(chosen):
        return chosen
    return tracing.trace_id() or uuid.uuid4().hex


@dataclass(frozen=True)
class Deps:
    """The seams tests replace: the HTTP transport and the clock."""

    transport: httpx.BaseTransport | None = None
    now: Callable[[], datetime] = _utcnow


class Origin(StrEnum):
    """Where a setting's value came from, most explicit first."""

    flag = "flag"
    env = "env"
    file = "config file"
    default = "default"
    unset = "unset"


# Reads go to central only when central is named more explicitly than the agent.
_EXPLICITNESS = {Origin.flag: 3, Origin.env: 2, Origin.file: 1, Origin.default: 0, Origin.unset: -1}


@dataclass(frozen=True)
class GlobalOptions:
    agent: str | None = None
    central: str | None = None
    timeout: float = 10.0
    json: bool = False
    output: str = "table"  # table, tsv or json (invctl.output.OutputFormat), resolved
    utc: bool = False
    sources: Mapping[str, Origin] = field(default_factory=dict)  # options given, and how
    insecure: bool = False  # plain http:// to another machine was allowed (--insecure)
    ca_file: Path | None = None  # verify https:// servers against this CA (--ca-file)
    agent_token_file: Path | None = None  # the agent's terminal token (--agent-token-file)


@dataclass(frozen=True)
class CentralAuth:
    """How requests to central authenticate; `source` names it without revealing it."""

    headers: dict[str, str]
    source: str
    hint: str
    expires_at: datetime | None = None


@dataclass
class State:
    options: GlobalOptions
    deps: Deps = field(default_factory=Deps)
    json: bool = field(init=False)
    request_id: str = field(default_factory=new_request_id)
    _clients: dict[str, ApiClient] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.json = self.options.json

    @property
    def out(self) -> Output:
        return Output(json_mode=self.json)

    @cached_property
    def config_dir(self) -> Path:
        return config_dir()

    @cached_property
    def config(self) -> ConfigFile:
        return ConfigFile(self.config_dir / "config.toml")

    @cached_property
    def credentials(self) -> CredentialStore:
        return CredentialStore(self.config_dir / "credentials.json")

    @cached_property
    def _file_values(self) -> dict[str, str]:
        return self.config.load()

    def agent_url(self) -> str:
        return normalize_url(self.options.agent or self._file_values.get("agent") or DEFAULT_AGENT)

    def central_url(self) -> str:
        """Central's URL, or several comma-separated as configured (normalized): a saved
        login belongs to this whole value, so a token goes only to URLs named with it."""
        return ",".join(self.central_urls())

    def central_urls(self) -> tuple[str, ...]:
        """Central's URLs in the order they are tried (invwire.failover)."""
        url = self.options.central or self._file_values.get("central")
        if not url:
            raise ConfigError(
                "no central URL is configured",
                code="config.central_missing",
                hint="pass --central URL, set INVCTL_CENTRAL, "
                "or run `invctl config set central URL`",
            )
        return normalize_url_list(url)

    def central_target(self) -> Target:
        first, *more = self.central_urls()
        return Target("central", first, API_PREFIX, fallbacks=tuple(more))

    def note_switch(self, before: str, now: str) -> None:
        """A target with several URLs moved to another one: said once, on stderr."""
        self.out.note(f"{before} could not be reached; using {now}")

    def central_auth(self) -> CentralAuth:
        return resolve_auth(self.central_url(), self.credentials, self.deps.now())

    def agent_token(self) -> AgentTokenFile:
        """--agent-token-file (INVCTL_AGENT_TOKEN_FILE), else the config file's
        agent_token_file, else where an agent with its default replica path makes it."""
        named = self.options.agent_token_file or self._file_values.get("agent_token_file")
        return AgentTokenFile(Path(named).expanduser() if named else default_agent_token_file())

    def agent(self) -> ApiClient:
        token = self.agent_token()
        target = Target("agent", self.agent_url())
        return self._client(target, {}, token.hint(), write_headers=token.headers)

    def central(self) -> ApiClient:
        auth = self.central_auth()
        return self._client(self.central_target(), auth.headers, auth.hint)

    def origin(self, name: str) -> Origin:
        """Where setting `name` (agent, central, agent_token_file, or a global option) came
        from: a flag, an environment variable, the config file, or the default."""
        given = self.options.sources.get(name)
        if given is not None:
            return given
        if name in CONFIG_KEYS and name in self._file_values:
            return Origin.file
        return Origin.unset if name == "central" else Origin.default  # central has no default

    def reads_from(self) -> str:
        """`central` when central is named more explicitly than the agent, else `agent`.

        One rule for every source: a flag beats an environment variable, which beats the
        config file, which beats the default (only the agent has one); a tie reads the
        agent. So INVCTL_CENTRAL alone, or `central` alone in the config file, sends reads
        to central; naming the agent as explicitly keeps them at the agent.
        """
        central, agent = self.origin("central"), self.origin("agent")
        return "central" if _EXPLICITNESS[central] > _EXPLICITNESS[agent] else "agent"

    def reader(self) -> ApiClient:
        """The agent or central, by `reads_from`."""
        return self.central() if self.reads_from() == "central" else self.agent()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _client(
        self,
        target: Target,
        headers: dict[str, str],
        hint: str | None,
        write_headers: Callable[[], dict[str, str]] | None = None,
    ) -> ApiClient:
        if target.name not in self._clients:
            self._check_transport(target)
            self._clients[target.name] = ApiClient(
                target,
                timeout=self.options.timeout,
                headers={"X-Request-ID": self.request_id, **headers},
                transport=self.deps.transport,
                auth_hint=hint,
                verify=self._verify,
                write_headers=write_headers,
                on_switch=self.note_switch,
            )
        return self._clients[target.name]

    def _check_transport(self, target: Target) -> None:
        """Each of the target's URLs: plain http:// beyond loopback refused, or warned of."""
        for url in target.urls:
            if not self.options.insecure:
                refuse_plain_http(target.name, url)
            elif is_plain_http_to_remote(url):
                self.out.warn(
                    f"--insecure: talking to the {target.name} at {url} without TLS; "
                    "passwords, tokens and keys sent to it can be read on the network"
                )

    @cached_property
    def _verify(self) -> ssl.SSLContext | bool:
        return True if self.options.ca_file is None else tls_context(self.options.ca_file)


def resolve_auth(central_url: str, store: CredentialStore, now: datetime) -> CentralAuth:
    """INVCTL_TOKEN wins, then a saved unexpired login, then a store key in INVCTL_API_KEY."""
    env_token = os.environ.get("INVCTL_TOKEN")
    if env_token:
        hint = "INVCTL_TOKEN is set and was rejected; fix it, or unset it and run `invctl login`"
        return CentralAuth(_bearer(env_token, "INVCTL_TOKEN"), "INVCTL_TOKEN", hint)
    saved = store.get(central_url)
    if saved and not saved.expired(now):
        hint = f"run `invctl login` to log in to {central_url} again"
        headers = _bearer(saved.token, "the saved login")
        return CentralAuth(headers, "saved login", hint, saved.expires_at)
    api_key = os.environ.get("INVCTL_API_KEY")
    if api_key:
        hint = "INVCTL_API_KEY was rejected; check the store's key"
        headers = {"X-API-Key": _header_safe(api_key, "INVCTL_API_KEY")}
        return CentralAuth(headers, "INVCTL_API_KEY", hint)
    if saved:
        hint = f"the saved login for {central_url} expired; run `invctl login`"
        return CentralAuth({}, "none", hint)
    return CentralAuth({}, "none", f"run `invctl login` to log in to {central_url}")


def _bearer(token: str, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_header_safe(token, name)}"}


def _header_safe(secret: str, name: str) -> str:
    """The secret, if it can travel in an HTTP header; an error that never echoes it."""
    if all(33 <= ord(char) <= 126 for char in secret):
        return secret
    raise ConfigError(
        f"{name} contains spaces or characters that cannot be sent in an HTTP header",
        code="config.credential",
        hint=f"check the value of {name} (it is not shown here)",
    )


def state_of(ctx: typer.Context, json: bool = False) -> State:
    """The invocation's state; `json` is the command's own `--json` flag."""
    state = ctx.find_object(State)
    if state is None:
        raise RuntimeError("invctl: the root callback did not run")
    state.json = state.json or json
    return state
