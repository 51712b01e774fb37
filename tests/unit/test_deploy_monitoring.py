"""deploy/: the Prometheus alert rules and the Grafana dashboard are well formed and use only
metrics that central and the agent really export. With promtool (Debian's prometheus
package, or PROMTOOL=/path/to/promtool) the rules, their unit tests and every dashboard
query are also checked by Prometheus itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from central.metrics import Metrics
from central.services.fleet import ACTIVE_STATES, StoreHealth, StoreState
from storeagent.ops.metrics import AgentMetrics, WatchedState
from storeagent.ops.vitals import Vitals
from storeagent.replica.db import META_LAST_EVENT_AT, open_replica
from storeagent.replica.local_orders import LocalOrders
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import TopicPartition

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "invctl.json"
METRIC = re.compile(r"\b(?:invctl|storeagent)_[a-z0-9_]+\b")
DURATION = re.compile(r"^\d+[smhd]$")
SEVERITIES = {"critical", "warning", "info"}
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}
DASHBOARD_TOPICS = (
    "fleet lag",
    "staleness",
    "sync latency",
    "orders by outcome",
    "outbox backlog",
    "offline queue",
    "dead letters",
    "http latency",
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name central's and an agent's registries can produce."""
    central = Metrics()
    central.watch_backlog(lambda: 0)
    central.watch_agents(lambda: {"store-1": []})
    central.watch_fleet(lambda: [StoreHealth("store-1", StoreState.OK, 1.0)], ACTIVE_STATES)
    replica = open_replica(tmp_path_factory.mktemp("replica") / "replica.db")
    with replica.transaction():
        replica.set_meta({META_LAST_EVENT_AT: "2026-11-29T10:00:00+00:00"})
    progress = SyncProgress()
    progress.set_end_offsets({TopicPartition("inventory-updated", 0): 1})
    agent = AgentMetrics()
    circuit = {"circuit": "closed", "consecutive_failures": 0, "last_error": None}
    vitals = Vitals(replica, LocalOrders(replica), progress)
    agent.watch(WatchedState(vitals, circuit=lambda: circuit))
    try:
        return {
            family.name + suffix
            for registry in (central.registry, agent.registry)
            for family in registry.collect()
            for suffix in SUFFIXES[family.type]
        }
    finally:
        replica.close()


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_every_alert_has_an_expression_a_duration_a_severity_and_a_summary():
    rules = alert_rules()

    assert len(rules) >= 5
    for rule in rules:
        name = rule.get("alert")
        assert name and rule.get("expr"), rule
        assert DURATION.match(str(rule.get("for", ""))), f"{name}: for"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity"
        assert rule.get("annotations", {}).get("summary"), f"{name}: summary"
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))


def test_the_alerts_cover_the_situations_operators_asked_for():
    metrics_alerted = {name for rule in alert_rules() for name in METRIC.findall(rule["expr"])}

    assert {
        "storeagent_consumer_lag",
        "storeagent_replica_staleness_seconds",
        "invctl_outbox_backlog",
        "storeagent_offline_queue_depth",
        "storeagent_dead_letters",
        "invctl_store_heartbeat_age_seconds",  # central's: they outlive a stopped agent
        "invctl_store_state",
    } <= metrics_alerted


def test_the_fleet_alerts_name_each_state_that_needs_someone():
    alerted = {
        state
        for rule in alert_rules()
        for state in re.findall(r'invctl_store_state\{state="([a-z_]+)"\}', rule["expr"])
    }

    assert alerted == set(ACTIVE_STATES) - {"ok", "stale"}, "stale is the step before down"


def test_alerts_and_dashboard_use_only_exported_metrics(exported):
    exprs = [rule["expr"] for rule in alert_rules()] + dashboard_exprs()

    used = {name for expr in exprs for name in METRIC.findall(expr)}

    assert used, "no metric found in the rules and the dashboard"
    assert used - exported == set()


def test_dashboard_has_a_panel_per_topic_and_unique_ids():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])

    assert [topic for topic in DASHBOARD_TOPICS if topic not in titles] == []
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["targets"] for panel in dashboard["panels"])
    assert dashboard["uid"] and dashboard["title"]


def promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.fail(
            "promtool is not installed: run scripts/dev setup (it installs Debian's "
            "prometheus package) or set PROMTOOL=/path/to/promtool",
            pytrace=False,
        )
    return found


def run_promtool(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_rules_and_their_unit_tests_pass():
    run_promtool("check", "rules", ALERTS.name, cwd=ALERTS.parent)
    run_promtool("test", "rules", ALERT_TESTS.name, cwd=ALERTS.parent)


def test_promtool_parses_every_dashboard_query(tmp_path):
    rules = [
        {"record": f"dashboard:query_{n}", "expr": expr} for n, expr in enumerate(dashboard_exprs())
    ]
    as_rules = tmp_path / "dashboard_queries.yml"
    as_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    run_promtool("check", "rules", as_rules.name, cwd=tmp_path)
