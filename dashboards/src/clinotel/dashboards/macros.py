"""The ClickHouse plugin's query expansion, done as the plugin does it, so `dashboards check`
and the HTML report run exactly the SQL Grafana would send.

Order (the plugin's frontend, then its backend): `$__conditionalAll`, template variables, then
the backend macros. Expansions are those of plugin 4.20 (`$__timeFilter(c)` →
`c >= toDateTime(<from>) AND c <= toDateTime(<to>)`, …); times are Unix seconds or milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

__all__ = ["ALL", "MacroError", "TimeRange", "expand"]

ALL: Final = "$__all"
_VAR: Final = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_MACRO_NAME: Final = re.compile(r"\$__(\w+)")


class MacroError(ValueError):
    """A macro the plugin would also refuse (unknown, or malformed arguments)."""


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range and the panel's interval."""

    start: datetime
    end: datetime
    interval_s: int = 60
    variables: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Template variable values; missing or `$__all` means All."""

    @property
    def from_s(self) -> int:
        return int(self.start.astimezone(UTC).timestamp())

    @property
    def to_s(self) -> int:
        return int(self.end.astimezone(UTC).timestamp())


def _args(sql: str, open_at: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose `(` is at `open_at`, and the index after `)`."""
    depth, start, args, i = 0, open_at + 1, [], open_at
    quote: str | None = None
    while i < len(sql):
        c = sql[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"`":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i].strip())
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(sql[start:i].strip())
            start = i + 1
        i += 1
    raise MacroError(f"unclosed parenthesis after {sql[max(0, open_at - 20) : open_at]!r}")


def _calls(sql: str, name: str, render: object) -> str:
    """Replace every `$__name(args)` in `sql` by `render(args)`."""
    token = f"$__{name}("
    out, i = [], 0
    while (at := sql.find(token, i)) >= 0:
        args, end = _args(sql, at + len(token) - 1)
        out.append(sql[i:at])
        out.append(render(args))  # type: ignore[operator]
        i = end
    out.append(sql[i:])
    return "".join(out)


def _values(tr: TimeRange, name: str) -> list[str] | None:
    """A variable's values, or None for All."""
    values = list(tr.variables.get(name, [ALL]))
    return None if not values or ALL in values else values


def _format(values: list[str] | None, fmt: str | None, name: str) -> str:
    if values is None:
        values = [ALL]
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt is not None:
        raise MacroError(f"variable format {fmt!r} of ${name} is not used by clinotel's dashboards")
    if len(values) == 1:
        return values[0]
    return ",".join(f"'{v}'" for v in values)


def _interval(duration: str) -> int:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", duration.strip())
    if not match:
        raise MacroError(f"$__timeGroup needs a duration such as 5m, not {duration!r}")
    n, unit = int(match.group(1)), match.group(2)
    seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit] * n
    if seconds <= 0:
        raise MacroError("$__timeGroup needs a positive duration")
    return max(1, int(seconds))


def expand(sql: str, tr: TimeRange) -> str:
    """`sql` with every variable and macro expanded as the plugin expands it."""

    def conditional_all(args: list[str]) -> str:
        if len(args) != 2:
            raise MacroError("$__conditionalAll takes a condition and a variable")
        name = args[1].strip().lstrip("$").strip("{}")
        return "1=1" if _values(tr, name) is None else args[0]

    sql = _calls(sql, "conditionalAll", conditional_all)

    def variable(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name.startswith("__"):
            return m.group(0)  # a macro: the backend's
        return _format(_values(tr, name), m.group(2), name)

    sql = _VAR.sub(variable, sql)
    f, t, iv = tr.from_s, tr.to_s, max(1, tr.interval_s)
    fms, tms = f * 1000, t * 1000
    one = {
        "timeFilter": lambda c: f"{c} >= toDateTime({f}) AND {c} <= toDateTime({t})",
        "timeFilter_ms": lambda c: f"{c} >= fromUnixTimestamp64Milli({fms}) AND {c} <= fromUnixTimestamp64Milli({tms})",
        "dateFilter": lambda c: f"{c} >= toDate('{tr.start:%Y-%m-%d}') AND {c} <= toDate('{tr.end:%Y-%m-%d}')",
        "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {iv} second)",
        "timeInterval_ms": lambda c: f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {iv * 1000} millisecond)",
        "timeFrom": lambda c: f"{c} >= toDateTime({f})",
        "timeTo": lambda c: f"{c} <= toDateTime({t})",
    }
    for name, render in one.items():
        sql = _calls(sql, name, lambda a, r=render, n=name: r(_single(a, n)))
    sql = _calls(
        sql,
        "timeGroup",
        lambda a: (
            f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {_interval(a[1])} second)"
            if len(a) == 2
            else _raise("$__timeGroup takes a column and a duration")
        ),
    )
    plain = {
        "fromTime_ms": f"fromUnixTimestamp64Milli({fms})",
        "toTime_ms": f"fromUnixTimestamp64Milli({tms})",
        "fromTime": f"toDateTime({f})",
        "toTime": f"toDateTime({t})",
        "interval_s": str(iv),
    }
    for name, text in plain.items():
        sql = sql.replace(f"$__{name}", text)
    left = _MACRO_NAME.search(sql)
    if left:
        raise MacroError(f"unknown macro $__{left.group(1)}")
    return sql


def _single(args: list[str], name: str) -> str:
    if len(args) != 1 or not args[0]:
        raise MacroError(f"$__{name} takes one column")
    return args[0]


def _raise(message: str) -> str:
    raise MacroError(message)
