"""Allowlists, exhaustively: every table function, every `system` table and every function the
engine has and the allowlist does not name is refused, read from the engine itself so that a
new one an upgrade brings is covered (and refused) without editing this file."""

from __future__ import annotations

import pytest

from clinotel.collector.readport import allowlist as read_allowlist
from collector.tests.security.conftest import Arena, assert_refused


def _names(arena: Arena, sql: str) -> list[str]:
    answer = arena.ask(sql, default_format="TSVRaw")
    assert answer.status == 200, answer.text()[:300]
    return answer.body.decode().split()


def test_every_table_function_but_the_allowed_is_refused(arena: Arena, untouched: None) -> None:
    names = _names(arena, "SELECT name FROM system.table_functions")
    assert len(names) > 50
    refused = 0
    for name in names:
        if name in read_allowlist.TABLE_FUNCTIONS:
            continue
        answer = arena.ask(f"SELECT * FROM {name}('x') LIMIT 1", database=arena.options.database)
        if answer.code == "62":  # takes a subquery: call it with one
            answer = arena.ask(f"SELECT * FROM {name}(SELECT 1) LIMIT 1", database=arena.options.database)
        assert_refused(answer, 497, 62)  # 62: a syntax of its own the parser refuses first
        refused += 1
    assert refused >= len(names) - len(read_allowlist.TABLE_FUNCTIONS)


def test_every_system_table_but_the_allowed_is_refused(arena: Arena, untouched: None) -> None:
    names = _names(arena, "SELECT name FROM system.tables WHERE database = 'system'")
    assert len(names) > 80
    for name in names:
        answer = arena.ask(f"SELECT * FROM system.{name} LIMIT 1")
        if name in read_allowlist.SYSTEM_TABLES:
            assert answer.status == 200, (name, answer.text()[:200])
        else:
            assert_refused(answer, 497)


def test_every_function_outside_the_allowlist_is_refused(arena: Arena, untouched: None) -> None:
    names = _names(arena, "SELECT name FROM system.functions WHERE alias_to = '' AND NOT is_aggregate")
    allowed = read_allowlist.functions()
    outside = [n for n in names if n not in allowed and n not in ("lambda",)]
    assert len(outside) > 100
    for name in outside:
        assert_refused(arena.ask(f"SELECT {name}(1)"), 497, 46)


def test_aliases_and_combinators_resolve_to_what_they_stand_for(arena: Arena) -> None:
    """An alias or an aggregate combinator cannot dress up a refused function."""
    for sql in ("SELECT lcase('A')", "SELECT COUNT(*)", "SELECT sumIf(number, 1) FROM numbers(3)",
                "SELECT countIfOrNullIf(number > 0, 1) FROM numbers(3)", "SELECT uniqExactState(1)"):  # fmt: skip
        assert arena.ask(sql).status == 200, sql
    for sql in ("SELECT aggThrowIf(1)(number, 1) FROM numbers(3)", "SELECT aggThrowState(1)(number) FROM numbers(3)",
                "SELECT HOSTNAME()", "SELECT hostname()", "SELECT fullHostName()"):  # fmt: skip
        assert_refused(arena.ask(sql), 497, 46)


def test_the_committed_function_list_names_only_engine_functions(arena: Arena) -> None:
    names = set(_names(arena, "SELECT name FROM system.functions"))
    assert read_allowlist.functions() <= names, sorted(read_allowlist.functions() - names)[:10]


@pytest.mark.parametrize(
    "fmt", sorted(read_allowlist.OUTPUT_FORMATS - {"Parquet", "Arrow", "ArrowStream", "ORC", "Native", "RowBinary"})
)
def test_every_allowed_output_format_answers(arena: Arena, fmt: str) -> None:
    answer = arena.ask("SELECT 1 AS one", default_format=fmt)
    assert answer.status == 200, (fmt, answer.text()[:200])
