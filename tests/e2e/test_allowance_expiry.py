"""Allowance expiry with real processes (central, two store agents, the shared secure Kafka):
the issue's acceptance point "an agent whose allowance expired refuses allowance sales at once
on its own clock; central reclaims only after expiry plus the margin; a test with the agent's
clock skewed by the margin still never oversells".

Central runs with a margin M of 20 s (INVCTL_ALLOWANCE_MARGIN_S) and grants each of two stores
120 units for 60 s, the API's shortest ttl_s (central.domain.allowances.MIN_TTL_S; no setting
lowers it), expiring at E. Every unit of the SKU is held in the two grants, so nothing else is
there to cover a replayed line its grant would not. Offline selling (the risk path) is off: a
sale the grants do not cover is refused (503), so every sale a till was told was made is an
allowance sale. Central stops, and a till sells one unit at a time at each agent:

1. Each agent sells under its grant and then refuses every sale with `allowance.expired`
   once the grant is within M of its expiry on the agent's own clock, by itself: central is
   down all along. Store A's agent, its clock true, stops at E - M on central's clock (on its
   estimate of central's clock, from its heartbeats). Both agents then stop, their sales
   unreplayed.
2. Central comes back after E. Each grant is still `live` past E; the sweep moves it to
   `settling` only after E + M (its `updated_at`, the sweep's time on central's clock, is at
   or after E + M), and its units stay held: the stock anyone may take does not move. The
   agents, started again, replay their sales late and central books each against its
   settling grant; only each store's statement then closes it and gives back the units the
   store did not sell.
3. Store B's agent runs under libfaketime with its wall clock M behind: it believes it is
   earlier than it is, the worst direction. While it hears central's heartbeat answers, its
   estimate of central's clock cancels the skew (`clock_offset_s` = +M, checked), and the skew
   would change nothing. That estimate lives in memory only (storeagent.sync.central_clock;
   the `server_time` of `/allowances/mine` is stored but feeds no estimate), so B is restarted
   during the outage, as a store machine rebooted while central is down would be: it then
   sells on its own wrong clock (`clock_offset_s` null), off by the whole margin.
   What the skew changes: B's last allowance sale moves from E - M to just before E on
   central's clock, so B sells inside the margin where A had stopped, and still never after
   central's expiry. What it does not change: central books every replayed line against its
   grant whatever the grant's state, and held units come back only by the store's statement
   (or an admin's write-off, or a return while the grant is live, which the test does not
   do); so no skew by itself makes central oversell, and the margin is what keeps the agent's
   sales before central's expiry. The test shows every sale B accepted offline booked by
   central on replay (no `allowance.uncovered` review, no rejected sale), B's grant closed by
   its statement, and central's stock at the end the initial stock less what was sold, never
   below zero.

It takes about 2 min 15 s, nearly all of it waiting: the 60 s grant, then up to 30 s for
central's sweep (its period) and 30 s for the agents' statements (their round of fetching
grants); none of these is a setting.

Times come from this test's clock, which is central's (the same machine, not faked), and are
compared only in the direction cause and effect allow: a sale sent at t was decided at or
after t, one answered at t at or before it. No bound depends on how fast the machine is, and
every wait is on an observed state.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from tests.support.offline_chaos import TRANSIENT, agent_sales, central_orders, restart_central
from tests.support.processes import Service, Stack, stack
from tests.support.shop import Shop, seed_shop
from tests.support.wrong_clock import agent_under_faketime

API = "/api/v1"
SKU = "MILK-1L"
MARGIN_S = 20  # central's INVCTL_ALLOWANCE_MARGIN_S
TTL_S = 60  # the shortest grant the API takes
UNITS = 120  # per grant: more than a till sells (about one a second) before it expires
INITIAL = 2 * UNITS  # all of it held in the two grants: nothing else covers a replayed line
HEARTBEATS = ["--heartbeat-seconds", "0.5"]
SLACK = timedelta(seconds=0.1)  # /sync/status rounds the agent's clock offset
REFUSALS = 3  # a till stops after this many refused sales
EXPIRED = "allowance.expired"
STORES = ("store-a", "store-b")
SKEW_S = {"store-a": 0, "store-b": MARGIN_S}  # how far behind each agent's wall clock is


@dataclass
class Attempt:
    """One sale a till tried, timed on this test's clock (central's)."""

    sent_at: datetime
    answered_at: datetime
    status: int
    body: dict[str, Any]

    @property
    def under_allowance(self) -> bool:
        return self.status == 202 and self.body.get("status") == "allowance"

    @property
    def refusal(self) -> str | None:
        """The 503's reason the grants did not cover the sale (`details.allowance`)."""
        error = self.body.get("error") or {}
        return (error.get("details") or {}).get("allowance")

    @property
    def local_ref(self) -> str:
        return str(self.body.get("local_ref"))


