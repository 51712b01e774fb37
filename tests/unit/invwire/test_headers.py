"""The record headers that carry central's position (invwire.headers, docs/wire.md)."""

from __future__ import annotations

import pytest

from invwire.headers import (
    COUNTER_MAX,
    EPOCH_HEADER,
    SEQ_HEADER,
    encode_counter,
    header_int,
    parse_counter,
)


def test_the_header_names_are_the_documented_ones():
    assert (EPOCH_HEADER, SEQ_HEADER) == ("invctl-epoch", "invctl-seq")


def test_a_present_counter_is_read_and_an_absent_one_is_none():
    headers = [("event_id", b"e-1"), (EPOCH_HEADER, b"2"), (SEQ_HEADER, b"1041")]
    assert header_int(headers, EPOCH_HEADER) == 2
    assert header_int(headers, SEQ_HEADER) == 1041
    assert header_int([("event_id", b"e-1")], EPOCH_HEADER) is None
    assert header_int([], SEQ_HEADER) is None


def test_a_repeated_header_counts_by_its_last_value():
    assert header_int([(EPOCH_HEADER, b"1"), (EPOCH_HEADER, b"3")], EPOCH_HEADER) == 3


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"-1",
        b"+1",
        b" 1",
        b"1 ",
        b"1a",
        b"0x10",
        b"1_000",
        b"1.0",
        "\uff11".encode(),  # a full-width digit: int() would take it
        "\u0661".encode(),  # an Arabic-Indic digit
        str(COUNTER_MAX + 1).encode(),
        b"9" * 20,
        b"0" * 20 + b"1",
    ],
)
def test_anything_but_ascii_decimal_in_range_is_refused(raw):
    with pytest.raises(ValueError):
        parse_counter(raw)
    with pytest.raises(ValueError):
        header_int([(EPOCH_HEADER, raw)], EPOCH_HEADER)


def test_a_header_without_a_value_is_refused():
    with pytest.raises(ValueError):
        header_int([(SEQ_HEADER, None)], SEQ_HEADER)


def test_the_range_ends_are_accepted_and_leading_zeros_read_as_decimal():
    assert parse_counter(b"0") == 0
    assert parse_counter(str(COUNTER_MAX).encode()) == COUNTER_MAX
    assert parse_counter(b"007") == 7


def test_encoding_is_the_inverse_of_parsing_and_refuses_what_parsing_would():
    for value in (0, 1, 42, COUNTER_MAX):
        assert parse_counter(encode_counter(value)) == value
    for value in (-1, COUNTER_MAX + 1):
        with pytest.raises(ValueError):
            encode_counter(value)
