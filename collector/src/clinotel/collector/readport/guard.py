"""Which reader SQL the read port runs: decided on ClickHouse's own parse, re-rendered from it.

The reader's text never reaches the engine as SQL. It is passed as data (a hex literal, which no
quoting can escape) to `parseQueryToJSON`, which parses exactly one statement and executes
nothing. The JSON tree is checked here against allowlists (`read_allowlist`): node types and their
keys, functions, table functions, tables, `system` tables and their columns, output formats. What
runs is `formatQueryFromJSON` of the checked tree: ClickHouse's canonical text of what was
checked, never the reader's own text. Three statements the JSON form does not carry (DESCRIBE,
EXISTS, SHOW CREATE TABLE) are recognised in `formatQuery`'s canonical text by their exact shape
and re-rendered here from the table name.

Errors carry the codes and names a ClickHouse server gives for the same refusal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from clinotel.collector.readport import allowlist as allow
from clinotel.model.sql import identifier

__all__ = [
    "ACCESS_DENIED",
    "READONLY",
    "SYNTAX_ERROR",
    "Catalog",
    "Checked",
    "Guard",
    "QueryRefusedError",
    "ReadPolicy",
    "check_parameters",
]

READONLY: Final = (164, "READONLY")
ACCESS_DENIED: Final = (497, "ACCESS_DENIED")
SYNTAX_ERROR: Final = (62, "SYNTAX_ERROR")
UNKNOWN_FUNCTION: Final = (46, "UNKNOWN_FUNCTION")
UNKNOWN_FORMAT: Final = (73, "UNKNOWN_FORMAT")
NOT_SUPPORTED: Final = (48, "NOT_IMPLEMENTED")

_IN_FUNCTIONS: Final = frozenset(
    f"{name}{ignore}"
    for name in ("in", "notIn", "globalIn", "globalNotIn", "nullIn", "notNullIn", "globalNullIn", "globalNotNullIn")
    for ignore in ("", "IgnoreSet")
)
"""The IN functions, and their `…IgnoreSet` forms (the engine resolves the table for them too)."""
_NAME: Final = r"[A-Za-z_][A-Za-z0-9_]*"
_TABLE_STATEMENT: Final = re.compile(
    rf"(?P<verb>DESCRIBE TABLE|EXISTS TABLE|SHOW CREATE TABLE) (?:(?P<db>{_NAME})\.)?(?P<table>{_NAME})"
    rf"(?:\nFORMAT (?P<format>{_NAME}))?\n?"
)
"""The canonical text (`formatQuery`) of the three table statements the JSON form lacks."""
_BAD_ARGUMENTS: Final = 36
_UNDERSCORE: Final = "{name}: names starting with _ are ClickHouse's virtual columns; not usable by readers"
_AGGREGATE_BY_NAME: Final = frozenset({"arrayReduce", "arrayReduceInRanges", "initializeAggregation"})
"""Functions that run the aggregate function named by their first argument."""
_TYPE_ARGUMENT: Final = {
    "CAST": 1, "_CAST": 1, "accurateCast": 1, "accurateCastOrNull": 1, "accurateCastOrDefault": 1, "reinterpret": 1,
    "JSONExtract": -1, "JSONExtractCaseInsensitive": -1, "JSONExtractKeysAndValues": -1,
    "JSONExtractKeysAndValuesCaseInsensitive": -1, "defaultValueOfTypeName": 0, "dynamicElement": 1,
    "variantElement": 1, "getTypeSerializationStreams": 0,
}  # fmt: skip
"""Functions that take a type name, by the position of that argument (-1: the last): it must be a
string literal, so that the check of literals below sees it (a query parameter there would become
a type after the check)."""
_AGGREGATE_TYPE: Final = re.compile(r"aggregatefunction", re.IGNORECASE)
_WORD: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPE: Final = re.compile(r"\\(?:x([0-9A-Fa-f]{2})|(.))", re.DOTALL)
_ESCAPED: Final = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "0": "\0", "a": "\a", "v": "\v", "e": "\x1b"}
TOO_DEEP: Final = (167, "TOO_DEEP_AST")
_CONSTANT_FUNCTIONS: Final = {"displayName": "clinotel"}
"""Functions readers may call that would reveal the host: answered with a constant instead."""
_IN_SCOPE: Final = re.compile(r":? In scope SELECT (?:parseQueryToJSON|formatQuery)\(unhex\('[0-9a-f]*'\)\)\.?")


class QueryRefusedError(Exception):
    """A query the reader will not run, with the ClickHouse error code and name a client expects."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message


