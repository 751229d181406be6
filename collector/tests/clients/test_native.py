"""Native for a client's protocol revision: the engine's output, rewritten by `clinotel.collector.readport.native`,
read back by the independent decoder in `native_decoder` as a client of that revision reads it, must
carry the same values and the type names a ClickHouse server sends."""

from __future__ import annotations

from typing import Any

import pytest

from clinotel.collector.readport import native
from clinotel.collector.readport.reader import ClickHouseError
from collector.tests.clients.native_decoder import DecodeError, decode, parse_type, rows, strip_low_cardinality

# One column per layout a dashboard or client meets, with NULLs, empty and repeated values.
COLUMNS = {
    "u8": "toUInt8(number)",
    "i64": "toInt64(number) - 5",
    "u256": "toUInt256(number) * toUInt256('1000000000000000000000')",
    "f64": "number / 3",
    "f32": "toFloat32(number) / 7",
    "b": "number % 2 = 0",
    "s": "repeat('x', number * 200)",  # past one varint byte
    "fs": "toFixedString(toString(number % 10), 2)",
    "d": "toDate('2024-02-29') + number",
    "d32": "toDate32('1960-01-01') + number",
    "dt": "toDateTime('2024-03-01 12:00:00', 'Asia/Tokyo') + number",
    "dt_plain": "toDateTime('2024-03-01 12:00:00') + number",
    "dt64": "toDateTime64('2024-03-01 12:00:00.123456789', 9, 'UTC') + number",
    "dt64_plain": "toDateTime64('2024-03-01 12:00:00.5', 3) + number",
    "dec": "toDecimal64(number, 4) / 3",
    "dec256": "toDecimal256(number, 30)",
    "uuid": "toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0')",
    "ip4": "toIPv4('10.0.0.1')",
    "ip6": "toIPv6('2001:db8::1')",
    "e8": "CAST(if(number % 2 = 0, 'a', 'b''q') AS Enum8('a' = 1, 'b\\'q' = -2))",
    "e16": "CAST('z' AS Enum16('z' = 1000))",
    "n": "if(number % 3 = 0, NULL, number)",
    "nothing": "NULL",
    "lc": "toLowCardinality(concat('stage-', toString(number % 3)))",
    "lc_null": "CAST(if(number % 2 = 0, NULL, toString(number % 3)) AS LowCardinality(Nullable(String)))",
    "lc_fixed": "CAST(toFixedString(toString(number % 2), 1) AS LowCardinality(FixedString(1)))",
    "lc_num": "CAST(number % 4 AS LowCardinality(UInt64))",
    "arr": "range(number)",
    "arr_empty": "emptyArrayString()",
    "arr_nested": "[range(number), [7]]",
    "arr_lc": "CAST([toString(number), 'a', 'a'] AS Array(LowCardinality(String)))",
    "arr_n": "[NULL, number]",
    "map": "map('k', toString(number), 'j', 'v')",
    "map_lc": "CAST(map(concat('key', toString(number % 2)), 'v') AS Map(LowCardinality(String), String))",
    "map_arr": "map('a', range(number))",
    "tup": "(number, toString(number), [1, 2])",
    "tup_named": "CAST((number, 'x') AS Tuple(a UInt64, `b c` String))",
    "tup_quoted": "CAST((1, 2, 3) AS Tuple(`select` UInt8, `é` UInt8, `Table` UInt8))",
    "e_escaped": "CAST('a\\nb\\\\' AS Enum8('a\\nb\\\\' = 1, '\\t' = 2))",
    "tup_lc": "(toLowCardinality(toString(number)), number)",
    "point": "CAST((1.5, number) AS Point)",
    "ring": "CAST([(1.0, 2.0), (3.0, number)] AS Ring)",
    "interval": "INTERVAL 3 SECOND",
    "sagg": "CAST(number AS SimpleAggregateFunction(sum, UInt64))",
}
SQL = (
    "SELECT "
    + ", ".join(f"{e} AS {c}" for c, e in COLUMNS.items())
    + " FROM numbers(7) SETTINGS allow_suspicious_low_cardinality_types = 1"
)
REVISIONS = [1, 54336, 54337, 54404, 54405, 54453, 54454, 54460, 54479, 54480, native.MAX_REVISION]


def _engine(client: Any, sql: str, *, binary: bool = True, **settings: object) -> bytes:
    if binary:
        settings[native.BINARY_TYPES_SETTING] = 1
    return bytes(client.raw_query(sql, fmt="Native", settings=settings))


@pytest.fixture(scope="module")
def reference(client: Any) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The rows as the engine writes them at revision 0, and each column's type as the engine names it."""
    text = decode(_engine(client, SQL, binary=False), 0)
    zones = client.query(
        "SELECT "
        + ", ".join(f"toTypeName({e})" for e in COLUMNS.values())
        + " FROM numbers(1) SETTINGS allow_suspicious_low_cardinality_types = 1"
    ).result_rows[0]
    # revision 0 names every top-level DateTime('zone') DateTime: take toTypeName's name for those
    types = [z if c.type == "DateTime" else c.type for c, z in zip(text[0].columns, zones, strict=True)]
    return rows(text), types


