"""Observability of real processes: central's and an agent's /metrics follow a scripted
workload; `invctl sync status --all` shows a stopped store falling behind and catching up;
the logs are JSON lines that carry one request id from invctl through the agent to central
and never hold a secret."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness.waiting import eventually
from tests.support.processes import ADMIN_PASSWORD, SECRET, Service, Stack, stack
from tests.support.shop import seed_shop

SKU = "MILK-1L"
FAST_HEARTBEATS = ["--heartbeat-seconds", "1"]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (sample, _), v in samples.items() if sample == name)


def start_shop(s: Stack, stores: list[str], quantity: int = 40) -> dict[str, str]:
    """Central running, invctl logged in as the admin, one product with stock; the stores'
    API keys."""
    s.start_central()
    s.login_admin()
    return seed_shop(s.central_url, {SKU: quantity}, stores).keys


def start_agent(s: Stack, store: str, key: str, port: int | None = None) -> Service:
    return s.start_agent(store, key, port=port, extra_args=FAST_HEARTBEATS)


def wait_replicated(s: Stack, agent: Service, quantity: int) -> None:
    def replicated() -> dict[str, Any]:
        shown = s.invctl("--agent", agent.url, "--json", "stock", "show", SKU, check=False)
        assert shown.returncode == 0, shown.stderr
        stock = json.loads(shown.stdout)
        assert stock["quantity"] == quantity
        return stock

    eventually(replicated, what=f"{SKU} at {quantity} in the replica")


def fleet(s: Stack) -> dict[str, dict[str, Any]]:
    report = s.invctl_json("sync", "status", "--all")
    return {item["store_id"]: item for item in report["items"]}


def test_metrics_of_central_and_agent_follow_a_scripted_workload(
    tmp_path, kafka_cluster, topic_prefix
):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        keys = start_shop(s, ["store-1"])
        s.invctl("stock", "adjust", SKU, "5")
        agent = start_agent(s, "store-1", keys["store-1"])
        wait_replicated(s, agent, 45)

        for _ in range(2):
            s.invctl("--agent", agent.url, "buy", f"{SKU}:2")
        refused = s.invctl("--agent", agent.url, "buy", f"{SKU}:1000", check=False)

        def settled() -> tuple[Samples, Samples]:
            at_agent, at_central = scrape(agent.url), scrape(s.central_url)
            assert value(at_central, "invctl_outbox_backlog") == 0
            assert total(at_agent, "storeagent_consumer_lag") == 0
            # Six events in all; a sale's own event is stale when central's answer was applied
            # first (read-your-writes), applied when Kafka delivered it first: either counts.
            consumed = value(at_agent, "storeagent_events_applied_total") + value(
                at_agent, "storeagent_events_stale_total"
            )
            assert consumed >= 6, "every event consumed"
            assert value(at_agent, "storeagent_heartbeats_total", result="ok") >= 1
            return at_agent, at_central

        at_agent, at_central = eventually(settled, what="metrics settled")
        store = eventually(lambda: _seen(fleet(s)["store-1"]), what="store-1 seen")

    assert refused.returncode == 4, refused.stderr
    orders = "storeagent_orders_total"
    assert value(at_agent, orders, outcome="confirmed") == 2
    assert value(at_agent, orders, outcome="stock.insufficient") == 1
    requests = "storeagent_http_requests_total"
    assert value(at_agent, requests, method="POST", route="/orders", status="201") == 2
    assert value(at_agent, requests, method="POST", route="/orders", status="409") == 1
    assert value(at_agent, "storeagent_events_applied_total") >= 4
    assert value(at_agent, "storeagent_sync_latency_seconds_count") >= 2, "stock set and adjust"
    assert value(at_agent, "storeagent_apply_batch_duration_seconds_count") >= 1
    assert value(at_agent, "storeagent_dead_letters") == 0
    assert value(at_agent, "storeagent_offline_queue_depth") == 0
    assert value(at_agent, "storeagent_ready") == 1
    assert value(at_agent, "storeagent_central_circuit", state="closed") == 1
    assert value(at_agent, "storeagent_replica_staleness_seconds") >= 0

    assert value(at_central, "invctl_orders_total", outcome="confirmed") == 2
    central_requests = "invctl_http_requests_total"
    assert (
        value(at_central, central_requests, method="POST", route="/api/v1/orders", status="201")
        == 2
    )
    heartbeats = value(
        at_central, central_requests, method="POST", route="/api/v1/stores/heartbeat", status="200"
    )
    assert heartbeats >= 1
    assert value(at_central, "invctl_outbox_published_total") >= 6
    assert store["lag"] == 0
    assert store["reported"]["ready"] is True
    assert store["reported"]["dead_letters"] == 0


def _seen(store: dict[str, Any], within_s: float = 5.0) -> dict[str, Any]:
    assert store["lag"] == 0, store
    assert store["seconds_since_seen"] is not None and store["seconds_since_seen"] < within_s
    return store


def test_a_stopped_store_falls_behind_in_the_fleet_view_and_catches_up_after_restart(
    tmp_path, kafka_cluster, topic_prefix
):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        keys = start_shop(s, ["north", "south"], quantity=100)
        agents = {store: start_agent(s, store, key) for store, key in keys.items()}
        eventually(lambda: [_seen(item) for item in fleet(s).values()], what="both stores seen")
        south_port = int(agents["south"].url.rsplit(":", 1)[1])

        agents["south"].stop()
        for _ in range(3):
            s.invctl("stock", "adjust", SKU, "1")
        first = eventually(lambda: _behind(fleet(s), at_least=3), what="south 3 behind")
        time.sleep(2)
        for _ in range(3):
            s.invctl("stock", "adjust", SKU, "1")
        second = eventually(lambda: _behind(fleet(s), at_least=6), what="south 6 behind")

        start_agent(s, "south", keys["south"], port=south_port)
        after = eventually(lambda: [_seen(i) for i in fleet(s).values()], what="south caught up")

    assert second["south"]["lag"] > first["south"]["lag"]
    assert second["south"]["seconds_since_seen"] > first["south"]["seconds_since_seen"] + 2
    assert second["south"]["seconds_since_seen"] > 3, "a stopped store's last heartbeat ages"
    assert second["north"]["lag"] == 0 and second["north"]["seconds_since_seen"] < 5
    assert [item["lag"] for item in after] == [0, 0]


def _behind(stores: dict[str, dict[str, Any]], at_least: int) -> dict[str, dict[str, Any]]:
    assert stores["south"]["lag"] is not None and stores["south"]["lag"] >= at_least, stores
    _seen(stores["north"])
    return stores


def test_logs_are_json_lines_that_carry_the_request_id_and_hold_no_secret(
    tmp_path, kafka_cluster, topic_prefix
):
    request_id = f"e2e-{topic_prefix.strip('.')}"
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        keys = start_shop(s, ["store-1"])
        agent = start_agent(s, "store-1", keys["store-1"])
        wait_replicated(s, agent, 40)
        s.env["INVCTL_REQUEST_ID"] = request_id
        try:
            s.invctl("--agent", agent.url, "buy", f"{SKU}:1")
        finally:
            del s.env["INVCTL_REQUEST_ID"]
        token = _saved_token(tmp_path)
        s.stop_all()
        central_lines = _json_lines(s.workdir / "central.log")
        agent_lines = _json_lines(agent.log)

    at_agent = {
        (line["event"], line.get("route"))
        for line in agent_lines
        if line.get("request_id") == request_id
    }
    at_central = {
        (line["event"], line.get("route"))
        for line in central_lines
        if line.get("request_id") == request_id
    }
    assert ("http.request", "/orders") in at_agent, "invctl's request at the agent"
    assert ("order.confirmed", None) in at_agent, "the agent's call to central"
    assert ("http.request", "/api/v1/orders") in at_central, "central's side of that call"
    for line in central_lines + agent_lines:
        assert {"ts", "level", "event"} <= set(line), line
    assert all(line.get("store_id") == "store-1" for line in agent_lines)
    everything = (s.workdir / "central.log").read_text() + agent.log.read_text()
    for secret in (ADMIN_PASSWORD, SECRET, token, keys["store-1"]):
        assert secret not in everything


def _json_lines(log: Path) -> list[dict[str, Any]]:
    lines = log.read_text().splitlines()
    assert lines, f"{log} is empty"
    parsed = []
    for number, text in enumerate(lines, 1):
        try:
            parsed.append(json.loads(text))
        except json.JSONDecodeError:
            raise AssertionError(f"{log.name}:{number} is not JSON: {text[:200]}") from None
    return parsed


def _saved_token(workdir: Path) -> str:
    saved = json.loads((workdir / "invctl-config" / "credentials.json").read_text())
    (login,) = saved["logins"].values()
    return str(login["token"])
