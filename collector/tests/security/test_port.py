"""Classes 5 and 6: the port around the SQL. /metrics needs an operator or scrape token; the
database parameter, bodies and credentials are abused; one tenant's readers cannot take every
slot; a tokens file others can read is refused at start."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from clinotel.collector.readport.reader import ClickHouseError, ReadLimits, SqlReader
from clinotel.collector.store import schema
from clinotel.collector.tokens import TokenError, Tokens
from collector.tests.fixtures import METRICS_TOKEN, OPERATOR_TOKEN, OTHER_READ_TOKEN, OTHER_TOKEN, READ_TOKEN
from collector.tests.security.conftest import Arena, assert_refused, assert_reveals_nothing


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("not-a-token-at-all-00000", 403), (READ_TOKEN, 403), (OTHER_TOKEN, 403)],
)
def test_metrics_need_an_operator_or_scrape_token(arena: Arena, token: str | None, status: int) -> None:
    answer = arena.ask(path="/metrics", token=token)
    assert answer.status == status
    assert b"clinotel_receiver" not in answer.body
    assert_reveals_nothing(answer)


@pytest.mark.parametrize("token", [METRICS_TOKEN, OPERATOR_TOKEN])
def test_metrics_with_a_scrape_or_operator_token(arena: Arena, token: str) -> None:
    answer = arena.ask(path="/metrics", headers={"Authorization": f"Bearer {token}"}, token=None)
    assert answer.status == 200
    assert b"clinotel_receiver_spans_accepted_total" in answer.body


def test_a_metrics_token_cannot_query(arena: Arena) -> None:
    assert_refused(arena.ask("SELECT 1", token=METRICS_TOKEN), 497)


@pytest.mark.parametrize(
    "database",
    [
        "x\\`; DROP TABLE otel_traces; --",
        "clinotel`; SET readonly = 0; --",
        "`",
        "\\",
        "no_such_database",
        "system; KILL QUERY WHERE 1",
        "a" * 300,
    ],
)
def test_the_database_parameter_cannot_inject(arena: Arena, untouched: None, database: str) -> None:
    before = arena.count(schema.TRACES, "st-marys")
    assert_refused(arena.ask("SELECT 1", database=database), 81)
    assert arena.count(schema.TRACES, "st-marys") == before


def test_system_as_the_database_reaches_nothing_more(arena: Arena) -> None:
    assert_refused(arena.ask("SELECT * FROM processes", database="system"), 497)
    assert arena.ask("SELECT * FROM one", database="system").status == 200


@pytest.mark.parametrize(
    "body",
    [b"SELECT '\xff\xfe'", b"\xc3\x28", b"SELECT 1\x00; DROP TABLE otel_traces"],
)
def test_bytes_that_are_not_utf8_or_sql_get_an_answer(arena: Arena, body: bytes) -> None:
    answer = arena.ask(body=body)
    assert_refused(answer, 62, 27)


def test_non_utf8_form_fields_get_an_answer(arena: Arena) -> None:
    boundary = "b"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="query"\r\n\r\n'.encode()
        + b"SELECT '\xff'\r\n"
        + f"--{boundary}--\r\n".encode()
    )
    answer = arena.ask(body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert_refused(answer)


def test_a_huge_query_is_refused_before_it_is_parsed(arena: Arena) -> None:
    answer = arena.ask(body=b"SELECT " + b"1+" * (1 << 20) + b"1")
    assert_refused(answer, 229)


def test_a_deep_query_is_refused_by_the_parser(arena: Arena) -> None:
    answer = arena.ask("SELECT " + "(" * 5000 + "1" + ")" * 5000)
    assert_refused(answer)


def test_write_tokens_and_unknown_tokens_cannot_read(arena: Arena) -> None:
    assert_refused(arena.ask("SELECT 1", token=OTHER_TOKEN), 497)
    assert_refused(arena.ask("SELECT 1", token="x" * 40), 516)
    assert_refused(arena.ask("SELECT 1", token=None), 194)


def test_one_tenants_slow_queries_leave_slots_for_another(arena: Arena) -> None:
    """st-marys fills its share of the reader slots with slow queries; general still reads."""
    assert arena.collector.reader is not None
    share = arena.collector.reader.limits.max_concurrent_per_tenant
    slow = "SELECT count() FROM numbers_mt(4000000000) WHERE NOT ignore(sipHash64(number))"
    threads = [
        threading.Thread(target=arena.ask, args=(slow,), kwargs={"max_execution_time": "3"}) for _ in range(share + 2)
    ]
    for t in threads:
        t.start()
    time.sleep(0.5)
    started = time.monotonic()
    answer = arena.ask("SELECT 1", token=OTHER_READ_TOKEN)
    waited = time.monotonic() - started
    for t in threads:
        t.join(timeout=30)
    assert answer.status == 200
    assert waited < 2.5, f"general waited {waited:.1f} s behind st-marys' queries"


def test_a_reader_never_waits_forever(engine_dir: Path) -> None:
    """With its share of the slots taken, a tenant's next query waits at most max_execution_time,
    then gets TOO_MANY_SIMULTANEOUS_QUERIES (ClickHouse's code 202); another tenant is served."""
    limits = ReadLimits(max_execution_time=1, max_concurrent=2, max_concurrent_per_tenant=1)
    reader = SqlReader(engine_dir / "data", "default", (), limits)
    try:
        with reader.slot("a"):
            started = time.monotonic()
            with pytest.raises(ClickHouseError) as refused:
                reader.query("SELECT 1", tenant="a")
            assert 0.9 < time.monotonic() - started < 5
            assert refused.value.code == 202
            assert reader.query("SELECT 1", tenant="b").body == b"1\n"
    finally:
        reader.close()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_tokens_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text('[[token]]\ntenant = "a"\nrole = "read"\nsha256 = "' + "0" * 64 + '"\n', encoding="utf-8")
    path.chmod(mode)
    with pytest.raises(TokenError, match="chmod 600"):
        Tokens.load(path)
    path.chmod(0o600)
    assert Tokens.load(path).warnings == []


def test_plain_tokens_are_warned_about_and_duplicates_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(
        '[[token]]\ntenant = "a"\nrole = "read"\ntoken = "aaaaaaaaaaaaaaaaaaaa"\n\n'
        '[[token]]\ntenant = "b"\nrole = "read"\ntoken = "aaaaaaaaaaaaaaaaaaaa"\n',
        encoding="utf-8",
    )
    path.chmod(0o600)
    with pytest.raises(TokenError, match=r"tokens.toml:5: the same token as line 1"):
        Tokens.load(path)
    path.write_text('[[token]]\ntenant = "a"\nrole = "read"\ntoken = "aaaaaaaaaaaaaaaaaaaa"\n', encoding="utf-8")
    loaded = Tokens.load(path)
    assert len(loaded.warnings) == 1
    assert "plain token" in loaded.warnings[0]


def test_a_token_without_a_role_is_a_write_token_and_said_so(tmp_path: Path) -> None:
    """A hand-written entry that leaves the role out (as files did before roles) still writes, and
    the start says so: never a grant nobody chose without a word."""
    path = tmp_path / "tokens.toml"
    path.touch(mode=0o600)
    path.write_text(f'[[token]]\ntenant = "a"\nsha256 = "{"0" * 64}"\n', encoding="utf-8")
    loaded = Tokens.load(path)
    assert loaded.summary() == {"a": {"write": 1}}
    assert len(loaded.warnings) == 1
    assert "no role given, so a write token" in loaded.warnings[0]
    assert "tokens.toml:1" in loaded.warnings[0]


@pytest.mark.parametrize(
    "tenant", ["a'b", "x\ny", "../../etc", "a" * 65, " lead", "clinotel_x`; DROP", "\u00fc", "\x00", "a\\b"]
)
def test_a_tokens_file_tenant_is_a_tenant_name(tmp_path: Path, tenant: str) -> None:
    """A hand-edited tokens file is held to the rule `clinotel tokens add` applies: a tenant names
    server users and row policies, labels metrics and goes into generated files."""
    path = tmp_path / "tokens.toml"
    escaped = json.dumps(tenant)  # a TOML basic string
    path.write_text(f'[[token]]\ntenant = {escaped}\nrole = "read"\nsha256 = "{"0" * 64}"\n', encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(TokenError, match=r"tokens.toml:1: .* is not a tenant name"):
        Tokens.load(path)


def test_a_tokens_file_names_a_bad_tenant_s_line_or_entry(tmp_path: Path) -> None:
    """A valid dotted name loads; a bad one is named by its line, or by its entry's number when a
    `[[token]]` header inside a multi-line string would make the line wrong."""
    path = tmp_path / "tokens.toml"
    path.touch(mode=0o600)
    path.write_text(f'[[token]]\ntenant = "St-Mary\'s"\nrole = "read"\nsha256 = "{"0" * 64}"\n', encoding="utf-8")
    with pytest.raises(TokenError, match="is not a tenant name"):
        Tokens.load(path)
    path.write_text(f'[[token]]\ntenant = "st-marys.north"\nrole = "read"\nsha256 = "{"0" * 64}"\n', encoding="utf-8")
    assert Tokens.load(path).warnings == []
    # a header inside a multi-line string: the entry is named by its number, never by a wrong line
    path.write_text(
        f'[[token]]\ntenant = "a"\nnote = """\n[[token]]\n"""\nrole = "read"\nsha256 = "{"0" * 64}"\n\n'
        f'[[token]]\ntenant = "b;c"\nrole = "read"\nsha256 = "{"1" * 64}"\n',
        encoding="utf-8",
    )
    with pytest.raises(TokenError, match=r"tokens.toml: token 2: 'b;c' is not a tenant name"):
        Tokens.load(path)


@pytest.mark.parametrize("query_id", ["a\r\nX-Injected: 1", "a\nSet-Cookie: x=1", "x" * 200, "a b"])
def test_query_id_cannot_write_headers(arena: Arena, query_id: str) -> None:
    answer = arena.ask("SELECT 1", query_id=query_id)
    assert_refused(answer, 36)
    assert "X-Injected" not in answer.headers
    assert "Set-Cookie" not in answer.headers


def test_an_answer_being_written_holds_its_tenant_s_slot(engine_dir: Path) -> None:
    """The read port holds a tenant's slot until its answer is written (`SqlReader.slot` around
    the query and the reply): an answer stays in memory until its client reads it, and ten slow
    clients of one tenant held ten answers (1.4 GB) once their queries had let go of the slots."""
    limits = ReadLimits(max_execution_time=1, max_concurrent=2, max_concurrent_per_tenant=1)
    reader = SqlReader(engine_dir / "data", "default", (), limits)
    try:
        with reader.slot("a"):
            assert reader.query("SELECT 1", tenant="a", slot_held=True).body == b"1\n"
            with pytest.raises(ClickHouseError) as refused:
                reader.query("SELECT 1", tenant="a")  # while the answer is still being written
            assert refused.value.code == 202
            assert reader.query("SELECT 1", tenant="b").body == b"1\n"
        assert reader.query("SELECT 1", tenant="a").body == b"1\n"
    finally:
        reader.close()
