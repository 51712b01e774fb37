"""Poison records on the topics are dead-lettered, `invctl sync status` shows them, and the
good records after them are applied."""

import json

from kafka import KafkaProducer

from harness.waiting import eventually
from tests.support.processes import stack

POISON = [
    b"not json at all",
    json.dumps({"event_id": "x", "type": "stock.changed", "schema": 1}).encode(),
    json.dumps(
        {
            "event_id": "6f1c2b1e-0000-4000-8000-000000000001",
            "type": "stock.changed",
            "schema": 99,
            "occurred_at": "2026-01-01T00:00:00+00:00",
            "data": {},
        }
    ).encode(),
]


def test_poison_is_dead_lettered_shown_and_later_records_still_apply(
    tmp_path, kafka_cluster, topic_prefix
):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        store = s.invctl_json("store", "add", "store-1", "--name", "First Street")
        category = s.invctl_json("category", "add", "Dairy")
        s.invctl(
            "product",
            "add",
            "MILK-1L",
            "--name",
            "Milk",
            "--price",
            "1",
            "--category",
            str(category["id"]),
        )
        s.invctl("stock", "set", "MILK-1L", "10")
        agent = s.start_agent("store-1", store["api_key"])

        producer = KafkaProducer(
            bootstrap_servers=kafka_cluster.bootstrap, **kafka_cluster.admin_config()
        )
        for value in POISON:
            producer.send(topic_prefix + "inventory-updated", key=b"MILK-1L", value=value)
        producer.flush()
        producer.close()
        s.invctl("stock", "set", "MILK-1L", "7")

        def applied_after_the_poison():
            shown = json.loads(
                s.invctl("--agent", agent.url, "--json", "stock", "show", "MILK-1L").stdout
            )
            assert shown["quantity"] == 7
            return shown

        eventually(applied_after_the_poison, what="the stock set after the poison applied")
        status = json.loads(s.invctl("--agent", agent.url, "--json", "sync", "status").stdout)
        human = s.invctl("--agent", agent.url, "sync", "status").stdout
        agent.stop()

    assert status["dead_letters"] == len(POISON)
    line = next(row for row in human.splitlines() if row.strip().startswith("dead letters"))
    assert line.split()[-1] == str(len(POISON))
