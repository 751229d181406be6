"""Whole numbers written in ASCII: what a port, a setting or a count in text may be.

`str.isdigit` also takes superscripts (`²`, which `int()` refuses) and other scripts' digits
(`١٢`, which `int()` reads as 12): a check by it lets such text on, to a traceback or to a number
nobody typed. Every "is this a plain number" check in clinotel asks `ascii_digits`.
"""

from __future__ import annotations

__all__ = ["ascii_digits"]


def ascii_digits(text: str) -> bool:
    """True when `text` is one or more of the characters 0 to 9, and nothing else."""
    return text.isascii() and text.isdigit()
