"""Stored text as a terminal should show it: what a tenant's spans carry (a service name, a
change's version, an alert label) is data, never a command to the operator's terminal.

A service name with `ESC[2J` cleared the screen of whoever listed the changes, OSC sequences set
their window title or clipboard, and a CR/LF forged a whole line of the listing (2026-12-07
review). `printable` writes every control and invisible formatting character as an escape.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["printable"]

_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)
"""C0 and C1 controls, DEL, and the invisible or direction-changing format characters."""


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, keep: str = "") -> str:
    """`text` with each control and invisible formatting character written as `\\xNN` or
    `\\uNNNN`, except those in `keep` (a multi-line output keeps "\\n")."""
    if keep:
        return "".join(
            part if part in keep else _UNSAFE.sub(_escaped, part) for part in re.split(f"([{re.escape(keep)}])", text)
        )
    return _UNSAFE.sub(_escaped, text)
