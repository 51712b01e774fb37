"""Ids for people: 8 characters in tables, any unique prefix accepted."""

from __future__ import annotations

import pytest

from invctl.errors import ExitCode, NotFoundError, UsageError
from invctl.ids import resolve_prefix, short_id

pytestmark = pytest.mark.unit

FIRST = "5f0c9a1e-3b7d-4e8a-9c21-0d6f4b2a7e13"
SECOND = "5f0c9a1e-9999-4e8a-9c21-0d6f4b2a7e13"
OTHER = "a1b2c3d4-3b7d-4e8a-9c21-0d6f4b2a7e13"
KNOWN = [FIRST, SECOND, OTHER, None]


def test_a_uuid_shows_its_first_8_characters_and_other_text_stays() -> None:
    assert short_id(FIRST) == "5f0c9a1e"
    assert short_id("L-0007") == "L-0007"


@pytest.mark.parametrize(
    ("prefix", "found"),
    [
        ("a1b2", OTHER),
        ("A1B2C3D4", OTHER),
        ("5f0c9a1e-3", FIRST),
        (SECOND, SECOND),
        (" a1b ", OTHER),
    ],
)
def test_a_unique_prefix_names_its_id(prefix: str, found: str) -> None:
    assert resolve_prefix(KNOWN, prefix) == found


def test_an_id_equal_to_the_prefix_wins_over_longer_ones() -> None:
    assert resolve_prefix(["L-1", "L-12"], "L-1") == "L-1"


def test_a_prefix_of_several_ids_is_a_usage_error_naming_them() -> None:
    with pytest.raises(UsageError) as raised:
        resolve_prefix(KNOWN, "5f0c")

    assert raised.value.exit_code == ExitCode.USAGE
    assert raised.value.code == "usage.ambiguous_id"
    assert FIRST in raised.value.message and SECOND in raised.value.message
    assert raised.value.details["matches"] == [FIRST, SECOND]


def test_a_prefix_of_nothing_is_not_found() -> None:
    with pytest.raises(NotFoundError) as raised:
        resolve_prefix(KNOWN, "ffff", what="order")

    assert raised.value.exit_code == ExitCode.NOT_FOUND
    assert raised.value.code == "order.not_found"


def test_an_empty_prefix_matches_nothing() -> None:
    with pytest.raises(UsageError):
        resolve_prefix(KNOWN, "  ")
