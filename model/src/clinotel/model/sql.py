"""ClickHouse quoting: the one place a name or a value becomes SQL text."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["identifier", "literal", "string_array"]


def literal(text: str) -> str:
    """A ClickHouse string literal: backslashes and quotes escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def identifier(name: str) -> str:
    """A quoted ClickHouse identifier (for names such as `Events.Timestamp`): backslashes and
    backquotes escaped, as ClickHouse reads both inside backquotes."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def string_array(values: Iterable[str]) -> str:
    """A ClickHouse array literal of strings, sorted."""
    return "[" + ", ".join(literal(v) for v in sorted(values)) + "]"
