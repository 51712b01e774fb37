"""Sales under this store's allowances, with FakeCentral and a temp replica: sold as final
within a grant while central is unreachable, today's offline path beyond it (with the
reason), replayed naming their grants, no online sale sent before them, and the statements
sent once a grant expired and every sale under it was replayed."""

import threading

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from harness.waiting import eventually
from invwire.orders import Line
from storeagent.app import Sales, build_sales
from storeagent.http.app import create_app
from storeagent.ops.metrics import AgentMetrics, WatchedState
from storeagent.ops.vitals import Vitals
from storeagent.replica.db import META_BOOTSTRAPPED
from storeagent.sales.allowance_keeper import next_round_at
from storeagent.sales.desk import PlaceOrder
from storeagent.sales.offline_policy import OfflinePolicy
from storeagent.sales.schedule import ReplaySchedule, ReplayTuning
from storeagent.sync.apply import apply_batch
from storeagent.sync.loop import topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import Record
from storeagent.upstream.client import HttpCentralClient, Refused, wire_lines
from storeagent.upstream.heartbeat import heartbeat_report
from storeagent.upstream.resilience import BreakerPolicy, CircuitBreaker, ResilientCentral
from tests.support.agent_fakes import FakeCentral, FixedClock, product_event, stock_event
from tests.support.machine_clock import Monotonic
from tests.support.terminal import TERMINAL_TOKEN, terminal_client

MILK, BREAD = "MILK-1L", "BREAD"
POLICY = OfflinePolicy(enabled=True, max_units_per_order=5, max_queued_units=8)


@pytest.fixture
def central(clock) -> FakeCentral:
    fake = FakeCentral(clock=clock)
    fake.set_stock(MILK, 40, 7)
    fake.set_stock(BREAD, 5, 3)
    return fake


@pytest.fixture
def sales(replica, central, clock) -> Sales:
    records = [
        Record(topic, 0, offset, key, value)
        for offset, (topic, key, value) in enumerate(
            (
                product_event(sku=MILK, name="Milk 1 L"),
                product_event(sku=BREAD, name="Bread"),
                stock_event(sku=MILK, quantity=40, stock_version=7),
                stock_event(sku=BREAD, quantity=5, stock_version=3),
            )
        )
    ]
    apply_batch(replica, records, prefix="", now=FixedClock()())
    with replica.transaction():
        replica.set_meta({META_BOOTSTRAPPED: "1"})
    monotonic = Monotonic()
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=3, cooldown_s=15), clock=monotonic)
    resilient = ResilientCentral(
        central, breaker=breaker, sleep=lambda _: None, clock=monotonic, jitter=lambda top: top
    )
    schedule = ReplaySchedule(ReplayTuning(), clock=monotonic, jitter=lambda top: top)
    return build_sales(replica, resilient, policy=POLICY, clock=clock, schedule=schedule)


@pytest.fixture
def client(replica, sales) -> TestClient:
    app = create_app(
        replica,
        SyncProgress(),
        store_id="s1",
        topics=topic_names(""),
        orders=sales.desk,
        terminal_token=TERMINAL_TOKEN,
        allowances=sales.keeper.status,
    )
    return terminal_client(app)


def buy(client: TestClient, *lines: tuple[str, int], key: str | None = None):
    headers = {} if key is None else {"Idempotency-Key": key}
    body = {"lines": [{"sku": sku, "quantity": qty} for sku, qty in lines]}
    return client.post("/orders", json=body, headers=headers)


def granted(central: FakeCentral, sales: Sales, units: int = 5, ttl_s: float = 3600) -> str:
    grant_id = central.grant(MILK, units, ttl_s)
    assert sales.keeper.fetch()
    return grant_id


def drain(sales: Sales) -> None:
    steps = 0
    while sales.replayer.step():
        steps += 1
        assert steps < 50


def test_a_sale_within_a_grant_is_final_with_status_allowance(client, central, sales):
    granted(central, sales, units=5)
    central.go_down()

    response = buy(client, (MILK, 3), key="k1")

    assert response.status_code == 202
    body = response.json()
    assert body == {"status": "allowance", "local_ref": body["local_ref"], "lines": body["lines"]}
    assert [s["status"] for s in client.get("/orders").json()["items"]] == ["allowance"]
    state = sales.keeper.status()
    assert (state["units_held"], state["units_left"], state["units_waiting_replay"]) == (5, 2, 3)
    assert sales.desk.offline_queue_depth() == 0, "not a risk sale"


