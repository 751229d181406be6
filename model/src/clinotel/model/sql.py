"""ClickHouse quoting: the one place a name or a value becomes SQL text; and the instants a figure
holds (`hours_held`)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["held_since", "hours_held", "identifier", "literal", "string_array"]


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


def hours_held(column: str) -> str:
    """SQL: the DateTime64 instant `column` is within the years a DateTime holds (1970 to 2105),
    which a rollup's hour can be. Past them `toDateTime` wraps (every 2^32 seconds: a span another
    pipeline stored at 2162 would count in an hour of 2026), so every figure leaves such rows out:
    the rollups, and the rework, effort and feedback joined to a workflow."""
    return f"{column} >= toDateTime64('1970-01-01', 9, 'UTC') AND {column} < toDateTime64('2106-01-01', 9, 'UTC')"


def held_since(column: str, since: str | None) -> str:
    """SQL: the instant `column` is within `hours_held` and at or after SQL instant `since` (when
    given): the rows a figure reads from `since` on."""
    return hours_held(column) + ("" if since is None else f" AND {column} >= {since}")
