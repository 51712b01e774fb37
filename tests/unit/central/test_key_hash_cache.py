"""The relay's partitioner keeps each key's hash and places every key where kafka-python's
default partitioner (the Java client's) does: a key's events stay in one partition."""

import pytest
from kafka.partitioner.default import DefaultPartitioner

from central.kafka import KeyHashCache
from tests.support.central_fakes import FakeClusterMetadata

KEYS = [f"SKU-{i:05d}".encode() for i in range(3000)] + [b"", b"\xff\x00 order-7"]


@pytest.mark.parametrize("partitions", [1, 3, 12])
def test_every_key_goes_where_the_default_partitioner_puts_it(partitions):
    cluster = FakeClusterMetadata({"stock": partitions})
    cached, default = KeyHashCache(), DefaultPartitioner()
    for _ in range(2):  # the second round answers from the kept hashes
        placed = [cached.partition("stock", k, k, None, None, cluster) for k in KEYS]
        assert placed == [default.partition("stock", k, k, None, None, cluster) for k in KEYS]


def test_a_full_cache_starts_over_and_still_places_keys_the_same(monkeypatch):
    monkeypatch.setattr(KeyHashCache, "MAX_KEYS", 10)
    cluster = FakeClusterMetadata({"stock": 12})
    cached, default = KeyHashCache(), DefaultPartitioner()
    placed = [cached.partition("stock", k, k, None, None, cluster) for k in KEYS[:50]]
    assert placed == [default.partition("stock", k, k, None, None, cluster) for k in KEYS[:50]]
    assert len(cached._hashes) <= 10


def test_an_unknown_topic_is_refused_as_kafka_python_refuses_it():
    with pytest.raises(ValueError, match="not found"):
        KeyHashCache().partition("gone", b"k", b"k", None, None, FakeClusterMetadata({}))