Scalar = Callable[[str], str]
"""Runs one SELECT of ours on the engine and returns its single value as text; raises
QueryRefusedError with the engine's code when the engine refuses."""


@dataclass(frozen=True)
class Catalog:
    """What the engine has, read once at start: function names and aliases, and combinators."""

    canonical: dict[str, str]
    """Function name (aliases included) -> the canonical name it stands for."""
    insensitive: dict[str, str]
    """Lower-cased name of a case-insensitive function -> its canonical name."""
    aggregates: frozenset[str]
    combinators: tuple[str, ...]

    def resolve(self, name: str) -> str | None:
        """The canonical name of `name`, with aggregate combinators stripped, or None if unknown."""
        found = self.canonical.get(name) or self.insensitive.get(name.lower())
        if found is not None:
            return found
        for suffix in self.combinators:
            if name.endswith(suffix) and len(name) > len(suffix):
                base = self.resolve(name[: -len(suffix)])
                if base is not None and base in self.aggregates:
                    return base
        return None


@dataclass(frozen=True)
class ReadPolicy:
    """What readers may name: the tenant tables of the store's database, and the allowlists."""

    database: str
    readable: frozenset[str]
    catalog: Catalog
    system_columns: dict[str, frozenset[str]]
    """Every column of each restricted `system` table (to tell a column from an alias)."""
    exists: Callable[[str, str], bool]
    """Whether a (database, table) pair is a stored table: a name that is none is UNKNOWN_TABLE,
    as a server answers, rather than ACCESS_DENIED."""
    functions: frozenset[str] = field(default_factory=allow.functions)


@dataclass(frozen=True)
class Checked:
    """A read the guard allows: the text to run (canonical, ours), its own FORMAT, if any, and
    the settings of its SETTINGS clauses, taken out of the text: the reader applies them to the
    session after checking them like URL settings (a read-only session refuses them in the text)."""

    sql: str
    format: str | None
    settings: dict[str, str] = field(default_factory=dict)


def _engine_error(e: QueryRefusedError) -> QueryRefusedError:
    """The engine's refusal of our parse call, told as a refusal of the reader's query."""
    return QueryRefusedError(e.code, e.name, _IN_SCOPE.sub("", e.message).strip().rstrip(":").rstrip())


def _hex(text: str) -> str:
    return text.encode("utf-8").hex()


