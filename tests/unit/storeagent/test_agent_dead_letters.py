"""GET /sync/dead-letters and /sync/dead-letters/{id}: the records the agent could not apply,
read from a real SQLite replica, newest first and paged, each shown whole with its untrusted
key and value as text, escaped text or base64, never raw and never unbounded."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from invwire.errors import PoisonRecord
from storeagent.http.app import create_app
from storeagent.http.dead_letters import MAX_PAGE, SHOWN_KEY_BYTES, SHOWN_VALUE_BYTES, shown_bytes
from storeagent.replica.db import Replica
from storeagent.sync.apply import apply_batch
from storeagent.sync.loop import topic_names
from storeagent.sync.progress import SyncProgress
from storeagent.sync.source import Record
from tests.support.agent_fakes import FixedClock, stock_event
from tests.support.terminal import TERMINAL_TOKEN, TERMINAL_URL

TOPIC = "inventory-updated"


def poison(replica: Replica, *values: bytes, key: bytes | None = b"MILK-1L") -> None:
    """Each value dead-lettered by the real apply path, at offsets 0, 1, ... of partition 2."""
    start = replica.dead_letter_count()
    records = [Record(TOPIC, 2, start + offset, key, value) for offset, value in enumerate(values)]
    apply_batch(replica, records, prefix="", now=FixedClock()())


@pytest.fixture
def client(replica) -> TestClient:
    """A GET client as a till or invctl on the store machine is: loopback, without the token
    (reads never need it)."""
    app = create_app(
        replica,
        SyncProgress(),
        store_id="s1",
        topics=topic_names(""),
        terminal_token=TERMINAL_TOKEN,
    )
    return TestClient(app, base_url=TERMINAL_URL, raise_server_exceptions=False)


def test_the_list_is_newest_first_with_the_total_and_no_value(client, replica):
    poison(replica, b"not json 1", b"not json 2", b"not json 3")

    body = client.get("/sync/dead-letters").json()

    assert [item["offset"] for item in body["items"]] == [2, 1, 0]
    assert (body["total"], body["next_before"]) == (3, None)
    newest = body["items"][0]
    assert newest == {
        "id": newest["id"],
        "topic": TOPIC,
        "partition": 2,
        "offset": 2,
        "key": {"encoding": "text", "data": "MILK-1L", "size": 7, "truncated": False},
        "value_size": len(b"not json 3"),
        "code": newest["code"],
        "message": newest["message"],
        "created_at": "2026-11-29T10:00:00.000000+00:00",
    }
    assert newest["code"] == "json.invalid"
    assert newest["message"].startswith("the value is not UTF-8 JSON")
    assert "value" not in newest


def test_following_next_before_reads_every_letter_once_and_ends(client, replica):
    poison(replica, *(f"bad {n}".encode() for n in range(7)))

    offsets, before, pages = [], None, 0
    while True:
        params = {"limit": 3} if before is None else {"limit": 3, "before": before}
        page = client.get("/sync/dead-letters", params=params).json()
        offsets += [item["offset"] for item in page["items"]]
        pages += 1
        assert page["total"] == 7
        before = page["next_before"]
        if before is None:
            break

    assert offsets == [6, 5, 4, 3, 2, 1, 0]
    assert pages == 3


def test_a_replica_without_dead_letters_lists_none(client):
    body = client.get("/sync/dead-letters").json()

    assert body == {"items": [], "total": 0, "next_before": None}


def test_one_dead_letter_is_shown_whole(client, replica):
    poison(replica, b"not json at all")
    [item] = client.get("/sync/dead-letters").json()["items"]

    body = client.get(f"/sync/dead-letters/{item['id']}").json()

    assert body == {
        **item,
        "value": {"encoding": "text", "data": "not json at all", "size": 15, "truncated": False},
    }


def test_a_value_with_control_characters_is_shown_escaped(client, replica):
    poison(replica, b'{"name": "Milk\x1b]0;owned\x07 \xe2\x80\xae"}')
    [item] = client.get("/sync/dead-letters").json()["items"]

    value = client.get(f"/sync/dead-letters/{item['id']}").json()["value"]

    assert value["encoding"] == "escaped"
    assert value["data"] == '{"name": "Milk\\x1b]0;owned\\x07 \\u202e"}'


def test_bytes_that_are_not_utf8_are_shown_as_base64(client, replica):
    raw = b"\xff\xfe not json \x00\x01"
    poison(replica, raw, key=b"\xc3\x28")
    [item] = client.get("/sync/dead-letters").json()["items"]

    body = client.get(f"/sync/dead-letters/{item['id']}").json()

    assert body["value"] == {
        "encoding": "base64",
        "data": base64.b64encode(raw).decode(),
        "size": len(raw),
        "truncated": False,
    }
    assert body["key"]["encoding"] == "base64"
    assert base64.b64decode(body["key"]["data"]) == b"\xc3\x28"


def test_a_large_value_is_cut_and_says_so(client, replica):
    raw = b"x" * (SHOWN_VALUE_BYTES * 3)
    poison(replica, raw, key=b"K" * (SHOWN_KEY_BYTES + 10))
    [item] = client.get("/sync/dead-letters").json()["items"]

    body = client.get(f"/sync/dead-letters/{item['id']}").json()

    assert body["value"]["size"] == len(raw)
    assert body["value"]["truncated"] is True
    assert body["value"]["data"] == "x" * SHOWN_VALUE_BYTES
    assert item["key"] == body["key"]
    assert (body["key"]["size"], len(body["key"]["data"])) == (SHOWN_KEY_BYTES + 10, 256)
    assert body["key"]["truncated"] is True


def test_a_record_without_key_or_value_shows_null(client, replica):
    poison(replica, b"", key=None)
    [item] = client.get("/sync/dead-letters").json()["items"]

    body = client.get(f"/sync/dead-letters/{item['id']}").json()

    assert body["key"] is None
    assert body["value"] == {"encoding": "text", "data": "", "size": 0, "truncated": False}


def test_a_character_split_by_the_cut_does_not_turn_text_into_base64():
    text = "é" * SHOWN_VALUE_BYTES  # two bytes each: the cut falls inside one at odd limits

    shown = shown_bytes(text.encode(), limit=SHOWN_VALUE_BYTES + 1)

    assert shown["encoding"] == "text"
    assert shown["data"] == "é" * (SHOWN_VALUE_BYTES // 2)
    assert shown["truncated"] is True


def test_bad_bytes_before_the_cut_are_base64_even_when_cut():
    shown = shown_bytes(b"\xff" + b"a" * 100, limit=50)

    assert shown["encoding"] == "base64"
    assert base64.b64decode(shown["data"]) == b"\xff" + b"a" * 49


def test_an_unknown_id_is_404_with_a_stable_code(client, replica):
    poison(replica, b"bad")

    response = client.get("/sync/dead-letters/999")

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "dead_letter.not_found",
        "message": "This replica holds no dead letter with that id.",
        "details": {"id": 999},
    }


@pytest.mark.parametrize(
    "path",
    [
        "/sync/dead-letters?limit=0",
        f"/sync/dead-letters?limit={MAX_PAGE + 1}",
        "/sync/dead-letters?limit=ten",
        "/sync/dead-letters?before=0",
        "/sync/dead-letters?before=9223372036854775808",
        "/sync/dead-letters/0",
        "/sync/dead-letters/abc",
        "/sync/dead-letters/99999999999999999999999",
    ],
)
def test_bad_limits_cursors_and_ids_are_422_never_500(client, path):
    response = client.get(path)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "request.invalid"


def test_dead_letters_are_readable_before_the_replica_is_ready(client, replica):
    stock = stock_event()
    poison(replica, stock[2][:-5])

    response = client.get("/sync/dead-letters")

    assert not replica.is_bootstrapped()
    assert response.status_code == 200
    assert response.json()["total"] == 1


def test_a_message_quoting_bad_text_is_escaped(client, replica):
    record = Record(TOPIC, 0, 0, b"K", b"{}")
    with replica.transaction():
        replica.add_dead_letter(record, PoisonRecord("bad name 'A\x1b[2J\u202e'"), FixedClock()())

    [item] = client.get("/sync/dead-letters").json()["items"]

    assert item["message"] == "bad name 'A\\x1b[2J\\u202e'"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Host": "evil.example:8787"}, 421, "request.host_refused"),
        ({"Origin": "http://evil.example"}, 403, "request.origin_refused"),
    ],
)
def test_reads_follow_the_agents_guard(client, replica, headers, status, code):
    poison(replica, b"bad")

    for path in ("/sync/dead-letters", "/sync/dead-letters/1"):
        response = client.get(path, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code)