class Till:
    """Sells one unit of SKU at a time at one agent, on a thread, until REFUSALS sales were
    refused (or stopped)."""

    def __init__(self, agent: str, headers: dict[str, str]) -> None:
        self.agent, self.headers = agent, headers
        self.attempts: list[Attempt] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sell, daemon=True)
        self._thread.start()

    def _sell(self) -> None:
        with httpx.Client(base_url=self.agent, headers=self.headers, timeout=30) as http:
            while not self._stop.is_set() and self.refused() < REFUSALS:
                self.attempts.append(self._one(http))
                self._stop.wait(1.0)  # a till's pace, not a wait for anything

    def _one(self, http: httpx.Client) -> Attempt:
        sent_at = now()
        try:
            response = http.post(
                "/orders",
                json={"lines": [{"sku": SKU, "quantity": 1}]},
                headers={"Idempotency-Key": f"till-{uuid.uuid4().hex[:12]}"},
            )
        except httpx.HTTPError as exc:  # counted as a refusal, with no reason
            return Attempt(sent_at, now(), 0, {"error": {"message": repr(exc)}})
        return Attempt(sent_at, now(), response.status_code, response.json())

    def refused(self) -> int:
        return sum(not attempt.under_allowance for attempt in self.attempts)

    def finish(self, timeout: float) -> list[Attempt]:
        """Wait for the till's refusals; its attempts."""
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(30)
        assert self.refused() >= REFUSALS, (
            f"{self.agent}: {len(self.attempts)} sales, {self.refused()} refused "
            f"within {timeout:g} s"
        )
        return self.attempts


def now() -> datetime:
    return datetime.now(UTC)


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def sync_status(agent: Service) -> dict[str, Any]:
    return dict(httpx.get(f"{agent.url}/sync/status", timeout=10).json())