class Guard:
    """Checks and canonicalises reader SQL with the engine's parser (`scalar`) and a policy."""

    def __init__(self, scalar: Scalar, policy: ReadPolicy) -> None:
        self._scalar = scalar
        self.policy = policy

    def check(self, sql: str, current_db: str) -> Checked:
        """The canonical text to run for `sql`, or QueryRefusedError."""
        try:
            return self._check(sql, current_db)
        except RecursionError:
            raise QueryRefusedError(*TOO_DEEP, "the query is nested too deeply for clinotel's read port") from None

    def _check(self, sql: str, current_db: str) -> Checked:
        try:
            tree = json.loads(self._scalar(f"SELECT parseQueryToJSON(unhex('{_hex(sql)}'))"))
        except QueryRefusedError as e:
            if e.code == _BAD_ARGUMENTS:  # a statement the JSON form does not carry
                return self._table_statement(sql, current_db)
            raise _engine_error(e) from None
        if not isinstance(tree, dict):
            raise QueryRefusedError(*SYNTAX_ERROR, "the query did not parse to one statement")
        kind = tree.get("type")
        if kind not in ("SelectWithUnionQuery", "ShowTablesQuery"):
            raise QueryRefusedError(*READONLY, f"Cannot execute query in readonly mode: {kind} is not a read")
        fmt = _format(tree.pop("format_ast", None))
        settings = _take_settings(tree)
        _Walk(self.policy, current_db).statement(tree)
        try:
            text = self._scalar(f"SELECT formatQueryFromJSON(unhex('{_hex(json.dumps(tree))}'))")
        except QueryRefusedError as e:
            raise _engine_error(e) from None
        return Checked(text.strip(), fmt, settings)

    def _table_statement(self, sql: str, current_db: str) -> Checked:
        """DESCRIBE / EXISTS / SHOW CREATE TABLE of a plain table name, re-rendered by us."""
        try:
            canonical = self._scalar(f"SELECT formatQuery(unhex('{_hex(sql)}'))")
        except QueryRefusedError as e:
            raise _engine_error(e) from None
        match = _TABLE_STATEMENT.fullmatch(canonical)
        if match is None:
            verb = " ".join(canonical.split()[:2]) or "this statement"
            raise QueryRefusedError(*READONLY, f"Cannot execute query in readonly mode: {verb} is not a read")
        database = match["db"] or current_db
        table = match["table"]
        if match["verb"] != "EXISTS TABLE":
            _Walk(self.policy, current_db).table(database, table)
        return Checked(f"{match['verb']} {identifier(database)}.{identifier(table)}", _format_name(match["format"]))


def _take_settings(tree: dict[str, Any]) -> dict[str, str]:
    """Remove every SETTINGS clause from the tree; their changes, as text (last one wins)."""
    changes: dict[str, str] = {}
    for node in list(_nodes(tree)):
        for key in ("settings", "settings_ast"):
            clause = node.get(key)
            if clause is None:
                continue
            if not isinstance(clause, dict) or clause.get("type") != "SetQuery" or set(clause) - {"type", "changes"}:
                raise QueryRefusedError(*SYNTAX_ERROR, "a SETTINGS clause holds name = value pairs")
            for change in clause.get("changes", []):
                name = str(change.get("name", ""))
                value = change.get("value", {})
                kind, raw = value.get("field_type"), value.get("value")
                if kind in ("UInt64", "Int64", "Float64", "String") and isinstance(raw, int | float | str):
                    changes[name] = str(raw)
                elif kind == "Bool" and isinstance(raw, bool):
                    changes[name] = "1" if raw else "0"
                else:
                    raise QueryRefusedError(*READONLY, f"Cannot modify '{name}' setting in readonly mode")
            del node[key]
    return changes


def _format(node: object) -> str | None:
    if node is None:
        return None
    if not isinstance(node, dict) or node.get("type") != "Identifier":
        raise QueryRefusedError(*SYNTAX_ERROR, "FORMAT takes the name of an output format")
    return _format_name(str(node.get("name", "")))


def _format_name(name: str | None) -> str | None:
    if name is None:
        return None
    if name not in allow.OUTPUT_FORMATS:
        raise QueryRefusedError(
            *UNKNOWN_FORMAT, f"The output format {name} is not served by clinotel's read port (no schema files)"
        )
    return name


def _parts(node: dict[str, Any]) -> list[str]:
    parts = node.get("name_parts")
    if isinstance(parts, list) and parts:
        return [str(p) for p in parts]
    return [str(node.get("name", ""))]


def _nodes(value: object) -> Iterator[dict[str, Any]]:
    """Every typed node under `value`, depth first."""
    if isinstance(value, dict):
        if "type" in value:
            yield value
        for child in value.values():
            yield from _nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child)


