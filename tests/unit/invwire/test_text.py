"""Which characters names may hold, and how text is made safe for a terminal."""

from __future__ import annotations

import pytest

from invwire.text import escape_all, escape_for_terminal, first_refused_char, is_clean_text

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text",
    [
        "Milk 1L",
        "Café au lait",
        "Лук репчатый",
        "牛奶",
        "\u0646\u0627\u0646\u200c\u0647\u0627",
        "👩\u200d🍳 kit",
        "",
    ],
)
def test_ordinary_names_are_clean(text: str) -> None:
    assert is_clean_text(text)


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ("Milk\x1b]0;owned\x07", 4),
        ("tab\there", 3),
        ("line\nbreak", 4),
        ("del\x7f", 3),
        ("abc\u202edcba", 3),  # right-to-left override
        ("zero\u200bwidth", 4),
        ("para\u2029graph", 4),
        ("lone \ud800 surrogate", 5),
        ("c1 \x9b control", 3),
    ],
)
def test_control_format_and_surrogate_characters_are_refused(text: str, index: int) -> None:
    assert not is_clean_text(text)
    assert first_refused_char(text) == index


def test_non_strings_are_not_clean() -> None:
    assert not is_clean_text(None)
    assert not is_clean_text(42)


def test_escaping_shows_every_refused_character_and_keeps_the_rest() -> None:
    assert escape_for_terminal("Milk\x1b[2J 1L\u202e") == "Milk\\x1b[2J 1L\\u202e"
    assert escape_for_terminal("Café") == "Café"
    assert escape_for_terminal("a\ud800b") == "a\\ud800b"


def test_escape_all_escapes_every_string_keys_included_and_keeps_other_values() -> None:
    data = {"na\x1bme": ["ok", ("\u202eevil", 3)], "n": None, "q": 1.5, "flag": True}

    assert escape_all(data) == {
        "na\\x1bme": ["ok", ["\\u202eevil", 3]],
        "n": None,
        "q": 1.5,
        "flag": True,
    }
