"""Records taken from the Kafka client ahead of the loop, handed to it a batch at a time.

kafka-python sends a partition's next fetch only when poll() has taken every record of the
partition's last fetch. Polled 500 records at a time, the loop drained a fetch (about 3,500
stock records) over seven batches and then, on the eighth poll, waited out the whole round
trip of the next fetch: about a third of a backlog's catch-up was spent waiting on the
broker. Taking all the client holds at once sends the next fetch at once; it then arrives
while the loop applies what it took. What was taken but not yet handed out counts as not yet
read: position() is the offset of its first record, and seek() drops it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from storeagent.sync.source import Record, TopicPartition


class ReadAhead:
    """Records read from the client and not yet handed out, in the order read: one chunk per
    partition and poll, each in offset order."""

    def __init__(self) -> None:
        self._chunks: deque[list[Record]] = deque()

    def __bool__(self) -> bool:
        return bool(self._chunks)

    def fill(self, chunks: Iterable[list[Record]]) -> None:
        self._chunks.extend(chunk for chunk in chunks if chunk)

    def take(self, limit: int) -> list[Record]:
        """Up to `limit` records from the front, in the order read."""
        taken: list[Record] = []
        chunks = self._chunks
        while chunks and len(taken) < limit:
            chunk = chunks[0]
            room = limit - len(taken)
            if len(chunk) <= room:
                taken += chunks.popleft()
            else:
                taken += chunk[:room]
                chunks[0] = chunk[room:]
        return taken

    def next_offset(self, partition: TopicPartition) -> int | None:
        """The offset of the first record of `partition` held here; None when none is."""
        topic, number = partition
        for chunk in self._chunks:
            first = chunk[0]
            if first.partition == number and first.topic == topic:
                return first.offset
        return None

    def drop(self, partition: TopicPartition) -> None:
        """Forget the records of `partition` held here (it is read again from a seek)."""
        topic, number = partition
        kept = [c for c in self._chunks if not (c[0].partition == number and c[0].topic == topic)]
        self._chunks = deque(kept)

    def clear(self) -> None:
        self._chunks.clear()
