"""Kafka record headers central adds to every record (docs/wire.md, "Record headers").

`invctl-epoch` is the incarnation of central's database that published the record (1 until
the first restore); `invctl-seq` is the outbox row id, which grows within an epoch. A reader
orders records by (epoch, seq) and changes by (epoch, version). Both are ASCII decimal
integers in 0..2**63-1; records published before these headers existed have neither.
"""

from __future__ import annotations

from collections.abc import Sequence

EPOCH_HEADER = "invctl-epoch"
SEQ_HEADER = "invctl-seq"

COUNTER_MAX = 2**63 - 1
# 2**63 - 1 has 19 digits; anything longer is refused before int() sees it.
_MAX_DIGITS = 19


def parse_counter(raw: bytes) -> int:
    """The value of a counter header; ValueError when it is not ASCII decimal in range."""
    if not raw or len(raw) > _MAX_DIGITS or not all(0x30 <= b <= 0x39 for b in raw):
        raise ValueError(f"not a decimal counter: {raw[:32]!r}")
    value = int(raw)
    if value > COUNTER_MAX:
        raise ValueError(f"counter out of range: {raw!r}")
    return value


def header_int(headers: Sequence[tuple[str, bytes | None]], name: str) -> int | None:
    """The counter in header `name`, None when absent; ValueError when it is malformed.

    When a header repeats, the last one counts (Kafka keeps them in order, and a producer
    that adds a header again means the newer value).
    """
    found: bytes | None = None
    present = False
    for key, value in headers:
        if key == name:
            present = True
            found = value
    if not present:
        return None
    if found is None:
        raise ValueError(f"header {name} has no value")
    return parse_counter(found)


def encode_counter(value: int) -> bytes:
    """The header value for a counter (the inverse of parse_counter)."""
    if not 0 <= value <= COUNTER_MAX:
        raise ValueError(f"counter out of range: {value}")
    return str(value).encode("ascii")
