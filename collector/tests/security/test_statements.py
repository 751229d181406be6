"""Class 1: statement smuggling. Whatever the quoting, comment or dollar-quote form, the read
port runs one read statement, re-rendered by ClickHouse from its own parse, or nothing; and it
never executes any part of a refused text (no file written, no row changed, no query killed)."""

from __future__ import annotations

import pytest

from clinotel.collector.store import schema
from collector.tests.fixtures import READ_TOKEN
from collector.tests.security.conftest import ATTACKER, Arena, assert_refused, assert_reveals_nothing

WRITE = f"INSERT INTO {schema.TRACES} (SpanName) SELECT 'smuggled'"
TAILS = [
    "KILL QUERY WHERE 1",
    "KILL QUERY WHERE query LIKE '%INSERT%' SYNC",
    "KILL MUTATION WHERE 1",
    "SELECT 1 INTO OUTFILE 'smuggled.txt'",
    "SELECT * FROM merge(currentDatabase(), '.*')",
    "SELECT * FROM system.processes",
    WRITE,
    f"DROP TABLE {schema.TRACES}",
    f"TRUNCATE TABLE {schema.TRACES}",
    f"ALTER TABLE {schema.TRACES} DELETE WHERE 1",
    "SYSTEM STOP MERGES",
    "SET readonly = 0",
]
SEPARATORS = [
    "SELECT 1 AS a$$; {tail}",
    "SELECT 1 AS a$b$; {tail}",
    "SELECT 1 AS `a`; {tail}",
    "SELECT '$$'; {tail}",
    "SELECT 1 -- $$\n; {tail}",
    "SELECT 1 /* $$ */; {tail}",
    "SELECT 1 # comment\n; {tail}",
    "SELECT $$a$$; {tail}",
    "SELECT $t$a;$t$; {tail}",
    'SELECT "a$$" FROM (SELECT 1 AS "a$$"); {tail}',
    "SELECT 1\n;\n{tail}",
    "SELECT 1;;{tail}",
    "SELECT 1 /* nested /* comment */ */; {tail}",
    "SELECT 'it\\'s'; {tail}",
    "SELECT 1\u00a0; {tail}",
]


@pytest.mark.parametrize("template", SEPARATORS)
@pytest.mark.parametrize("tail", TAILS[:6])
def test_a_second_statement_is_never_run(arena: Arena, untouched: None, template: str, tail: str) -> None:
    before = arena.count(schema.TRACES, ATTACKER)
    answer = arena.ask(template.format(tail=tail), database=arena.options.database)
    assert_refused(answer)
    assert arena.count(schema.TRACES, ATTACKER) == before


@pytest.mark.parametrize("tail", TAILS[6:])
def test_no_write_is_smuggled_behind_a_dollar_identifier(arena: Arena, untouched: None, tail: str) -> None:
    before = arena.count(schema.TRACES, ATTACKER)
    assert_refused(arena.ask(f"SELECT 1 AS a$$; {tail}", database=arena.options.database))
    assert arena.count(schema.TRACES, ATTACKER) == before


@pytest.mark.parametrize(
    "sql",
    [
        WRITE,
        f"INSERT INTO {schema.TRACES} (SpanName) VALUES ('x')",
        f"DROP TABLE {schema.TRACES}",
        f"DROP TABLE IF EXISTS {schema.TRACES} SYNC",
        f"TRUNCATE {schema.TRACES}",
        f"ALTER TABLE {schema.TRACES} DELETE WHERE 1",
        f"ALTER TABLE {schema.TRACES} UPDATE SpanName = 'x' WHERE 1",
        f"DELETE FROM {schema.TRACES} WHERE 1",
        f"OPTIMIZE TABLE {schema.TRACES} FINAL",
        f"RENAME TABLE {schema.TRACES} TO gone",
        f"EXCHANGE TABLES {schema.TRACES} AND clinical_workflows",
        f"DETACH TABLE {schema.TRACES}",
        "ATTACH TABLE x FROM '/tmp/x' (a UInt8) ENGINE = MergeTree ORDER BY a",
        "CREATE TABLE pwn (a UInt8) ENGINE = Memory",
        "CREATE TABLE pwn ENGINE = File(TSV, 'pwn.tsv') AS SELECT 1",
        "CREATE VIEW v AS SELECT * FROM system.processes",
        "CREATE FUNCTION pwn AS x -> x",
        "CREATE USER pwn",
        "GRANT ALL ON *.* TO default",
        "SET readonly = 0",
        "SET additional_table_filters = {}",
        "USE system",
        "KILL QUERY WHERE 1",
        "SYSTEM FLUSH LOGS",
        "SYSTEM DROP MARK CACHE",
        "SYSTEM SHUTDOWN",
        "BACKUP DATABASE default TO File('b')",
        f"CHECK TABLE {schema.TRACES}",
        "SHOW PROCESSLIST",
        "SHOW MERGES",
        "SHOW SETTINGS LIKE '%'",
        "SHOW GRANTS",
        "SHOW USERS",
        "SHOW CLUSTERS",
        "SHOW CREATE DATABASE default",
        "SHOW CREATE TABLE otel_traces_trace_id_ts",
        "DESCRIBE TABLE system.processes",
        "EXPLAIN SELECT 1",
        f"EXPLAIN ESTIMATE SELECT * FROM {schema.TRACES}",
        f"EXPLAIN indexes = 1 SELECT * FROM {schema.TRACES}",
        f"EXPLAIN PIPELINE SELECT * FROM {schema.TRACES}",
        "SELECT 1 INTO OUTFILE 'x.txt'",
        "SELECT 1 INTO OUTFILE 'x.txt' APPEND",
        "SELECT 1 INTO OUTFILE 'x.gz' COMPRESSION 'gzip'",
        "SELECT 1 INTO OUTFILE '/dev/stdout'",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT 1 FORMAT JSON SETTINGS additional_table_filters = {}",
        "WATCH v",
        "UNDROP TABLE otel_traces",
    ],
)
def test_anything_but_a_read_is_refused(arena: Arena, untouched: None, sql: str) -> None:
    before = arena.count(schema.TRACES, ATTACKER)
    assert_refused(arena.ask(sql, database=arena.options.database))
    assert arena.count(schema.TRACES, ATTACKER) == before