def grant(shop: Shop, store: str) -> dict[str, Any]:
    body = {"store": store, "sku": SKU, "units": UNITS, "ttl_s": TTL_S}
    answer = httpx.post(
        f"{shop.central}{API}/allowances", json=body, headers=shop.admin, timeout=10
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def grant_at_central(shop: Shop, grant_id: str) -> dict[str, Any]:
    page = httpx.get(
        f"{shop.central}{API}/allowances", params={"sku": SKU}, headers=shop.admin, timeout=10
    ).json()
    return next(item for item in page["items"] if item["id"] == grant_id)


def available(shop: Shop) -> int:
    body = httpx.get(f"{shop.central}{API}/stock/{SKU}", headers=shop.admin, timeout=10).json()
    return int(body["quantity"])


@dataclass
class Seen:
    """One look at the grants and the SKU's stock at central after it came back."""

    sent_at: datetime
    answered_at: datetime
    grants: dict[str, dict[str, Any]]  # by store
    available: int


def watch_until_settling(shop: Shop, ids: dict[str, str]) -> list[Seen]:
    """Every look at the stores' grants (`ids`, by store) until central shows all settling."""
    seen: list[Seen] = []

    def settling() -> bool:
        sent_at = now()
        rows = {store: grant_at_central(shop, grant_id) for store, grant_id in ids.items()}
        seen.append(Seen(sent_at, now(), rows, available(shop)))
        return all(row["state"] == "settling" for row in rows.values())

    # the sweep runs every 30 s: it settles a grant at most 30 s after its E + M
    eventually(settling, 150, "the grants settling", interval=0.5, ignoring=TRANSIENT)
    return seen


def sold_until_refused(attempts: list[Attempt]) -> tuple[list[Attempt], list[Attempt]]:
    """The allowance sales before the first refusal, and every attempt from it on."""
    first = next(i for i, attempt in enumerate(attempts) if not attempt.under_allowance)
    return attempts[:first], attempts[first:]


def start_agent(s: Stack, shop: Shop, store: str) -> Service:
    """The store's agent; store B's wall clock M behind the true time (libfaketime)."""
    wrong = agent_under_faketime(f"-{SKEW_S[store]}") if SKEW_S[store] else None
    return s.start_agent(store, shop.keys[store], extra_args=HEARTBEATS, command=wrong)


def wait_grant_fetched(agent: Service, *, heard: bool) -> dict[str, Any]:
    """/sync/status once the agent holds its whole grant (and, if `heard`, knows central's
    clock)."""

    def fetched() -> dict[str, Any] | None:
        status = sync_status(agent)
        assert status["allowances"]["units_left"] == UNITS, "grant not fetched yet"
        return status if status["clock_offset_s"] is not None or not heard else None

    return eventually(fetched, 60, f"{agent.name}: its grant fetched", ignoring=TRANSIENT)


def wait_replayed(agent: Service, refs: list[str]) -> dict[str, dict[str, Any]]:
    """The agent's sales once every one of `refs` is confirmed by its replay."""

    def replayed() -> dict[str, dict[str, Any]] | None:
        assert sync_status(agent)["allowances"]["units_waiting_replay"] == 0
        local = agent_sales(agent.url)
        return local if all(local[ref]["status"] == "confirmed" for ref in refs) else None

    return eventually(replayed, 90, f"{agent.name}: sales replayed", ignoring=TRANSIENT)


def wait_closed(shop: Shop, grant_id: str, store: str) -> dict[str, Any]:
    def closed() -> dict[str, Any] | None:
        row = grant_at_central(shop, grant_id)
        return row if row["state"] == "closed" else None

    # the agent sends a statement in its rounds of fetching grants, every 30 s
    return eventually(closed, 90, f"{store}'s statement", interval=0.5, ignoring=TRANSIENT)


def test_an_expired_allowance_stops_sales_at_once_settles_after_the_margin_and_skew_never_oversells(
    tmp_path: Path, kafka_cluster: KafkaCluster, topic_prefix: str
) -> None:
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.env["INVCTL_ALLOWANCE_MARGIN_S"] = str(MARGIN_S)
        central = s.start_central()
        shop = seed_shop(s.central_url, {SKU: INITIAL}, list(STORES))
        grants = {store: grant(shop, store) for store in STORES}
        agents = {store: start_agent(s, shop, store) for store in STORES}
        for agent in agents.values():
            wait_grant_fetched(agent, heard=True)
        # while B hears central, its estimate of central's clock cancels its skew
        eventually(
            lambda: abs(sync_status(agents["store-b"])["clock_offset_s"] - SKEW_S["store-b"]) < 0.5,
            30,
            "B's estimate of central's clock cancelling its skew",
        )
        available_before = available(shop)

        assert central.stop() == 0
        tills = {"store-a": Till(agents["store-a"].url, s.agent_headers())}
        agents["store-b"].stop()  # B's machine restarts during the outage: its estimate is gone
        agents["store-b"] = start_agent(s, shop, "store-b")
        wait_grant_fetched(agents["store-b"], heard=False)
        tills["store-b"] = Till(agents["store-b"].url, s.agent_headers())
        attempts = {store: till.finish(timeout=180) for store, till in tills.items()}
        # what each sold by: its estimate of central's clock, unchanged while central is down
        offset = {store: sync_status(agent)["clock_offset_s"] for store, agent in agents.items()}
        for agent in agents.values():
            agent.stop()  # the stores stay away, their sales unreplayed, until central settles

        restart_central(s)
        seen = watch_until_settling(shop, {store: grants[store]["id"] for store in STORES})

        agents = {store: start_agent(s, shop, store) for store in STORES}  # replays after E + M
        sold = {store: sold_until_refused(attempts[store])[0] for store in STORES}
        local = {
            store: wait_replayed(agent, [sale.local_ref for sale in sold[store]])
            for store, agent in agents.items()
        }
        orders = {store: central_orders(shop, store) for store in STORES}
        closed = {store: wait_closed(shop, grants[store]["id"], store) for store in STORES}
        available_after = available(shop)

    expiry = {store: moment(grants[store]["expires_at"]) for store in STORES}
    margin = timedelta(seconds=MARGIN_S)

    # --- 1. each agent refuses at once, by itself, when its grant expires on its own clock ---
    assert offset["store-a"] is not None and abs(offset["store-a"]) < 1.0, offset
    assert offset["store-b"] is None, "B, restarted offline, cannot know central's clock"
    for store in STORES:
        sold_here, refused = sold_until_refused(attempts[store])
        # when the agent's reading of central's time reaches E - M, on central's clock: A
        # reads its wall clock plus its estimated offset, B (no estimate) its wall clock alone,
        # SKEW_S behind
        ahead = offset[store] if offset[store] is not None else -SKEW_S[store]
        cutoff = expiry[store] - margin - timedelta(seconds=ahead)
        assert sold_here, f"{store} sold nothing under its grant before it expired"
        late = [sale.sent_at.isoformat() for sale in sold_here if sale.sent_at >= cutoff + SLACK]
        assert not late, f"{store} sold under its grant past E - M on its clock ({cutoff}): {late}"
        assert [(t.status, t.refusal) for t in refused] == [(503, EXPIRED)] * len(refused), (
            f"{store}: from the first refusal on, every sale is refused as expired"
        )
        assert refused[0].answered_at > cutoff - SLACK, f"{store}: refused before E - M"
        assert len(sold_here) < UNITS, f"{store} ran out of units: not a test of expiry"

    # --- 2. central settles a grant only after E + M, its units still held -------------------
    for store in STORES:
        settles_at = expiry[store] + margin
        early = {look.grants[store]["state"] for look in seen if look.answered_at < settles_at}
        assert early == {"live"}, (store, early)
        assert any(
            look.grants[store]["state"] == "live" for look in seen if look.sent_at >= expiry[store]
        ), f"{store}: central was not seen holding its grant live past its expiry"
        settled = seen[-1].grants[store]
        assert moment(settled["updated_at"]) >= settles_at, (store, settled, settles_at)
        assert settled["remaining"] == UNITS, f"{store}: no sale replayed yet, every unit held"
    assert {look.available for look in seen} == {available_before} == {0}, "nothing reclaimed"

    # --- 3. B, its clock M behind and no estimate of central's, never oversells --------------
    inside_margin = expiry["store-b"] - margin + SLACK
    assert any(sale.sent_at >= inside_margin for sale in sold["store-b"]), (
        "B did not sell inside the margin: its skew was not exercised"
    )
    after = expiry["store-b"] + SLACK
    late = [sale.sent_at.isoformat() for sale in sold["store-b"] if sale.sent_at >= after]
    assert not late, f"B sold after central's expiry {expiry['store-b']}: {late}"
    # every sale a till was told was made is one confirmed order, booked whole against its
    # store's grant (settling when the replay came): none rejected, none left for review
    for store in STORES:
        refs = [sale.local_ref for sale in sold[store]]
        assert [local[store][ref]["status"] for ref in refs] == ["confirmed"] * len(refs), store
        assert [sale for sale in local[store].values() if sale["status"] == "rejected"] == []
        assert len(orders[store]) == len(refs), store
        assert [order for order in orders[store] if order["status"] != "confirmed"] == []
        assert [order for order in orders[store] if order["review"]] == [], "uncovered"
        drawn = [{"grant_id": grants[store]["id"], "sku": SKU, "units": 1}]
        assert all(order["allowances"] == drawn for order in orders[store]), store
        assert closed[store]["remaining"] == 0
    # the statements gave back exactly the units not sold: stock = initial - sold, not below 0
    assert available_after == INITIAL - sum(len(sales) for sales in sold.values()) >= 0
