"""Poison records on a real broker are dead-lettered by a real agent, and ops read them with
invctl: listed newest first, each shown whole with its value as text, escaped text or base64,
never raw on the terminal. And `invctl store keys` finds the key ids `rotate-key` asks for."""

import base64
import json

from kafka import KafkaProducer

from harness.waiting import eventually
from tests.support.processes import stack

PLAIN = b"not json at all"
WITH_ESCAPE = b'{"name": "Milk\x1b]0;owned\x07"}'  # a raw control character: not JSON
NOT_UTF8 = b"\xff\xfe\x00 binary"
POISON = [PLAIN, WITH_ESCAPE, NOT_UTF8]


def test_dead_letters_are_listed_and_shown_through_invctl(tmp_path, kafka_cluster, topic_prefix):
    with stack(tmp_path, kafka_cluster, topic_prefix) as s:
        s.start_central()
        s.login_admin()
        store = s.invctl_json("store", "add", "store-1", "--name", "First Street")
        rotated = s.invctl_json("store", "rotate-key", "store-1")
        keys = s.invctl_json("store", "keys", "store-1")
        s.invctl("category", "add", "Dairy")  # central makes the topics with its first event
        agent = s.start_agent("store-1", store["api_key"])
        at_agent = ("--agent", agent.url)

        producer = KafkaProducer(
            bootstrap_servers=kafka_cluster.bootstrap, **kafka_cluster.admin_config()
        )
        for value in POISON:
            producer.send(topic_prefix + "inventory-updated", key=b"MILK-1L", value=value)
        producer.flush()
        producer.close()

        def all_dead_lettered():
            listed = s.invctl_json(*at_agent, "sync", "dead-letters", "list")
            assert len(listed) == len(POISON)
            return listed

        listed = eventually(all_dead_lettered, what="the poison records dead-lettered")
        shown = {
            item["id"]: s.invctl_json(*at_agent, "sync", "dead-letters", "show", str(item["id"]))
            for item in listed
        }
        escaped_id = next(
            i for i, letter in shown.items() if letter["value"]["size"] == len(WITH_ESCAPE)
        )
        human = s.invctl(*at_agent, "sync", "dead-letters", "show", str(escaped_id)).stdout
        table = s.invctl(*at_agent, "sync", "dead-letters", "list", "--limit", "2")
        unknown = s.invctl(*at_agent, "sync", "dead-letters", "show", "999999", check=False)
        agent.stop()

    assert [item["id"] for item in listed] == sorted((item["id"] for item in listed), reverse=True)
    assert [item["offset"] for item in listed] == sorted(
        (item["offset"] for item in listed), reverse=True
    )
    values = sorted(
        (letter["value"]["encoding"], letter["value"]["data"]) for letter in shown.values()
    )
    assert values == [
        ("base64", base64.b64encode(NOT_UTF8).decode()),
        ("escaped", '{"name": "Milk\\x1b]0;owned\\x07"}'),
        ("text", PLAIN.decode()),
    ]
    for letter in shown.values():
        assert letter["topic"] == topic_prefix + "inventory-updated"
        assert letter["key"]["data"] == "MILK-1L"
        assert letter["code"] == "json.invalid"
    assert "\x1b" not in human and '{"name": "Milk\\x1b]0;owned\\x07"}' in human
    assert "showing the first 2 dead letters" in table.stderr
    assert unknown.returncode == 3 and "dead_letter.not_found" in unknown.stderr
    assert [(k["id"], k["prefix"], k["active"]) for k in keys] == [
        (store["key_id"], store["api_key"][:10], True),
        (rotated["key_id"], rotated["api_key"][:10], True),
    ]
    assert json.dumps(keys).count(store["api_key"]) == 0