@pytest.mark.parametrize(
    ("query", "encoding"),
    [("INSERT INTO otel_traces FORMAT JSONEachRow", "lz4"), (" /* x */ insert into otel_traces VALUES", "zstd")],
)
def test_an_insert_is_refused_as_read_only_before_its_rows_are_read(
    arena: Arena, untouched: None, query: str, encoding: str
) -> None:
    """An insert's statement in the URL and its rows as the body (compressed as clickhouse-connect
    sends them): READONLY, not a complaint about the encoding (a new user's review)."""
    before = arena.count(schema.TRACES, ATTACKER)
    answer = arena.ask(body=b"\x82rows", headers={"Content-Encoding": encoding}, query=query)
    assert_refused(answer, 164)
    assert "read-only" in answer.text()
    assert arena.count(schema.TRACES, ATTACKER) == before


def test_clickhouse_connects_insert_is_refused_as_read_only(arena: Arena, untouched: None) -> None:
    """clickhouse-connect sends `INSERT INTO … FORMAT Native` and the rows as the body (2026-12-07
    review: answered "not valid UTF-8")."""
    import clickhouse_connect

    assert arena.collector.admin is not None
    client = clickhouse_connect.get_client(
        host="127.0.0.1",
        port=arena.collector.admin.port,
        password=READ_TOKEN,
        database=arena.options.database,
        compress=False,
    )
    try:
        with pytest.raises(Exception, match=r"Code: 164\b.*this read port is read-only"):
            # rows that are not UTF-8: they were read as the query text
            client.insert(schema.TRACES, [[2**64 - 1]], column_names=["Duration"], column_type_names=["UInt64"])
    finally:
        client.close()


@pytest.mark.parametrize(
    ("query", "body"),
    [
        (None, "\ufeffINSERT INTO otel_traces VALUES"),  # a byte-order mark the engine reads past
        (None, "/* /* nested */ still a comment */ INSERT INTO otel_traces VALUES"),
        ("/* the statement is in the body */", "\u200b insert into otel_traces VALUES"),
        (None, "\u2060\u200c\u200dINSERT INTO otel_traces VALUES"),  # joiners the lexer skips too
    ],
)
def test_an_insert_behind_what_the_engine_skips_is_refused_read_only(
    arena: Arena, untouched: None, query: str | None, body: str
) -> None:
    """What ClickHouse's lexer passes over (a BOM, zero-width spaces, nested comments, a parameter
    of comments before the body) hid the INSERT from the early check (third review)."""
    params = {"query": query} if query is not None else {}
    answer = arena.ask(body=body.encode(), **params)
    assert_refused(answer, 164)
    assert "this read port is read-only" in answer.text()


def test_a_comment_that_holds_insert_hides_nothing_else(arena: Arena) -> None:
    answer = arena.ask(body=b"/* /* */ INSERT */ SELECT 41 + 1", default_format="TSV")
    assert (answer.status, answer.body) == (200, b"42\n")


def test_comments_before_a_statement_take_time_in_proportion_to_them(arena: Arena) -> None:
    """The early INSERT check read `/**/` repeated with a backtracking pattern: 27 of them (109
    characters) held the interpreter, and every receiver, for 10 s (2026-12-07 review)."""
    answer = arena.ask(body=b"SELECT 1", query="/**/" * 5000 + "x")
    assert answer.status == 400  # a syntax error, answered at once


def test_what_runs_is_clickhouses_canonical_text(arena: Arena) -> None:
    """A comment that hides a second statement from a naive tokenizer is gone from what runs."""
    answer = arena.ask("SELECT /* ; DROP TABLE otel_traces */ 41 + 1 AS answer -- trailing", default_format="TSV")
    assert (answer.status, answer.body) == (200, b"42\n")
    assert_reveals_nothing(answer)


def test_ingest_continues_during_kill_attempts(arena: Arena) -> None:
    """A loop of KILL QUERY (class 1's worst case) neither runs nor stops the writer."""
    assert arena.collector.writer is not None
    before = arena.collector.writer.stats.segments
    for _ in range(20):
        assert_refused(arena.ask("SELECT 1 AS a$$; KILL QUERY WHERE 1 SYNC"))
        assert_refused(arena.ask("KILL QUERY WHERE 1"))
    arena.collector.writer.wal.flush()
    import time

    deadline = time.monotonic() + 10
    while arena.collector.writer.stats.segments == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert arena.collector.writer.stats.segments > before
    assert arena.collector.writer.stats.quarantined == 0