@pytest.mark.parametrize("revision", REVISIONS)
def test_every_layout_reads_back_with_the_same_values_and_names(
    client: Any, reference: tuple[list[tuple[Any, ...]], list[str]], revision: int
) -> None:
    expected_rows, expected_types = reference
    blocks = decode(native.for_client(_engine(client, SQL), revision), revision)
    assert rows(blocks) == expected_rows
    header = blocks[0].columns
    assert [c.name for c in header] == list(COLUMNS)
    for column, expected in zip(header, expected_types, strict=True):
        want = expected
        if revision < native.REVISION_LOW_CARDINALITY:
            want = strip_low_cardinality(parse_type(expected)).render()
        if revision < native.REVISION_TIMEZONE_IN_DATETIME and want.startswith("DateTime("):
            want = "DateTime"
        assert column.type == want, column.name
    for block in blocks:
        assert block.info == ({1: 0, 2: -1, 3: []} if revision >= 54480 else {1: 0, 2: -1})


def test_a_zone_is_kept_where_the_engine_alone_drops_it(client: Any) -> None:
    sql = "SELECT toDateTime('2024-01-01 00:00:00', 'Europe/Berlin') AS t"
    assert decode(_engine(client, sql, binary=False), 0)[0].columns[0].type == "DateTime"
    assert decode(native.for_client(_engine(client, sql), 54460), 54460)[0].columns[0].type == (
        "DateTime('Europe/Berlin')"
    )


def test_many_blocks_and_no_rows(client: Any) -> None:
    sql = "SELECT number, toString(number) AS s, toLowCardinality(toString(number % 5)) AS lc FROM numbers(2500)"
    blocks = decode(native.for_client(_engine(client, sql, max_block_size=1000), 54460), 54460)
    assert [b.rows for b in blocks] == [1000, 1000, 500]
    assert [r[0] for r in rows(blocks)] == list(range(2500))
    assert native.for_client(_engine(client, "SELECT 1 WHERE 0"), 54460) == b""


def test_the_client_may_keep_binary_type_encodings(client: Any) -> None:
    body = _engine(client, "SELECT toLowCardinality('x') AS c")
    out = native.for_client(body, 54460, binary_types=True)
    assert out.startswith(b"\x01\x00\x02\xff\xff\xff\xff\x00\x01\x01\x01c\x26\x15\x00")


@pytest.mark.parametrize(
    ("sql", "setting"),
    [
        ("SELECT sumState(number) AS a FROM numbers(3)", {}),
        ("SELECT 1::Dynamic AS a", {}),
        ("SELECT 1::Variant(UInt8, String) AS a", {}),
        ("SELECT '{\"a\": 1}'::JSON AS a", {}),
    ],
)
def test_layouts_not_written_here_are_refused_not_garbled(client: Any, sql: str, setting: dict[str, object]) -> None:
    with pytest.raises(ClickHouseError) as info:
        native.for_client(_engine(client, sql, **setting), 54460)
    assert info.value.name == "NOT_IMPLEMENTED"
    assert info.value.http_status == 501 or info.value.code == 48


def test_revisions_past_the_written_layout_and_bad_values_are_refused(client: Any) -> None:
    body = _engine(client, "SELECT 'x' AS s")
    with pytest.raises(ClickHouseError, match="at most 54491"):
        native.for_client(body, 54492)
    for value in ("-1", "54460abc", "1" * 30, "0x10"):
        with pytest.raises(ClickHouseError) as info:
            native.client_revision({"client_protocol_version": value})
        assert info.value.name == "CANNOT_PARSE_TEXT"
    assert native.client_revision({}) == 0
    assert native.reframe(body, "JSON", {"client_protocol_version": "54460"}) == body, "only Native is rewritten"


@pytest.mark.parametrize("cut", [1, 5, 9, 20, -1])
def test_a_truncated_engine_answer_is_an_error_never_a_short_answer(client: Any, cut: int) -> None:
    body = _engine(client, "SELECT toString(number) AS s, [number] AS a FROM numbers(5)")
    with pytest.raises(ClickHouseError) as info:
        native.for_client(body[:cut], 54460)
    assert info.value.name == "CANNOT_READ_ALL_DATA"


def test_the_test_decoder_itself_refuses_what_a_client_refuses() -> None:
    with pytest.raises(DecodeError):  # a serialization byte a client of 54460 does not expect to be 1
        decode(b"\x01\x00\x02\xff\xff\xff\xff\x00\x01\x01\x01c\x05UInt8\x01\x07", 54460)
    with pytest.raises(DecodeError):  # block info field 3 before the revision that has it
        decode(b"\x01\x00\x02\xff\xff\xff\xff\x03\x00\x00\x00\x00", 54460)