class _Walk:
    """One statement's check: every node, with the names it defines (CTEs, aliases) known first."""

    def __init__(self, policy: ReadPolicy, current_db: str) -> None:
        self.policy = policy
        self.current_db = current_db
        self.ctes: set[str] = set()
        self.aliases: set[str] = set()
        self.restricted: set[str] = set()

    def statement(self, tree: dict[str, Any]) -> None:
        nodes = list(_nodes(tree))
        for node in nodes:
            kind = node["type"]
            keys = allow.NODE_KEYS.get(kind)
            if keys is None:
                raise QueryRefusedError(*NOT_SUPPORTED, f"{kind} is not supported by clinotel's read port")
            extra = set(node) - keys
            if extra & {"out_file", "compression", "compression_level"}:
                raise QueryRefusedError(*READONLY, "Cannot execute query in readonly mode: INTO OUTFILE writes a file")
            if extra & {"settings", "settings_ast"} or kind == "SetQuery":
                raise QueryRefusedError(
                    *READONLY,
                    "Cannot modify settings in a query's SETTINGS clause in readonly mode: send them as "
                    "URL parameters (the allowed ones are listed in docs/security.md)",
                )
            if extra:
                raise QueryRefusedError(
                    *NOT_SUPPORTED, f"{kind} with {', '.join(sorted(extra))} is not supported by clinotel's read port"
                )
            if kind == "WithElement":
                self.ctes.add(str(node.get("name", "")))
            if isinstance(node.get("alias"), str):
                self.aliases.add(node["alias"])
                if node["alias"].startswith("_"):
                    raise QueryRefusedError(*ACCESS_DENIED, _UNDERSCORE.format(name=node["alias"]))
        for name in self.ctes:
            if self.policy.exists(self.current_db, name):
                raise QueryRefusedError(
                    *ACCESS_DENIED, f"the CTE {name} takes the name of a stored table of {self.current_db}: rename it"
                )
        if tree["type"] == "ShowTablesQuery":
            for flag in ("is_outfile_append", "is_outfile_truncate", "is_into_outfile_with_stdout"):
                if tree.get(flag):
                    raise QueryRefusedError(*READONLY, "Cannot execute query in readonly mode: INTO OUTFILE")
        table_functions = {id(node["table_function"]) for node in nodes if isinstance(node.get("table_function"), dict)}
        for node in nodes:
            if id(node) in table_functions:
                self._table_function(node)
            else:
                getattr(self, f"_{node['type']}", _nothing)(node)
        if self.restricted:
            self._restricted_columns(nodes)

    # -- per node type ---------------------------------------------------------------------------
    def _SelectWithUnionQuery(self, node: dict[str, Any]) -> None:  # noqa: N802
        if any(node.get(flag) for flag in ("is_outfile_append", "is_outfile_truncate", "is_into_outfile_with_stdout")):
            raise QueryRefusedError(*READONLY, "Cannot execute query in readonly mode: INTO OUTFILE writes a file")

    def _Function(self, node: dict[str, Any]) -> None:  # noqa: N802
        name = str(node.get("name", ""))
        if name == "lambda" and node.get("is_lambda_function"):
            return
        self.function(name)
        arguments = node.get("arguments", {}).get("children", [])
        canonical = self.policy.catalog.resolve(name)
        if canonical in _CONSTANT_FUNCTIONS:
            # clients ask for it when they connect (clickhouse-go); the host's name is not theirs to see
            alias = node.get("alias") or f"{name}()"
            node.clear()
            node.update({"type": "Literal", "value": {"field_type": "String", "value": _CONSTANT_FUNCTIONS[canonical]}})
            node["alias"] = alias
            return
        if canonical in _AGGREGATE_BY_NAME:
            first = _string_literal(arguments[0]) if arguments else None
            if first is None:
                raise QueryRefusedError(*ACCESS_DENIED, f"{name} takes the aggregate function's name as a literal")
            self.aggregate(first.split("(", 1)[0].strip())
        elif canonical in _TYPE_ARGUMENT and arguments:
            position = _TYPE_ARGUMENT[canonical]
            if (position < len(arguments) or position == -1) and _string_literal(arguments[position]) is None:
                raise QueryRefusedError(*ACCESS_DENIED, f"{name} takes its type as a literal")
        if name in _IN_FUNCTIONS or canonical in _IN_FUNCTIONS:
            arguments = node.get("arguments", {}).get("children", [])
            if len(arguments) == 2 and arguments[1].get("type") == "Identifier":
                raise QueryRefusedError(
                    *ACCESS_DENIED, f"`{name}` over a table name is not allowed for readers: use IN (SELECT …)"
                )

    def _table_function(self, node: dict[str, Any]) -> None:
        name = str(node.get("name", ""))
        if name not in allow.TABLE_FUNCTIONS:
            raise QueryRefusedError(*ACCESS_DENIED, f"the table function {name} is not allowed for readers")

    def _TableIdentifier(self, node: dict[str, Any]) -> None:  # noqa: N802
        if any(child for child in node.get("children", [])):
            raise QueryRefusedError(*ACCESS_DENIED, "a table name given as a query parameter is not allowed")
        parts = _parts(node)
        if len(parts) == 1 and parts[0] in self.ctes:
            return
        if len(parts) == 1:
            self.table(self.current_db, parts[0])
        elif len(parts) == 2:
            self.table(parts[0], parts[1])
        else:
            raise QueryRefusedError(*ACCESS_DENIED, f"{'.'.join(parts)} is not a table readers may name")

    def _Identifier(self, node: dict[str, Any]) -> None:  # noqa: N802
        for part in _parts(node):
            if part.startswith("_"):
                raise QueryRefusedError(*ACCESS_DENIED, _UNDERSCORE.format(name=part))

    def _Literal(self, node: dict[str, Any]) -> None:  # noqa: N802
        """A type string may name an aggregate function (`CAST(x, 'AggregateFunction(f, T)')`)."""
        text = _string_literal(node)
        if text is not None:
            _check_text(self.policy, text)

    def _QueryParameter(self, node: dict[str, Any]) -> None:  # noqa: N802
        param_type = str(node.get("param_type", ""))
        if param_type.strip() == "Identifier":
            raise QueryRefusedError(*ACCESS_DENIED, "Identifier query parameters are not allowed for readers")
        # the declared type is a type, as a literal type string is (`{x:AggregateFunction(f, T)}`)
        _check_text(self.policy, param_type)

    def _ShowTablesQuery(self, node: dict[str, Any]) -> None:  # noqa: N802
        pass  # its keys are allowlisted: SHOW TABLES and SHOW DATABASES only

    # -- names -------------------------------------------------------------------------------------
    def function(self, name: str) -> None:
        catalog = self.policy.catalog
        canonical = catalog.resolve(name)
        if canonical is None:
            raise QueryRefusedError(*UNKNOWN_FUNCTION, f"Unknown function {name}")
        if canonical not in self.policy.functions:
            raise QueryRefusedError(*ACCESS_DENIED, f"the function {name} is not allowed for readers")

    def aggregate(self, name: str) -> None:
        """An aggregate function named by a string: known, an aggregate, and allowed."""
        canonical = self.policy.catalog.resolve(name)
        if canonical is None:
            raise QueryRefusedError(*UNKNOWN_FUNCTION, f"Unknown aggregate function {name}")
        if canonical not in self.policy.catalog.aggregates or canonical not in self.policy.functions:
            raise QueryRefusedError(*ACCESS_DENIED, f"the aggregate function {name} is not allowed for readers")

    def table(self, database: str, table: str) -> None:
        if database == "system":
            if table in allow.SYSTEM_TABLES:
                return
            if table in allow.RESTRICTED_SYSTEM_COLUMNS:
                self.restricted.add(table)
                return
            raise QueryRefusedError(*ACCESS_DENIED, f"the system table {table} is not readable through clinotel")
        if database == self.policy.database and table in self.policy.readable:
            return
        if not self.policy.exists(database, table):
            raise QueryRefusedError(60, "UNKNOWN_TABLE", f"Table {database}.{table} does not exist")
        raise QueryRefusedError(
            *ACCESS_DENIED,
            f"{database}.{table} is not readable through clinotel: readers see "
            + ", ".join(f"{self.policy.database}.{t}" for t in sorted(self.policy.readable)),
        )

    def _restricted_columns(self, nodes: list[dict[str, Any]]) -> None:
        """A query over system.tables/columns/databases names only their allowed columns."""
        allowed: set[str] = set()
        every: set[str] = set()
        for table in self.restricted:
            allowed |= allow.RESTRICTED_SYSTEM_COLUMNS[table]
            every |= self.policy.system_columns.get(table, frozenset())
        qualifiers = {"system", *self.restricted, *self.aliases, *self.ctes}
        for node in nodes:
            kind = node["type"]
            if kind in ("Asterisk", "QualifiedAsterisk", "ColumnsRegexpMatcher", "ColumnsListMatcher",
                        "QualifiedColumnsRegexpMatcher", "QualifiedColumnsListMatcher"):  # fmt: skip
                raise QueryRefusedError(
                    *ACCESS_DENIED, f"name the columns of system.{sorted(self.restricted)[0]} (no * or COLUMNS)"
                )
            if kind != "Identifier":
                continue
            parts = _parts(node)
            column = parts[-1]
            if len(parts) == 1 and column in self.restricted and column not in every:
                continue  # a qualifier on its own (`tables.name` arrives as parts)
            known = column in allowed or (column in self.aliases and column not in every)
            if known and all(p in qualifiers for p in parts[:-1]):
                continue
            raise QueryRefusedError(
                *ACCESS_DENIED,
                f"the column {column} of system.{sorted(self.restricted)[0]} is not readable through clinotel: "
                + ", ".join(sorted(allowed)),
            )


