"""A central database restored behind what central already published to Kafka, as an operator
would do it, on SQLite and on MariaDB with the real broker and real `central` processes:

- put back by hand (the SQLite file copied over, the dump loaded into the emptied MariaDB
  database), `central serve` and `central relay` refuse to start, with one line and exit 2;
  `central confirm-restore --yes` records epoch 2, and central then starts and republishes
  its whole state with `invctl-epoch: 2` on every record;
- restored with `central restore`, central starts at once (the restore made epoch 2).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from central.backup import extract_payload, read_manifest, sqlite_path
from central.kafka import KafkaLastRecords
from central.kafka_position import Position, record_position
from central.models import utcnow
from central.restore import MariadbTarget
from harness.kafka_security import KafkaCluster
from harness.waiting import eventually
from invwire.topics import TOPIC_CATEGORY, TOPIC_INVENTORY, TOPIC_PRODUCT, TOPICS
from tests.support.central_harness import SECRET, running_central
from tests.support.processes import BIN, free_port, wait_http

SKUS = ("SKU-A", "SKU-B", "SKU-C")


def central_env(url: str, kafka: KafkaCluster, prefix: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith("INVCTL_")}
    return {
        **kept,
        "INVCTL_DATABASE_URL": url,
        "INVCTL_JWT_SECRET": SECRET,
        "INVCTL_TOPIC_PREFIX": prefix,
        "INVCTL_RELAY_POLL_SECONDS": "0.2",
        **kafka.central_env(),
    }


def central_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "central"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: exit {done.returncode}: {done.stderr}"
    return done.stdout


def said(stderr: str) -> list[str]:
    """What a command said to the operator: its stderr but the JSON log lines."""
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


def seed_then_backup_then_change(
    url: str, kafka: KafkaCluster, prefix: str, env: dict[str, str], backup: Path
) -> None:
    """A category, three stocked products, all published; central stopped and backed up
    (the copy an operator keeps); central again, and a round of stock changes published:
    Kafka now holds outbox ids the backup has not. (A backup taken while central runs holds
    its relay's lease, and a database put back by hand from it keeps that lease until it
    runs out, 60 s after the backup: confirm-restore waits for it, as it should.)"""
    with running_central(url, kafka, prefix) as h:
        admin = h.admin()
        category = h.call("POST", "/api/v1/categories", admin, json={"name": "Dairy"})
        for sku in SKUS:
            product = {"sku": sku, "name": sku, "price": "1.50", "category_id": category["id"]}
            h.call("POST", "/api/v1/products", admin, json=product)
            h.call("PUT", f"/api/v1/stock/{sku}", admin, json={"quantity": 20})
        eventually(lambda: h.central.relay.backlog() == 0, 60, "the seed published")
    ok(central_cli(env, "backup", "--to", str(backup)))
    with running_central(url, kafka, prefix) as h:
        admin = h.admin()
        for sku in SKUS:
            h.call("PUT", f"/api/v1/stock/{sku}", admin, json={"quantity": 45})
        eventually(lambda: h.central.relay.backlog() == 0, 60, "the changes published")


def put_back_by_hand(url: str, backup: Path, scratch: Path) -> None:
    """What an operator does without `central restore`: SQLite's file copied over central's,
    or the dump loaded into MariaDB's emptied database. No epoch is recorded."""
    scratch.mkdir()
    payload = extract_payload(backup, read_manifest(backup), scratch)
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        for companion in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            companion.unlink(missing_ok=True)
        shutil.copyfile(payload, path)
    else:
        MariadbTarget(url).replace(payload, utcnow())


