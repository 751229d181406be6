"""A panel's SQL expanded as Grafana and the ClickHouse plugin expand it, so `dashboards check`
and the HTML report run exactly the SQL Grafana would send.

Three stages, in Grafana's order (ported from the sources, not copied):

1. the plugin's frontend `$__conditionalAll(condition, $var)`: grafana/clickhouse-datasource
   v4.20.0 `src/data/CHDatasource.ts` (`applyConditionalAll`, `getMacroArgs`): the last call
   first, arguments split at top-level commas without regard to quotes, the variable found by
   `(?<=\\$\\{)[\\w\\d]+(?=\\})|(?<=\\$)[\\w\\d]+` (so `${v:format}` is never detected), `1=1` when
   its value is `''` or `$__all`, the call replaced by JavaScript's `String.replace`;
2. Grafana's template interpolation: grafana/scenes v6.28.6 `sceneInterpolator` (its
   `VARIABLE_REGEX`: `$var`, `[[var:fmt]]`, `${var.path:fmt}`) and `formatRegistry`, with the
   plugin's own formatter for a variable written without a format (`CHDatasource.format`: a
   multi-value as `'a','b'`, unescaped; a single value raw), the panel's `$__interval` and
   `$__interval_ms` (scoped variables, see `interval.py`) and `$__from` / `$__to`;
3. the plugin's backend macros: `pkg/macros/macros.go` at v4.20.0 over grafana/macropro v1.0.1
   (`Interpolate`): `--` and `/* */` comments blanked first (strings honoured, with backslash
   escapes) when the SQL names a `$__` macro at all, then one forward scan, innermost macros
   first, handler output never rescanned; unknown `$__names` are left as they are.

Where the checker cannot produce what Grafana would send, it refuses (MacroError) rather than
run something else: a variable with All selected outside `$__conditionalAll` (Grafana puts every
option of the variable there, which only its query knows), an unknown variable, macro or format,
arguments the plugin refuses, and anything left unexpanded outside comments and strings.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from clinotel.model.digits import ascii_digits

__all__ = ["ALL", "MacroError", "TimeRange", "expand", "strip_comments"]

ALL: Final = "$__all"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# grafana/scenes VARIABLE_REGEX, with JavaScript's ASCII \w
_W: Final = "[A-Za-z0-9_]"
_VARIABLE: Final = re.compile(
    rf"\$({_W}+)|\[\[({_W}+?)(?::({_W}+))?\]\]|\$\{{({_W}+)(?:\.([^:^}}]+))?(?::([^}}]+))?\}}"
)
_CONDITIONAL_VAR: Final = re.compile(rf"(?<=\$\{{){_W}+(?=\}})|(?<=\$){_W}+")
_ALL_MARK: Final = "\x00"
_NAME_CHAR: Final = re.compile(_W)
_LEFT: Final = re.compile(rf"\$(?:{_W}+|\{{)|\[\[{_W}+?(?::{_W}+)?\]\]")


class MacroError(ValueError):
    """SQL the plugin would refuse, or that the checker cannot expand as Grafana would."""


Values = str | Sequence[str]


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range, the panel's interval and the template variables."""

    start: datetime
    end: datetime
    interval_ms: int | None = None
    """The panel's interval (`interval.panel_interval`); None for a query that is not a panel's
    (a variable's, an alert rule's), which has no `$__interval`."""
    variables: Mapping[str, Values] | None = None
    """Each variable's selection: a list for a multi-value variable, a string for a single value,
    `$__all` (or a list holding it) for All. None: every variable the SQL names exists, with All
    selected; with a mapping, a name it lacks is an unknown variable."""

    @property
    def from_ms(self) -> int:
        return (self.start.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)

    @property
    def to_ms(self) -> int:
        return (self.end.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)

    @property
    def from_s(self) -> int:
        return self.from_ms // 1000

    @property
    def to_s(self) -> int:
        return self.to_ms // 1000


