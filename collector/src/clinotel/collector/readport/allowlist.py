"""What a reader may use through the read port: statement shapes, functions, tables, settings and
output formats. Every list here is an allowlist: what is not named is refused.

The function list is data (`functions.txt`, written by `scripts/read_functions.py` and
reviewed after each engine upgrade), so a function an engine upgrade brings is refused until a
person has read it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Final

from clinotel.model.digits import ascii_digits

__all__ = [
    "NODE_KEYS",
    "OUTPUT_FORMATS",
    "RESTRICTED_SYSTEM_COLUMNS",
    "SETTINGS",
    "SHOW_TABLES_KEYS",
    "SYSTEM_TABLES",
    "TABLE_FUNCTIONS",
    "SettingRule",
    "functions",
]

_OUTFILE_FLAGS: Final = ("is_outfile_append", "is_outfile_truncate", "is_into_outfile_with_stdout")

NODE_KEYS: Final[dict[str, frozenset[str]]] = {
    name: frozenset(("type", *keys))
    for name, keys in {
        "SelectWithUnionQuery": ("union_mode", "list_of_modes", "list_of_selects", "format_ast", "alias",
                                 *_OUTFILE_FLAGS),
        "SelectQuery": ("distinct", "with", "select", "tables", "prewhere", "where", "group_by", "group_by_all",
                        "group_by_with_totals", "group_by_with_rollup", "group_by_with_cube",
                        "group_by_with_grouping_sets", "having", "window", "qualify", "order_by", "order_by_all",
                        "limit_by", "limit_by_length", "limit_by_offset", "limit_length", "limit_offset",
                        "limit_with_ties", "interpolate"),
        "ExpressionList": ("children",),
        "Identifier": ("name", "name_parts", "alias"),
        "Literal": ("value", "alias"),
        "Function": ("name", "arguments", "parameters", "alias", "is_operator", "is_lambda_function",
                     "is_window_function", "kind", "window_name", "window_definition", "nulls_action"),
        "Asterisk": ("transformers",),
        "QualifiedAsterisk": ("qualifier", "transformers"),
        "ColumnsRegexpMatcher": ("pattern", "transformers"),
        "ColumnsListMatcher": ("column_list", "transformers"),
        "QualifiedColumnsRegexpMatcher": ("pattern", "qualifier", "transformers"),
        "QualifiedColumnsListMatcher": ("column_list", "qualifier", "transformers"),
        "ColumnsTransformerList": ("children",),
        "ColumnsExceptTransformer": ("children", "pattern", "is_strict"),
        "ColumnsReplaceTransformer": ("children", "is_strict"),
        "ColumnsReplaceTransformerReplacement": ("children", "name"),
        "TablesInSelectQuery": ("children",),
        "TablesInSelectQueryElement": ("table_expression", "table_join", "array_join"),
        "TableExpression": ("database_and_table_name", "table_function", "subquery", "final", "sample_size",
                            "sample_offset"),
        "TableIdentifier": ("name", "name_parts", "alias"),
        "TableJoin": ("kind", "strictness", "locality", "on_expression", "using_expression_list"),
        "ArrayJoin": ("kind", "expression_list"),
        "Subquery": ("children", "alias"),
        "WithElement": ("name", "subquery"),
        "OrderByElement": ("direction", "nulls_direction", "nulls_direction_was_explicitly_specified", "expression",
                           "collation", "with_fill", "fill_from", "fill_to", "fill_step", "fill_staleness"),
        "InterpolateElement": ("column", "expr"),
        "WindowDefinition": ("parent_window_name", "partition_by", "order_by", "frame_is_default", "frame_type",
                             "frame_begin_type", "frame_begin_offset", "frame_begin_preceding", "frame_end_type",
                             "frame_end_offset", "frame_end_preceding"),
        "WindowListElement": ("name", "definition"),
        "SampleRatio": ("numerator", "denominator"),
        "QueryParameter": ("name", "param_type", "alias"),
        "ShowTablesQuery": ("databases", "from", "like", "not_like", "case_insensitive_like", "limit_length",
                            "format_ast", *_OUTFILE_FLAGS),
    }.items()
}  # fmt: skip
"""The JSON AST node types (`parseQueryToJSON`) a read may contain, each with the keys it may
carry. A type or key not listed (SETTINGS, INTO OUTFILE, every statement but a SELECT and SHOW
TABLES / DATABASES) is refused."""

SHOW_TABLES_KEYS: Final = NODE_KEYS["ShowTablesQuery"]
"""SHOW TABLES and SHOW DATABASES; the other SHOW forms of that node (merges, clusters, settings,
caches, …) carry a flag not listed here."""

TABLE_FUNCTIONS: Final = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generateSeries", "generate_series", "values", "view"}
)
"""Table functions that read no stored table (`view` reads only through its checked subquery)."""

SYSTEM_TABLES: Final = frozenset(
    {"one", "numbers", "numbers_mt", "zeros", "zeros_mt", "settings", "functions", "table_functions", "formats",
     "data_type_families", "time_zones", "collations", "keywords", "aggregate_function_combinators",
     "table_engines"}
)  # fmt: skip
"""`system` tables a reader may read whole: they describe the engine, not data or other sessions."""

RESTRICTED_SYSTEM_COLUMNS: Final[dict[str, frozenset[str]]] = {
    "databases": frozenset({"name", "engine", "comment", "database"}),
    "tables": frozenset({"database", "name", "table", "engine", "is_temporary", "comment", "partition_key",
                         "sorting_key", "primary_key", "sampling_key", "create_table_query", "as_select"}),
    "columns": frozenset({"database", "table", "name", "column", "type", "position", "default_kind",
                          "default_expression", "comment", "is_in_partition_key", "is_in_sorting_key",
                          "is_in_primary_key", "is_in_sampling_key", "compression_codec", "character_octet_length",
                          "numeric_precision", "numeric_precision_radix", "numeric_scale", "datetime_precision"}),
}  # fmt: skip
"""`system` tables that describe the schema but also carry statistics over every tenant's rows
(`total_rows`, `data_compressed_bytes`, …) or host paths: a query naming one may read only these
columns, and no `*`."""

OUTPUT_FORMATS: Final = frozenset(
    {"TabSeparated", "TabSeparatedRaw", "TabSeparatedWithNames", "TabSeparatedWithNamesAndTypes",
     "TabSeparatedRawWithNames", "TabSeparatedRawWithNamesAndTypes", "TSV", "TSVRaw", "TSVWithNames",
     "TSVWithNamesAndTypes", "TSVRawWithNames", "TSVRawWithNamesAndTypes", "CSV", "CSVWithNames",
     "CSVWithNamesAndTypes", "JSON", "JSONStrings", "JSONCompact", "JSONCompactStrings", "JSONEachRow",
     "JSONStringsEachRow", "JSONCompactEachRow", "JSONCompactEachRowWithNames",
     "JSONCompactEachRowWithNamesAndTypes", "JSONCompactStringsEachRow", "JSONCompactStringsEachRowWithNames",
     "JSONCompactStringsEachRowWithNamesAndTypes", "JSONColumns", "JSONCompactColumns", "JSONColumnsWithMetadata",
     "JSONObjectEachRow", "JSONLines", "NDJSON", "PrettyJSONEachRow", "Native", "RowBinary",
     "RowBinaryWithNames", "RowBinaryWithNamesAndTypes", "Pretty", "PrettyCompact", "PrettyCompactMonoBlock",
     "PrettySpace", "PrettyNoEscapes", "PrettyCompactNoEscapes", "PrettySpaceNoEscapes", "Vertical", "Markdown",
     "Values", "XML", "Parquet", "Arrow", "ArrowStream", "ORC", "Null", "LineAsString", "RawBLOB"}
)  # fmt: skip
"""Output formats that need no schema file and run nothing (not Template, Protobuf, CapnProto, …)."""

_BOOL: Final = frozenset({"0", "1", "true", "false"})


class SettingRule:
    """How one setting a reader may send is checked: `check(value, cap)` returns the value to
    apply, or raises ValueError with the reason. `cap` is the server's limit for capped numbers."""

    def __init__(self, check: Callable[[str, int | None], str], capped: bool = False) -> None:
        self.check = check
        self.capped = capped