def test_replaying_an_allowance_key_answers_the_same_without_calling_central(
    client, central, sales
):
    granted(central, sales)
    central.go_down()
    first = buy(client, (MILK, 1), key="k1")
    calls = len(central.calls)

    again = buy(client, (MILK, 1), key="k1")

    assert (again.status_code, again.json()) == (202, first.json())
    assert len(central.calls) == calls


def test_a_sale_beyond_what_is_left_goes_the_risk_path_and_says_short(client, central, sales):
    granted(central, sales, units=5)
    central.go_down()
    buy(client, (MILK, 3))

    response = buy(client, (MILK, 3))

    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert response.json()["reason"] == "allowance.short"
    assert sales.keeper.status()["units_left"] == 2


def test_a_sale_partly_covered_is_not_sold_under_the_grant(client, central, sales):
    granted(central, sales, units=5)
    central.go_down()

    response = buy(client, (MILK, 1), (BREAD, 1))

    assert (response.json()["status"], response.json()["reason"]) == ("queued", "allowance.none")
    assert sales.keeper.status()["units_left"] == 5


def test_a_grant_within_the_margin_of_its_expiry_is_not_sold_under(client, central, sales):
    central.margin_s = 300
    granted(central, sales, units=5, ttl_s=299)
    central.go_down()

    response = buy(client, (MILK, 1))

    assert (response.json()["status"], response.json()["reason"]) == ("queued", "allowance.expired")


def test_with_offline_off_a_sale_beyond_the_grant_answers_503_naming_the_reason(
    replica, central, clock, sales
):
    off = build_sales(replica, ResilientCentral(central, sleep=lambda _: None), clock=clock)
    central.grant(MILK, 2)
    assert off.keeper.fetch()
    app = create_app(
        replica,
        SyncProgress(),
        store_id="s1",
        topics=topic_names(""),
        orders=off.desk,
        terminal_token=TERMINAL_TOKEN,
    )
    client = terminal_client(app)
    central.go_down()

    covered, beyond = buy(client, (MILK, 2)), buy(client, (MILK, 1))

    assert (covered.status_code, covered.json()["status"]) == (202, "allowance")
    assert beyond.status_code == 503
    assert beyond.json()["error"]["details"]["allowance"] == "allowance.short"


def test_a_replay_names_the_grant_and_books_the_debits(client, central, sales):
    grant_id = granted(central, sales, units=5)
    central.go_down()
    local_ref = buy(client, (MILK, 3)).json()["local_ref"]
    central.come_back()

    drain(sales)

    assert central.calls[-1].grants == {MILK: grant_id}
    assert central.grants[grant_id].remaining == 2
    sale = client.get(f"/orders/{local_ref}").json()
    assert sale["status"] == "confirmed"
    assert sales.keeper.status()["units_waiting_replay"] == 0
    assert sales.keeper.fetch()
    assert sales.keeper.status()["units_left"] == 2, "central's remaining, nothing counted twice"


def test_no_online_sale_goes_to_central_before_the_allowance_sales(client, central, sales):
    granted(central, sales, units=5)
    central.go_down()
    allowance_key = buy(client, (MILK, 2), key="under-grant").json()["local_ref"]
    central.come_back()
    sent = len(central.calls)

    response = buy(client, (BREAD, 1), key="online")

    assert len(central.calls) == sent, "not sent before the allowance sale"
    assert response.json()["status"] == "queued"
    drain(sales)
    assert [call.idempotency_key for call in central.calls[sent:]] == ["under-grant", "online"]
    assert client.get(f"/orders/{allowance_key}").json()["status"] == "confirmed"
    assert buy(client, (BREAD, 1)).status_code == 201, "online again once replayed"


def test_a_statement_is_sent_once_the_grant_expired_and_its_sales_are_replayed(
    client, central, sales, clock
):
    grant_id = granted(central, sales, units=5, ttl_s=600)
    central.go_down()
    buy(client, (MILK, 3))
    clock.advance(700)
    central.come_back()

    sales.keeper.send_statements()
    assert central.statements == [], "a sale under it waits to be replayed"

    drain(sales)
    sales.keeper.send_statements()

    assert central.statements == [(grant_id, 3)]
    assert central.grants[grant_id].state == "closed"
    sales.keeper.send_statements()
    assert central.statements == [(grant_id, 3)], "a closed grant is done with"