def expand(sql: str, tr: TimeRange) -> str:
    """`sql` as the plugin's backend sends it to ClickHouse for the panel range `tr`."""
    sql = _conditional_all(sql, tr)
    sql = _interpolate(sql, tr)
    out = _backend(sql, tr)
    _refuse_leftovers(out)
    return out.replace(_ALL_MARK, "")


# 1. the frontend's $__conditionalAll


def _selection(tr: TimeRange, name: str) -> Values | None:
    """A variable's value; None when no such variable exists."""
    if tr.variables is None:
        return [ALL]
    return tr.variables.get(name)


def _is_all(value: Values) -> bool:
    return value == ALL or (not isinstance(value, str) and ALL in value)


def _macro_args(sql: str, open_at: int) -> list[str]:
    """CHDatasource.getMacroArgs: the arguments of the call whose `(` is at `open_at`, split at
    depth-one commas, quotes ignored; [] when the parenthesis never closes."""
    args: list[str] = []
    depth, last = 0, open_at + 1
    for m in re.finditer(r"[(),]", sql[open_at:]):
        at = open_at + m.start()
        if m.group() == "(":
            depth += 1
        elif m.group() == ")":
            depth -= 1
        if m.group() == "," and depth == 1:
            args.append(sql[last:at])
            last = at + 1
        if depth == 0:
            args.append(sql[last:at])
            return args
    return []