_UINT64_MAX: Final = 2**64 - 1


def _number(value: str, cap: int | None) -> str:
    try:
        # a whole number exactly (a float rounds 18446744073709551615 up past UInt64), else a float's
        asked = int(value) if ascii_digits(value.strip()) else int(float(value))
    except (ValueError, OverflowError):  # OverflowError: inf, 1e400
        raise ValueError(f"{value[:40]!r} is not a number") from None
    if asked < 0:
        raise ValueError("a limit cannot be negative")
    if asked > _UINT64_MAX:
        raise ValueError(f"{value[:40]!r} is past any setting's range")
    if cap is None:
        return str(asked)
    return str(cap if asked == 0 else min(asked, cap))  # 0 means "no limit": the server's cap


def _bool(value: str, cap: int | None) -> str:
    if value.lower() not in _BOOL:
        raise ValueError(f"{value!r} is not 0 or 1")
    return "1" if value.lower() in ("1", "true") else "0"


def _one_of(*choices: str) -> Callable[[str, int | None], str]:
    def check(value: str, cap: int | None) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def _text(pattern: str) -> Callable[[str, int | None], str]:
    compiled = re.compile(pattern)

    def check(value: str, cap: int | None) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value[:40]!r} is not allowed here")
        return value

    return check


_CAPPED: Final = SettingRule(_number, capped=True)
_NUMBER: Final = SettingRule(_number)
_FLAG: Final = SettingRule(_bool)
_OVERFLOW: Final = SettingRule(_one_of("throw", "break"))