def _check_text(policy: ReadPolicy, text: str) -> None:
    """A string that may become a type: when it names AggregateFunction anywhere, every word in it
    that is an aggregate function must be one readers may run. Words, not a parse of the type, so
    that no spelling the engine's type parser accepts (a version argument, quoted names, comments)
    slips past: `AggregateFunction(1, `f`(…), T)` is checked like `AggregateFunction(f, T)`. The
    text is checked as it is and with up to three levels of backslash escapes read (a quoted name
    inside a type string, a string inside an Array parameter: `agg\\x54hrow` is aggThrow)."""
    forms = {text}
    for _ in range(3):
        text = _unescape(text)
        forms.add(text)
    catalog = policy.catalog
    for form in forms:
        if not _AGGREGATE_TYPE.search(form):
            continue
        for word in set(_WORD.findall(form)):
            canonical = catalog.resolve(word)
            if canonical is not None and canonical in catalog.aggregates and canonical not in policy.functions:
                raise QueryRefusedError(*ACCESS_DENIED, f"the aggregate function {word} is not allowed for readers")


def _unescape(text: str) -> str:
    """`text` with one level of ClickHouse's backslash escapes read (`\\x41`, `\\t`, `\\'`, …)."""

    def one(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return chr(int(match.group(1), 16))
        return _ESCAPED.get(match.group(2), match.group(2))

    return _ESCAPE.sub(one, text)


def check_parameters(policy: ReadPolicy, params: Mapping[str, str]) -> None:
    """Each query parameter (`param_<name>`) meets the checks a string literal in its place would:
    its value may become a type or a structure once the engine substitutes it (`{t:String}` where a
    function takes a type name), after the query's own check. Raises QueryRefusedError."""
    for name, value in params.items():
        if name.startswith("param_"):
            try:
                _check_text(policy, value)
            except QueryRefusedError as e:
                raise QueryRefusedError(e.code, e.name, f"query parameter {name[6:][:80]}: {e.message}") from None


def _nothing(node: dict[str, Any]) -> None:
    return None


def _string_literal(node: object) -> str | None:
    if isinstance(node, dict) and node.get("type") == "Literal":
        value = node.get("value", {})
        if isinstance(value, dict) and value.get("field_type") == "String" and isinstance(value.get("value"), str):
            return str(value["value"])
    return None