def records_on_kafka(kafka: KafkaCluster, prefix: str) -> list[tuple[str, str, Position]]:
    """Every record of the wire topics: (unprefixed topic, key, position from its headers)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        **kafka.admin_config(),
    )
    try:
        partitions = [
            TopicPartition(prefix + topic, p)
            for topic in TOPICS
            for p in sorted(consumer.partitions_for_topic(prefix + topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []

        def read_to_the_end() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            return all(consumer.position(tp) >= ends[tp] for tp in partitions)

        eventually(read_to_the_end, 60, "every record read", interval=0)
    finally:
        consumer.close()
    return [(r.topic[len(prefix) :], r.key.decode(), record_position(r.headers)) for r in records]


def newest_on_kafka(kafka: KafkaCluster, prefix: str) -> Position | None:
    return KafkaLastRecords(kafka.bootstrap, prefix, kafka.admin_config()).newest()


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "central"), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", process=process)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0


def logged(log: Path, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def assert_republished_at_epoch_2(kafka: KafkaCluster, prefix: str, url: str, log: Path) -> None:
    def newest_epoch() -> int:
        newest = newest_on_kafka(kafka, prefix)
        return newest.epoch if newest is not None else 0

    eventually(lambda: newest_epoch() == 2, 60, "records of epoch 2", interval=0.5)
    at_epoch_2 = {
        (topic, key) for topic, key, at in records_on_kafka(kafka, prefix) if at.epoch == 2
    }
    assert {(TOPIC_PRODUCT, sku) for sku in SKUS} <= at_epoch_2
    assert {(TOPIC_INVENTORY, sku) for sku in SKUS} <= at_epoch_2
    assert any(topic == TOPIC_CATEGORY for topic, _ in at_epoch_2)
    assert httpx.get(f"{url}/healthz").headers["Invctl-Epoch"] == "2"
    [republished] = logged(log, "relay.republished")
    assert (republished["reason"], republished["published_epoch"]) == ("new_epoch", 1)


def test_a_database_put_back_by_hand_is_refused_until_the_restore_is_confirmed(
    database_url, kafka_cluster, topic_prefix, tmp_path
):
    env = central_env(database_url, kafka_cluster, topic_prefix)
    backup = tmp_path / "central.backup"
    seed_then_backup_then_change(database_url, kafka_cluster, topic_prefix, env, backup)
    published = newest_on_kafka(kafka_cluster, topic_prefix)
    put_back_by_hand(database_url, backup, tmp_path / "scratch")
    at_backup = read_manifest(backup).facts.outbox_position
    assert published is not None and published > Position(1, at_backup)

    for command in (["serve", "--port", str(free_port())], ["relay"]):
        refused = central_cli(env, *command)

        assert refused.returncode == 2, refused.stderr
        [line] = said(refused.stderr)
        assert line.endswith("[central.behind_kafka]"), line
        assert f"(epoch 1, outbox id {at_backup})" in line
        assert f"({published})" in line and "central confirm-restore" in line

    # MariaDB drops a closed connection from its process list a moment after it closed.
    confirmed = eventually(
        lambda: ok(central_cli(env, "confirm-restore", "--yes")), 30, "the confirmation"
    )
    assert "epoch 2" in confirmed
    assert ok(central_cli(env, "status")).splitlines()[0] == "epoch 2"

    log = tmp_path / "central.log"
    with serving(env, log) as url:
        assert_republished_at_epoch_2(kafka_cluster, topic_prefix, url, log)


def test_a_database_restored_with_central_restore_starts_at_once(
    database_url, kafka_cluster, topic_prefix, tmp_path
):
    env = central_env(database_url, kafka_cluster, topic_prefix)
    backup = tmp_path / "central.backup"
    seed_then_backup_then_change(database_url, kafka_cluster, topic_prefix, env, backup)

    restored = eventually(
        lambda: ok(central_cli(env, "restore", str(backup), "--yes")), 30, "the restore"
    )
    assert "epoch 2" in restored

    log = tmp_path / "central.log"
    with serving(env, log) as url:
        assert_republished_at_epoch_2(kafka_cluster, topic_prefix, url, log)
    [checked] = logged(log, "central.position_checked")
    assert checked["epoch"] == 2