SETTINGS: Final[dict[str, SettingRule]] = {
    # limits: a reader may lower the server's, never raise them
    "max_execution_time": _CAPPED,
    "max_result_rows": _CAPPED,
    "limit": _NUMBER,  # Grafana's row limit
    "offset": _NUMBER,
    "max_result_bytes": _CAPPED,
    "max_memory_usage": _CAPPED,
    "max_threads": _CAPPED,
    "max_block_size": _CAPPED,
    "result_overflow_mode": _OVERFLOW,
    "timeout_overflow_mode": _OVERFLOW,
    # how the answer is written
    "date_time_output_format": SettingRule(_one_of("simple", "iso", "unix_timestamp")),
    "session_timezone": SettingRule(_text(r"[A-Za-z][A-Za-z0-9_+\-/]{0,63}")),
    "extremes": _FLAG,
    "join_use_nulls": _FLAG,
    "low_cardinality_allow_in_native_format": _FLAG,
    "output_format_native_encode_types_in_binary_format": _FLAG,
    "output_format_json_quote_64bit_integers": _FLAG,
    "output_format_json_quote_64bit_floats": _FLAG,
    "output_format_json_quote_denormals": _FLAG,
    "output_format_json_quote_decimals": _FLAG,
    "output_format_json_named_tuples_as_objects": _FLAG,
    "output_format_json_array_of_rows": _FLAG,
    "output_format_json_validate_utf8": _FLAG,
    "output_format_json_escape_forward_slashes": _FLAG,
    "output_format_json_pretty_print": _FLAG,
    "output_format_write_statistics": _FLAG,
    "output_format_decimal_trailing_zeros": _FLAG,
    "output_format_tsv_crlf_end_of_line": _FLAG,
    "output_format_csv_crlf_end_of_line": _FLAG,
    "output_format_arrow_string_as_string": _FLAG,
    "output_format_arrow_low_cardinality_as_dictionary": _FLAG,
    "output_format_parquet_string_as_string": _FLAG,
    "output_format_pretty_row_numbers": _FLAG,
    "output_format_pretty_color": SettingRule(_one_of("0", "1", "auto")),
    "output_format_pretty_grid_charset": SettingRule(_one_of("UTF-8", "ASCII")),
    "output_format_pretty_max_rows": _NUMBER,
    "output_format_pretty_max_column_pad_width": _NUMBER,
    "output_format_pretty_max_value_width": _NUMBER,
    "format_csv_delimiter": SettingRule(_text(r"[,;|\t ]")),
    "log_comment": SettingRule(_text(r"[\w .,:/=@+\-]{0,256}")),
}
"""Settings a reader may send (URL parameters or form fields): numeric caps it may lower, and
output options that name no file and run nothing."""

READONLY_VALUES: Final = frozenset({"1", "2"})
"""`readonly` values a client may send (it reads them as "this session is read-only"); not applied."""


@cache
def functions() -> frozenset[str]:
    """The functions a reader may call, by canonical name (`functions.txt`)."""
    text = (
        resources.files(__package__ or "clinotel.collector.readport")
        .joinpath("functions.txt")
        .read_text(encoding="utf-8")
    )
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))