def test_a_statement_replay_pending_is_sent_again_later(client, central, sales, clock):
    grant_id = granted(central, sales, units=5, ttl_s=600)
    clock.advance(700)
    central.statement_refusals.append(Refused(409, "allowance.replay_pending", "wait"))

    sales.keeper.send_statements()
    sales.keeper.send_statements()

    assert central.statements == [(grant_id, 0), (grant_id, 0)]
    assert client.get("/sync/status").json()["allowances"]["problems"] == []


def test_a_statement_mismatch_is_a_problem_in_sync_status(client, central, sales, clock):
    grant_id = granted(central, sales, units=5, ttl_s=600)
    clock.advance(700)
    central.statement_refusals.append(Refused(409, "allowance.statement_mismatch", "differs"))

    sales.keeper.send_statements()
    sales.keeper.send_statements()

    assert central.statements == [(grant_id, 0)], "not sent again"
    [problem] = client.get("/sync/status").json()["allowances"]["problems"]
    assert problem["grant_id"] == grant_id
    assert "allowance.statement_mismatch" in problem["problem"]


def test_central_unreachable_keeps_the_grants_and_says_so(client, central, sales):
    granted(central, sales, units=5)
    central.go_down()

    assert not sales.keeper.fetch()

    state = client.get("/sync/status").json()["allowances"]
    assert state["grants"] == 1 and state["units_held"] == 5
    assert "down" in state["last_error"]


def test_metrics_and_the_heartbeat_report_carry_units_held_and_used(
    replica, client, central, sales
):
    granted(central, sales, units=5)
    central.go_down()
    buy(client, (MILK, 2))
    vitals = Vitals(replica, sales.orders, SyncProgress())
    metrics = AgentMetrics()
    metrics.watch(WatchedState(vitals, allowances=sales.keeper.status))

    scraped = generate_latest(metrics.registry).decode()
    report = heartbeat_report(vitals, instance_id="i-1", allowances=sales.keeper.status)

    assert "storeagent_allowance_units_held 5.0" in scraped
    assert "storeagent_allowance_units_left 3.0" in scraped
    assert "storeagent_allowance_units_sold_total 2.0" in scraped
    assert (report["allowance_units_held"], report["allowance_units_used"]) == (5, 2)


