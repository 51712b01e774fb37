"""What text may go into names and descriptions, and how to show any text on a terminal.

Names travel from central through Kafka to every replica and out to terminals, so a control
character (ESC retitles and clears a terminal), a bidirectional override (makes a name read
backwards), a line separator or a lone surrogate (cannot be encoded as UTF-8) is refused where
the text enters, and escaped wherever text of unknown origin is printed.
"""

from __future__ import annotations

import unicodedata
from typing import Any

# Cc control, Cf format (bidi overrides, zero-width marks), Cs surrogates, Zl/Zp separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Zero-width (non-)joiners are format characters that some scripts and emoji need in words.
_ALLOWED_FORMAT = frozenset({"\u200c", "\u200d"})


def is_refused_char(char: str) -> bool:
    if char.isascii():
        return char < " " or char == "\x7f"
    return char not in _ALLOWED_FORMAT and unicodedata.category(char) in _REFUSED_CATEGORIES


def first_refused_char(text: str) -> int | None:
    """The index of the first character a name or description may not hold, else None."""
    if text.isascii() and text.isprintable():
        return None  # the common case, without a per-character loop
    for index, char in enumerate(text):
        if is_refused_char(char):
            return index
    return None


def is_clean_text(text: object) -> bool:
    return isinstance(text, str) and first_refused_char(text) is None


def escape_for_terminal(text: str) -> str:
    """`text` with every refused character shown as a visible escape (`\\x1b`, `\\u202e`)."""
    if first_refused_char(text) is None:
        return text
    return "".join(_escaped(char) if is_refused_char(char) else char for char in text)


def escape_all(data: Any) -> Any:
    """`data` (JSON-like) with every string in it, keys too, escaped for a terminal (a tuple
    comes back a list)."""
    if isinstance(data, str):
        return escape_for_terminal(data)
    if isinstance(data, dict):
        return {escape_all(key): escape_all(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [escape_all(item) for item in data]
    return data


def _escaped(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"