def _js_replace_first(text: str, pattern: str, replacement: str) -> str:
    """JavaScript's `text.replace(pattern, replacement)` for a string pattern: the first match,
    with `$$`, `$&`, `` $` `` and `$'` in the replacement."""
    at = text.find(pattern)
    if at < 0:
        return text
    special = {"$": "$", "&": pattern, "`": text[:at], "'": text[at + len(pattern) :]}
    out, i = [], 0
    while i < len(replacement):
        c = replacement[i]
        if c == "$" and i + 1 < len(replacement) and replacement[i + 1] in special:
            out.append(special[replacement[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    return text[:at] + "".join(out) + text[at + len(pattern) :]


def _conditional_all(sql: str, tr: TimeRange) -> str:
    macro = "$__conditionalAll("
    at = sql.rfind(macro)
    for _ in range(10_000):
        if at < 0:
            return sql
        params = _macro_args(sql, at + len(macro) - 1)
        if len(params) != 2:
            raise MacroError(
                "$__conditionalAll needs a condition and a variable, and closing parentheses: the plugin "
                "leaves this one (and every one before it) unexpanded"
            )
        phrase = params[0]
        found = _CONDITIONAL_VAR.search(params[1].strip())
        if found:
            value = _selection(tr, found.group(0))
            if value is not None:
                text = value if isinstance(value, str) else ",".join(value)  # JavaScript's toString()
                if text in ("", ALL):
                    phrase = "1=1"
        sql = _js_replace_first(sql, f"{macro}{params[0]},{params[1]})", phrase)
        at = sql.rfind(macro)
    raise MacroError("$__conditionalAll does not terminate")


# 2. template interpolation


def _plugin_format(value: Values) -> str:
    """CHDatasource.format, Grafana's formatter for a variable written without one."""
    if isinstance(value, str):
        return value
    return "'" + "','".join(value) + "'"


def _quoted(value: Values, quote: str, escape: Callable[[str], str]) -> str:
    items = [value] if isinstance(value, str) else list(value)
    return ",".join(f"{quote}{escape(v)}{quote}" for v in items)


def _js_string(value: Values) -> str:
    """JavaScript's String(value): an array joined with commas."""
    return value if isinstance(value, str) else ",".join(value)


_FORMATS: Final[dict[str, Callable[[Values, list[str]], str]]] = {
    "singlequote": lambda v, _: _quoted(v, "'", lambda s: s.replace("'", "\\'")),
    "sqlstring": lambda v, _: _quoted(v, "'", lambda s: s.replace("'", "''").replace('"', '\\"')),
    "doublequote": lambda v, _: _quoted(v, '"', lambda s: s.replace('"', '\\"')),
    "csv": lambda v, _: _js_string(v),
    "raw": lambda v, _: _js_string(v),
    "pipe": lambda v, _: v if isinstance(v, str) else "|".join(v),
    "join": lambda v, a: v if isinstance(v, str) else (a[0] if a else ",").join(v),
    "json": lambda v, _: v if isinstance(v, str) else json.dumps(list(v), separators=(",", ":")),
    "glob": lambda v, _: "{" + ",".join(v) + "}" if not isinstance(v, str) and len(v) > 1 else _js_string(v),
    "text": lambda v, _: v if isinstance(v, str) else " + ".join(v),
    "distributed": lambda v, _: _js_string(v),  # a list is handled in _format: it needs the name
}


def _format(name: str, value: Values, fmt: str | None) -> str:
    if fmt is None:
        return _plugin_format(value)
    fid, *args = fmt.split(":")
    if fid == "distributed" and not isinstance(value, str):
        return ",".join(v if i == 0 else f"{name}={v}" for i, v in enumerate(value))
    if fid not in _FORMATS:
        raise MacroError(f"${{{name}:{fmt}}}: format {fid!r} is not one the checker reproduces "
                         f"(it knows {', '.join(sorted(_FORMATS))})")  # fmt: skip
    return _FORMATS[fid](value, args)


def _time_macro(name: str, ms: int, fmt: str | None) -> str:
    """`$__from` / `$__to`: epoch milliseconds, or with `:date`, `:date:iso|seconds|ms`."""
    if fmt is None or fmt == "date:ms":
        return str(ms)
    if fmt == "date:seconds":
        return str(math.floor(ms / 1000 + 0.5))  # Math.round
    if fmt in ("date", "date:iso"):
        return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    raise MacroError(f"${{{name}:{fmt}}}: only the date:iso, date:seconds and date:ms formats are reproduced")


def _interpolate(sql: str, tr: TimeRange) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6)
        path = m.group(5)
        if name in ("__interval", "__interval_ms"):
            if tr.interval_ms is None:
                raise MacroError(f"${name} is a panel's interval; this query is not a panel's")
            if name == "__interval_ms":
                return _format(name, str(tr.interval_ms), fmt)
            from clinotel.dashboards.interval import seconds_to_hms

            return _format(name, seconds_to_hms(tr.interval_ms / 1000), fmt)
        if name in ("__from", "__to"):
            return _time_macro(name, tr.from_ms if name == "__from" else tr.to_ms, fmt)
        value = None if name.startswith("__") else _selection(tr, name)
        if value is None:
            return m.group(0)  # not a variable: Grafana leaves it (a backend macro, or a mistake)
        if _is_all(value):
            return f"{_ALL_MARK}{name}{_ALL_MARK}"
        if path is not None and not isinstance(value, str) and ascii_digits(path) and int(path) < len(value):
            value = value[int(path)]
        return _format(name, value, fmt)

    return _VARIABLE.sub(one, sql)


# 3. the backend macros (macropro)


def _scan_string(sql: str, at: int, backslash: bool) -> int:
    """The index after the quoted literal opening at `at` (doubled quotes, and backslash escapes
    when asked); the end of the text when it never closes."""
    quote, j = sql[at], at + 1
    while j < len(sql):
        if backslash and sql[j] == "\\" and j + 1 < len(sql):
            j += 2
            continue
        if sql[j] == quote:
            if j + 1 < len(sql) and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return j


def _line_end(sql: str, at: int) -> int:
    j = at
    while j < len(sql) and sql[j] not in "\n\r":
        j += 1
    return j


def strip_comments(sql: str, strings: bool = False) -> str:
    """macropro's StripComments with the plugin's styles (`--`, `/* */`, backslash escapes in
    strings): each comment blanked to spaces of its length. With `strings`, string literals are
    blanked too (for finding what was left unexpanded)."""
    out, i = [], 0
    while i < len(sql):
        c = sql[i]
        if c in "'\"":
            j = _scan_string(sql, i, backslash=True)
            out.append(" " * (j - i) if strings else sql[i:j])
        elif sql.startswith("--", i):
            j = _line_end(sql, i)
            out.append(" " * (j - i))
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            j = len(sql) if close < 0 else close + 2
            out.append(" " * (j - i))
        else:
            j = i + 1
            out.append(c)
        i = j
    return "".join(out)


def _closing_paren(sql: str, open_at: int) -> int:
    depth, i = 0, open_at
    while i < len(sql):
        c = sql[i]
        if c in "'\"":
            i = _scan_string(sql, i, backslash=False)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _split_args(raw: str) -> list[str]:
    raw = raw.strip()
    if not raw:
        return []
    args, depth, start, i = [], 0, 0, 0
    while i < len(raw):
        c = raw[i]
        if c in "'\"":
            i = _scan_string(raw, i, backslash=False)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                raise MacroError(f"unexpected ')' at position {i}")
            depth -= 1
        elif c == "," and depth == 0:
            args.append(raw[start:i].strip())
            start = i + 1
        i += 1
    if depth:
        raise MacroError("unbalanced parentheses in arguments")
    args.append(raw[start:].strip())
    return args


_GO_UNITS: Final = {"ns": 1, "us": 1e3, "µs": 1e3, "μs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}
_GO_PART: Final = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")


def _go_duration_ns(text: str) -> float:
    """Go's time.ParseDuration, in nanoseconds (`5m`, `1h30m`, `1.5h`, `300ms`; no `d`)."""
    s, sign = text, 1.0
    if s[:1] in "+-":
        sign, s = (-1.0 if s[0] == "-" else 1.0), s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise MacroError(f"invalid duration {text!r}")
    total, at = 0.0, 0
    while at < len(s):
        m = _GO_PART.match(s, at)
        if not m or not (m.group(1) or m.group(2)):
            raise MacroError(f"invalid duration {text!r} (Go durations: 300ms, 5m, 1h30m; no d)")
        whole = int(m.group(1) or "0")
        frac = float("0." + m.group(2)) if m.group(2) else 0.0
        total += (whole + frac) * _GO_UNITS[m.group(3)]
        at = m.end()
    return sign * total


def _go_round(x: float) -> int:
    """Go's math.Round: halves away from zero."""
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def _arity(name: str, want: int, args: list[str]) -> None:
    if len(args) != want:
        raise MacroError(f"$__{name} expected {want} argument(s), received {len(args)}")


def _macros(tr: TimeRange) -> dict[str, Callable[[list[str]], str]]:
    """ClickHouseMacros: macropro's defaults under the plugin's own."""
    f, t, fms, tms = tr.from_s, tr.to_s, tr.from_ms, tr.to_ms
    interval_ms = tr.interval_ms or 0
    seconds = int(max(interval_ms / 1000, 1))
    bucket_ms = max(interval_ms, 1)

    def ms(epoch_ms: int) -> str:
        return f"fromUnixTimestamp64Milli({epoch_ms})"

    def day(ms: int) -> str:
        """The date of an instant in UTC (the plugin process's zone in Grafana's image)."""
        return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%d")

    def one(name: str, render: Callable[[str], str]) -> Callable[[list[str]], str]:
        def call(args: list[str]) -> str:
            _arity(name, 1, args)
            return render(args[0])

        return call

    def date_time_filter(args: list[str]) -> str:
        _arity("dateTimeFilter", 2, args)
        d, c = args
        return (f"({d} >= toDate('{day(fms)}') AND {d} <= toDate('{day(tms)}')) AND "
                f"({c} >= toDateTime({f}) AND {c} <= toDateTime({t}))")  # fmt: skip

    def time_group(args: list[str]) -> str:
        _arity("timeGroup", 2, args)
        period = args[1].strip().strip("'\"")
        secs = _go_round(_go_duration_ns(period) / 1e9)
        if secs <= 0:
            raise MacroError(f"$__timeGroup: interval must be positive, got {period!r}")
        return f"toStartOfInterval(toDateTime({args[0].strip()}), INTERVAL {secs} second)"

    def outside_panel(name: str) -> Callable[[list[str]], str]:
        def call(args: list[str]) -> str:
            raise MacroError(f"${name} reached the backend: it is a panel's interval; this query is not a panel's")

        return call

    def no_context(name: str) -> Callable[[list[str]], str]:
        def call(args: list[str]) -> str:
            raise MacroError(f"$__{name}: no {name} name in query context (the SQL editor sets none)")

        return call

    return {
        "timeFilter": one("timeFilter", lambda c: f"{c} >= toDateTime({f}) AND {c} <= toDateTime({t})"),
        "timeFilter_ms": one("timeFilter_ms", lambda c: f"{c} >= {ms(fms)} AND {c} <= {ms(tms)}"),
        "dateFilter": one("dateFilter", lambda c: f"{c} >= toDate('{day(fms)}') AND {c} <= toDate('{day(tms)}')"),
        "dateTimeFilter": date_time_filter,
        "dt": date_time_filter,
        "timeFrom": one("timeFrom", lambda c: f"{c} >= toDateTime({f})"),
        "timeTo": one("timeTo", lambda c: f"{c} <= toDateTime({t})"),
        "timeGroup": time_group,
        "fromTime": lambda _: f"toDateTime({f})",
        "toTime": lambda _: f"toDateTime({t})",
        "fromTime_ms": lambda _: ms(fms),
        "toTime_ms": lambda _: ms(tms),
        "timeInterval": one("timeInterval", lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {seconds} second)"),
        "timeInterval_ms": one(
            "timeInterval_ms", lambda c: f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {bucket_ms} millisecond)"
        ),
        "interval_s": lambda _: str(seconds),
        "interval": outside_panel("__interval"),
        "interval_ms": outside_panel("__interval_ms"),
        "table": no_context("table"),
        "column": no_context("column"),
    }


def _expand_macros(work: str, macros: Mapping[str, Callable[[list[str]], str]], depth: int = 0) -> str:
    """macropro's expand: one forward scan; a known macro's arguments expanded first."""
    if depth > 128:
        raise MacroError("macro nesting exceeds 128 levels")
    out, i = [], 0
    while i < len(work):
        at = work.find("$__", i)
        if at < 0:
            out.append(work[i:])
            break
        out.append(work[i:at])
        name_end = at + 3
        while name_end < len(work) and _NAME_CHAR.fullmatch(work[name_end]):
            name_end += 1
        name = work[at + 3 : name_end]
        if not name or name not in macros:
            out.append(work[at:name_end])
            i = name_end
            continue
        raw, after = "", name_end
        if after < len(work) and work[after] == "(":
            close = _closing_paren(work, after)
            if close >= 0:
                raw, after = work[after + 1 : close], close + 1
        args = [_expand_macros(a, macros, depth + 1) if "$__" in a else a for a in _split_args(raw)]
        out.append(macros[name](args))
        i = after
    return "".join(out)


def _backend(sql: str, tr: TimeRange) -> str:
    if "$__" not in sql:
        return sql
    work = strip_comments(sql)
    if "$__" not in work:
        return work
    return _expand_macros(work, _macros(tr))


def _refuse_leftovers(sql: str) -> None:
    visible = strip_comments(sql, strings=True)
    if _ALL_MARK in visible:
        name = visible.split(_ALL_MARK)[1]
        raise MacroError(
            f"${name} has All selected outside $__conditionalAll: Grafana substitutes every option of the "
            f"variable, which only its query knows; wrap the condition in $__conditionalAll(…, ${name})"
        )
    left = _LEFT.search(visible)
    if left:
        token = re.match(r"\$\{?[A-Za-z0-9_]*|\[\[[A-Za-z0-9_]*", visible[left.start() :])
        text = token.group(0) if token else left.group(0)
        if text.startswith(("$__", "${__")):
            raise MacroError(f"unknown macro {text}: the plugin leaves it in the SQL and ClickHouse refuses it")
        raise MacroError(f"unknown variable {text}: Grafana leaves it in the SQL and ClickHouse refuses it")