def test_two_tills_at_once_cannot_both_sell_the_last_units_of_a_grant(central, sales):
    """Both find central down at once: the cover check and the debits share one transaction,
    so only one sells the grant's 4 units under it; the other takes the risk path."""
    granted(central, sales, units=4)
    central.go_down()
    both_sent = threading.Barrier(2, timeout=5)
    seen: set[str] = set()

    def meet_once(key, lines):
        if key not in seen:
            seen.add(key)
            both_sent.wait()

    central.on_call = meet_once
    results: dict[str, object] = {}

    def till(key: str) -> None:
        results[key] = sales.desk.place(PlaceOrder([{"sku": MILK, "quantity": 4}], key))

    threads = [threading.Thread(target=till, args=(k,)) for k in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert sorted(type(r).__name__ for r in results.values()) == ["AllowanceSold", "Queued"]
    assert sales.keeper.status()["units_left"] == 0


def test_a_fetch_central_answers_ends_the_replayers_backoff(client, central, sales):
    granted(central, sales)
    central.go_down()
    buy(client, (MILK, 1))
    assert not sales.replayer.step()
    assert sales.schedule.status()[1] == 1, "backing off"
    central.come_back()

    assert sales.keeper.fetch()

    assert sales.schedule.status()[1] == 0


def test_central_answers_are_read_and_grant_ids_sent_as_the_contract_says():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/allowances/mine"):
            item = {"id": "g1", "store_id": "s1", "sku": MILK, "units": 5, "remaining": 4,
                    "expires_at": "2030-01-01T00:00:00Z", "state": "live"}  # fmt: skip
            return httpx.Response(200, json={"items": [item], "margin_s": 60})
        if request.url.path.endswith("/statement"):
            error = {"code": "allowance.replay_pending", "message": "wait", "details": {}}
            return httpx.Response(409, json={"error": error})
        return httpx.Response(500)

    client = HttpCentralClient("http://central.test", "key", transport=httpx.MockTransport(answer))

    mine = client.my_allowances()
    statement = client.allowance_statement("g1", 3)

    assert (mine.margin_s, mine.server_time, mine.items[0].remaining) == (60, None, 4)
    assert mine.items[0].expires_at.tzinfo is not None
    assert not statement.accepted and statement.refusal is not None
    assert statement.refusal.code == "allowance.replay_pending"
    lines = [Line(BREAD, 1), Line(MILK, 2)]
    assert wire_lines(lines, {MILK: "g1"}) == [
        {"sku": BREAD, "quantity": 1},
        {"sku": MILK, "quantity": 2, "grant_id": "g1"},
    ]


def test_the_keeper_fetches_at_start_and_again_when_poked_until_stopped(central, sales):
    stop = threading.Event()
    runner = threading.Thread(target=sales.keeper.run, args=(stop,))
    runner.start()
    try:
        eventually(lambda: central.allowance_fetches == 1, what="the first fetch")
        central.grant(MILK, 3)

        sales.keeper.poke()

        eventually(lambda: sales.keeper.status()["units_held"] == 3, what="fetched again")
    finally:
        stop.set()
        runner.join(5)
    assert not runner.is_alive()


def test_an_online_sale_of_a_sku_under_a_grant_fetches_the_grants_again(client, central, sales):
    granted(central, sales)
    stop = threading.Event()
    runner = threading.Thread(target=sales.keeper.run, args=(stop,))
    runner.start()
    try:
        eventually(lambda: central.allowance_fetches == 2, what="the keeper's first round")
        assert buy(client, (BREAD, 1)).status_code == 201  # no grant of it
        assert buy(client, (MILK, 1)).status_code == 201

        eventually(lambda: central.allowance_fetches == 3, what="a fetch after the sale")
    finally:
        stop.set()
        runner.join(5)


def test_units_an_online_order_drew_from_a_grant_are_never_sold_again_offline(
    client, central, sales, clock
):
    grant_id = granted(central, sales, units=5, ttl_s=600)  # MILK: 35 anyone's, 5 held
    central.set_stock(MILK, 0, 9)  # the rest sold elsewhere meanwhile
    assert buy(client, (MILK, 3)).status_code == 201  # drawn from the grant, said in the answer
    central.go_down()  # before the agent read its grants again

    beyond = buy(client, (MILK, 3))
    within = buy(client, (MILK, 2))

    assert beyond.status_code == 409, beyond.text  # 2 left to this store, not 5
    assert within.status_code == 202 and within.json()["status"] == "allowance", within.text
    central.come_back()
    drain(sales)
    assert central.grants[grant_id].remaining == 0
    clock.advance(700)
    sales.keeper.send_statements()
    assert central.statements == [(grant_id, 5)], "3 drawn online and 2 sold offline"


def test_sales_under_grants_are_replayed_before_sales_queued_at_risk(client, central, sales):
    grant_id = central.grant(BREAD, 2)  # BREAD: 3 anyone's, 2 held for this store
    assert sales.keeper.fetch()
    central.go_down()
    at_risk = buy(client, (BREAD, 3))  # beyond the grant: queued at risk, first
    under_grant = buy(client, (BREAD, 2))
    central.set_stock(BREAD, 1, 9)  # meanwhile 2 of anyone's sold elsewhere
    central.come_back()

    drain(sales)

    assert at_risk.json()["status"] == "queued", at_risk.text
    assert under_grant.json()["status"] == "allowance", under_grant.text
    sent = [call.grants for call in central.calls if call.lines[0].sku == BREAD]
    assert sent[-2:] == [{BREAD: grant_id}, None], "the grant's sale first, then the risk"
    assert central.grants[grant_id].remaining == 0  # the risk sale could not draw on it


def test_a_poke_brings_the_next_fetch_forward_but_not_closer_than_the_gap_to_the_last():
    # last round at 100 s, every 30 s, gap 5 s
    assert next_round_at(100.0, 30.0, None, 5.0) == 130.0
    assert next_round_at(100.0, 30.0, 101.0, 5.0) == 105.0, "poked 1 s after: waits for the gap"
    assert next_round_at(100.0, 30.0, 112.0, 5.0) == 112.0, "poked after the gap: at once"
    assert next_round_at(100.0, 30.0, 140.0, 5.0) == 130.0, "never later than the regular round"
