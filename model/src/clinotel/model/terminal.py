"""Stored text as a terminal should show it: what a tenant's spans carry (a service name, a
change's version, an alert label) is data, never a command to the operator's terminal.

A service name with `ESC[2J` cleared the screen of whoever listed the changes, OSC sequences set
their window title or clipboard, and a CR/LF forged a whole line of the listing (2026-12-07
review). `printable` writes every control, format and separator character, and the fillers that
show as nothing, as an escape.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["printable"]

_ASCII_CONTROL: Final = re.compile("[\x00-\x1f\x7f]")
_HIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})
"""Controls, format characters (bidi marks and isolates, zero-width, tags), lone surrogates,
unassigned code points (a terminal may draw them as nothing) and the line and paragraph
separators."""
_MARKS: Final = frozenset({"Mn", "Mc", "Me"})
"""Combining marks: escaped at the start of a text, where they would draw over what precedes it."""
_FILLERS: Final = frozenset(
    (0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x2800, 0x3164, 0xFFA0,
     0x16FE4, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0))
)  # fmt: skip
"""Characters that are letters or marks to Unicode but show as nothing (Hangul fillers, the
combining grapheme joiner, variation selectors)."""


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _shown(ch: str, keep: str) -> str:
    if ch in keep:
        return ch
    if ch.isascii():
        return _escape(ch) if _ASCII_CONTROL.match(ch) else ch
    if unicodedata.category(ch) in _HIDDEN_CATEGORIES or ord(ch) in _FILLERS:
        return _escape(ch)
    return ch


def printable(text: str, keep: str = "") -> str:
    """`text` with each control, format, separator and invisible filler character written as
    `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN`, except those in `keep` (a multi-line output keeps "\\n")."""
    if text.isascii() and not _ASCII_CONTROL.search(text):
        return text
    shown = "".join(_shown(ch, keep) for ch in text)
    if shown and unicodedata.category(shown[0]) in _MARKS:
        shown = _escape(shown[0]) + shown[1:]
    return shown
