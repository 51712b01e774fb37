"""What central last heard from this store's agent: the report of its last heartbeat
(`GET /api/v1/stores/heartbeat` as the store, with its API key). The agent reads it once at
start to tell whether the sales it last reported queued are in its replica (sales.lost_queue).

`LastHeardSource` is the port, `HttpLastHeard` the real adapter; the fake is FakeLastHeard in
tests/support/agent_fakes.py. The API key travels in a header and appears in no log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from invwire.errors.agent import AgentError
from storeagent.upstream.client import CentralAt, central_failover, store_session

LAST_HEARTBEAT_PATH = "/api/v1/stores/heartbeat"


class LastHeardUnavailable(AgentError):
    """Central could not say what it last heard from this store."""

    code = "central.unavailable"
    status = 503


@dataclass(frozen=True)
class LastHeard:
    """Central's record of this store's last heartbeat."""

    last_seen: str | None  # when central got it (central's clock); None: never heard from
    offline_queue: int  # the sales it reported queued offline
    replica_id: str | None  # the replica file it reported from (None: an agent before ids)
    instance_id: str | None = None  # the agent process that sent it


class LastHeardSource(Protocol):
    def last_heard(self) -> LastHeard | None:
        """Central's record; None when this central keeps none (it predates the route).
        Raises LastHeardUnavailable when central cannot be asked now."""
        ...

    def close(self) -> None: ...


def parse_last_heard(body: Any) -> LastHeard:
    """The answer's record; a field missing or of the wrong type counts as not reported."""
    body = body if isinstance(body, dict) else {}
    reported = body.get("reported")
    reported = reported if isinstance(reported, dict) else {}
    queue = reported.get("offline_queue")
    return LastHeard(
        last_seen=_text(body.get("last_seen")),
        offline_queue=queue if isinstance(queue, int) and not isinstance(queue, bool) else 0,
        replica_id=_text(reported.get("replica_id")),
        instance_id=_text(reported.get("instance_id")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class HttpLastHeard:
    def __init__(
        self,
        central_url: CentralAt,
        api_key: str,
        *,
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        routes = central_failover(central_url)
        self.central_url = routes.label  # in messages: every URL that was tried
        self._http = store_session(routes, api_key, timeout_s=timeout_s, transport=transport)

    def __repr__(self) -> str:
        return f"HttpLastHeard({self.central_url!r})"

    def last_heard(self) -> LastHeard | None:
        try:
            response = self._http.get(LAST_HEARTBEAT_PATH)
        except httpx.HTTPError as exc:
            raise LastHeardUnavailable(
                f"cannot reach central at {self.central_url}: {type(exc).__name__}"
            ) from None
        if response.status_code in (404, 405):
            return None
        if not response.is_success:
            raise LastHeardUnavailable(
                f"central answered HTTP {response.status_code}", status=response.status_code
            )
        try:
            return parse_last_heard(response.json())
        except ValueError:
            raise LastHeardUnavailable("central's answer is not JSON") from None

    def close(self) -> None:
        self._http.close()


def connect_last_heard(
    central_url: CentralAt | None, api_key: str | None
) -> LastHeardSource | None:
    """None (nothing to ask) without a central or a key."""
    if not central_url or not api_key:
        return None
    return HttpLastHeard(central_url, api_key)
