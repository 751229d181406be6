"""What a reader's SQL may touch, decided on ClickHouse's own parse of it (`EXPLAIN AST`).

The reader runs every query on a `readonly = 1` session whose `additional_table_filters` keep a
tenant to its rows. Read-only mode already refuses writes, setting changes and the table functions
that reach files or the network. This check closes what it leaves open: table functions and
functions that read a table without the filter (`merge`, `dictGet`, `joinGet`, …), tables
without a tenant column, the system tables that show other sessions' queries, multi-statements,
and statements other than reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

__all__ = ["AstNode", "QueryRefusedError", "ReadPolicy", "check", "code_only", "output_format", "parse_ast", "precheck"]

READ_STATEMENTS: Final = frozenset(
    {"SelectWithUnionQuery", "SelectIntersectExceptQuery", "DescribeQuery", "ShowTables", "ExistsTableQuery",
     "ShowCreateTableQuery", "Explain"}
)  # fmt: skip
TABLE_FUNCTIONS: Final = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generateseries", "generate_series",
                                    "values", "view", "null"})  # fmt: skip
"""Table functions that read no stored table (or, like `view`, only through checked subqueries)."""
SYSTEM_TABLES: Final = frozenset(
    {"one", "numbers", "numbers_mt", "zeros", "zeros_mt", "settings", "databases", "tables", "columns", "functions",
     "table_functions", "data_type_families", "time_zones", "formats", "build_options", "contributors", "collations",
     "table_engines", "aggregate_function_combinators", "keywords"}
)  # fmt: skip
"""`system` tables describing the server and the schema; none holds rows or other sessions' queries."""
_TABLE_READING_FUNCTIONS: Final = re.compile(r"^(dict|joinget|file$|getsubcolumn$|filesystem)", re.IGNORECASE)
_IN_FUNCTIONS: Final = frozenset({"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin",
                                  "globalnotnullin"})  # fmt: skip
_LINE: Final = re.compile(r"^( *)(\S+)(?: (.*?))?(?: \(children \d+\))?$")
_ALIAS: Final = re.compile(r" \(alias [^)]*\)$")
_DOLLAR_QUOTE: Final = re.compile(r"\$[A-Za-z_]*\$")
_OUTFILE: Final = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)

READONLY: Final = (164, "READONLY")
ACCESS_DENIED: Final = (497, "ACCESS_DENIED")
SYNTAX_ERROR: Final = (62, "SYNTAX_ERROR")


class QueryRefusedError(Exception):
    """A query the reader will not run, with the ClickHouse error code and name a client expects."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message


def code_only(sql: str) -> str:
    """`sql` with string literals, quoted names and comments blanked out, for keyword checks.

    Checked before the text reaches the engine at all, because chDB runs every statement of a
    multi-statement string, even under `EXPLAIN`."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n and sql[j] != c:
                j += 2 if sql[j] == "\\" else 1
            i = j + 1
            out.append(" _ ")
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            out.append(" ")
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        elif c == "$" and (m := _DOLLAR_QUOTE.match(sql, i)):
            end = sql.find(m.group(0), m.end())
            i = n if end < 0 else end + len(m.group(0))
            out.append(" _ ")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def precheck(sql: str) -> None:
    """Refuse, from the text alone, what must never reach the engine: several statements, and
    `INTO OUTFILE` (which writes a file even in read-only mode)."""
    code = code_only(sql)
    if ";" in code.rstrip().rstrip(";"):
        raise QueryRefusedError(*SYNTAX_ERROR, "Multi-statements are not allowed")
    if _OUTFILE.search(code):
        raise QueryRefusedError(*READONLY, "Cannot execute query in readonly mode: INTO OUTFILE writes a file")


@dataclass
class AstNode:
    kind: str
    text: str = ""
    children: list[AstNode] = field(default_factory=list)

    def walk(self) -> Iterator[AstNode]:
        yield self
        for child in self.children:
            yield from child.walk()


def parse_ast(explain_output: str) -> list[AstNode]:
    """The statements of an `EXPLAIN AST` text, as trees (one per statement)."""
    roots: list[AstNode] = []
    stack: list[tuple[int, AstNode]] = []
    for raw in explain_output.splitlines():
        if not raw.strip():
            continue
        match = _LINE.match(raw.rstrip())
        if match is None:
            continue
        depth = len(match.group(1))
        node = AstNode(match.group(2), _ALIAS.sub("", match.group(3) or ""))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            stack[-1][1].children.append(node)
        else:
            roots.append(node)
        stack.append((depth, node))
    return roots


def output_format(statement: AstNode) -> str | None:
    """The name in a statement's own `FORMAT` clause, if it has one."""
    if statement.kind in ("SelectWithUnionQuery", "SelectIntersectExceptQuery") and len(statement.children) > 1:
        last = statement.children[-1]
        if last.kind == "Identifier":
            return last.text
    return None


@dataclass(frozen=True)
class ReadPolicy:
    """Which stored tables a reader may name.

    `readable` are (database, table) pairs with a tenant column; `exists` tells whether a
    (database, table) pair is a stored table at all, so an unqualified name that is none (a CTE)
    passes and is resolved by the engine."""

    readable: frozenset[tuple[str, str]]
    exists: Callable[[str, str], bool]

    def table(self, name: str, current_db: str) -> None:
        database, _, table = name.rpartition(".")
        database = (database or current_db).strip('`"')
        table = table.strip('`"')
        if database.lower() == "system":
            if table.lower() in SYSTEM_TABLES:
                return
            raise QueryRefusedError(*ACCESS_DENIED, f"the system table {table} is not readable through clinotel")
        if (database, table) in self.readable:
            return
        if not self.exists(database, table):
            return
        raise QueryRefusedError(
            *ACCESS_DENIED,
            f"{database}.{table} is not readable through clinotel: readers see "
            + ", ".join(sorted(f"{d}.{t}" for d, t in self.readable)),
        )


def check(statements: list[AstNode], policy: ReadPolicy, current_db: str) -> None:
    """Raise QueryRefusedError unless `statements` is one read that touches only what `policy` allows."""
    if len(statements) != 1:
        raise QueryRefusedError(*SYNTAX_ERROR, "Multi-statements are not allowed")
    root = statements[0]
    if root.kind not in READ_STATEMENTS:
        raise QueryRefusedError(*READONLY, f"Cannot execute query in readonly mode: {root.kind} is not a read")
    if any(child.kind == "Literal" for child in root.children):
        raise QueryRefusedError(*READONLY, "Cannot execute query in readonly mode: INTO OUTFILE writes a file")
    for node in root.walk():
        if node.kind == "TableIdentifier":
            policy.table(node.text, current_db)
        elif node.kind == "TableExpression":
            for child in node.children:
                if child.kind == "Function" and child.text.lower() not in TABLE_FUNCTIONS:
                    raise QueryRefusedError(
                        *ACCESS_DENIED, f"the table function {child.text} is not allowed for readers"
                    )
        elif node.kind == "Function":
            name = node.text.lower()
            if _TABLE_READING_FUNCTIONS.match(name):
                raise QueryRefusedError(*ACCESS_DENIED, f"the function {node.text} is not allowed for readers")
            if name in _IN_FUNCTIONS:
                args = node.children[0].children if node.children else []
                if len(args) == 2 and args[1].kind == "Identifier":
                    policy.table(args[1].text, current_db)
        elif node.kind in {"ExistsTableQuery", "ShowCreateTableQuery"}:
            parts = node.text.split()
            if len(parts) == 2:
                policy.table(f"{parts[0]}.{parts[1]}", current_db)
