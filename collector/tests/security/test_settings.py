"""Class 2: settings. A reader may lower the server's numeric caps and choose output options that
name no file and run nothing; every other setting is refused with ClickHouse's error, whether it
comes as a URL parameter, a multipart form field or a SETTINGS clause, and nothing it names is
read or written."""

from __future__ import annotations

import json

import pytest

from clinotel.collector.store.embedded import DEFAULT_ENGINE_MEMORY_MB
from collector.tests.security.conftest import Arena, assert_refused, assert_reveals_nothing

FILE_AND_SQL_SETTINGS = {
    "format_template_row": "{canary}/secret.txt",
    "format_template_resultset": "{tokens}",
    "format_template_rows_between_delimiter": "\n",
    "format_schema": "{canary}/secret.txt:Message",
    "format_schema_source": "query",
    "format_schema_message_name": "Message",
    "output_format_schema": "{canary}/new.proto",
    "format_regexp": "(.*)",
    "format_custom_row_before_delimiter": "x",
    "format_avro_schema_registry_url": "http://127.0.0.1:9/",
    "format_display_secrets_in_show_and_select": "1",
    "additional_table_filters": "{{}}",
    "additional_result_filter": "1",
    "readonly": "0",
    "allow_ddl": "1",
    "allow_introspection_functions": "1",
    "max_bytes_before_external_group_by": "1",
    "max_bytes_before_external_sort": "1",
    "temporary_files_codec": "NONE",
    "prefer_column_name_to_alias": "1",
    "max_rows_to_read": "1",
    "read_overflow_mode": "break",
    "send_logs_level": "trace",
    "log_queries": "1",
    "allow_experimental_analyzer": "0",
    "optimize_trivial_count_query": "0",
    "force_index_by_date": "0",
    "use_skip_indexes": "0",
    "max_query_size": "1",
    "os_thread_priority": "-20",
    "priority": "1",
    "user_files_path": "/",
    "http_response_headers": "{{}}",
    "output_format_image_width": "1",
}


def _value(arena: Arena, template: str) -> str:
    return template.format(canary=arena.canary, tokens=arena.tokens_file)


@pytest.mark.parametrize("name", sorted(FILE_AND_SQL_SETTINGS))
def test_a_setting_outside_the_allowlist_is_refused_in_the_url(arena: Arena, untouched: None, name: str) -> None:
    value = _value(arena, FILE_AND_SQL_SETTINGS[name])
    answer = arena.ask("SELECT 1 FORMAT Template", **{name: value})
    assert_refused(answer, 164, 73, 115)


@pytest.mark.parametrize("name", ["format_template_row", "format_template_resultset", "format_schema", "readonly"])
def test_a_setting_outside_the_allowlist_is_refused_in_a_form_field(arena: Arena, untouched: None, name: str) -> None:
    boundary = "b0undary"
    fields = {"query": "SELECT 1", name: _value(arena, FILE_AND_SQL_SETTINGS[name])}
    body = (
        "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items())
        + f"--{boundary}--\r\n"
    )
    answer = arena.ask(body=body.encode(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert_refused(answer, 164)


@pytest.mark.parametrize(
    "name", ["format_template_row", "max_rows_to_read", "readonly", "additional_table_filters", "output_format_schema"]
)
@pytest.mark.parametrize(
    "where", ["SELECT 1 SETTINGS {s}", "SELECT * FROM (SELECT 1 SETTINGS {s})", "SELECT 1 FORMAT TSV SETTINGS {s}"]
)
def test_a_settings_clause_outside_the_allowlist_is_refused(
    arena: Arena, untouched: None, name: str, where: str
) -> None:
    value = _value(arena, FILE_AND_SQL_SETTINGS.get(name, "1")).replace("'", "")
    assert_refused(arena.ask(where.format(s=f"{name} = '{value}'")), 164, 36)


@pytest.mark.parametrize(("asked", "served"), [("10", b"10\n"), ("100000", b"60\n")])
def test_a_settings_clause_with_an_allowed_cap_applies_capped(arena: Arena, asked: str, served: bytes) -> None:
    """Grafana's plugin sends `SETTINGS max_execution_time = …` in its schema queries."""
    answer = arena.ask(f"SELECT getSetting('max_execution_time') SETTINGS max_execution_time = {asked}")
    assert (answer.status, answer.body) == (200, served)


@pytest.mark.parametrize(
    "fmt", ["Template", "Protobuf", "ProtobufSingle", "CapnProto", "CustomSeparated", "Regexp", "Avro", "Prometheus"]
)
def test_output_formats_that_read_schema_files_are_refused(arena: Arena, untouched: None, fmt: str) -> None:
    assert_refused(arena.ask(f"SELECT 1 FORMAT {fmt}"), 73)
    assert_refused(arena.ask("SELECT 1", default_format=fmt), 73)


@pytest.mark.parametrize(
    ("name", "asked", "served"),
    [
        ("max_execution_time", "100000", "60"),
        ("max_execution_time", "0", "60"),
        ("max_execution_time", "5", "5"),
        ("max_result_bytes", str(1 << 40), str(128 << 20)),
        # a quarter of the engine's memory cap, so readers cannot crowd out ingest
        ("max_memory_usage", str(1 << 40), str((DEFAULT_ENGINE_MEMORY_MB << 20) // 4)),
        ("max_threads", "64", "2"),
        ("max_result_rows", "18446744073709551615", "18446744073709551615"),  # UInt64's largest, exactly
    ],
)
def test_caps_can_be_lowered_never_raised(arena: Arena, name: str, asked: str, served: str) -> None:
    answer = arena.ask(f"SELECT getSetting('{name}')", **{name: asked})
    assert (answer.status, answer.body) == (200, served.encode() + b"\n")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_execution_time", "-1"),
        ("max_execution_time", "soon"),
        ("session_timezone", "Europe/London'; DROP"),
        ("log_comment", "x'; SELECT 1"),
        ("format_csv_delimiter", ";;"),
        ("output_format_json_quote_64bit_integers", "maybe"),
        ("date_time_output_format", "file"),
        # numbers past a float or past any setting: refused, not a dropped connection (found by review)
        ("limit", "inf"),
        ("max_threads", "1e400"),
        ("max_execution_time", "nan"),
        ("limit", str(2**64)),
    ],
)
def test_allowed_settings_are_validated(arena: Arena, untouched: None, name: str, value: str) -> None:
    assert_refused(arena.ask("SELECT 1", **{name: value}), 36)


@pytest.mark.parametrize("value", ["inf", "1e400", "nan"])
def test_a_settings_clause_with_a_number_past_any_setting_is_refused(arena: Arena, untouched: None, value: str) -> None:
    assert_refused(arena.ask(f"SELECT 1 SETTINGS limit = {value}"), 36, 62)  # 62: no literal for 1e400


@pytest.mark.parametrize(
    ("accept", "level"), [("gzip;q=\u00b2", "9"), ("gzip;q=1e-3, deflate;q=.", "\u00b2"), ("gzip;q=0.5", "\u00b3")]
)
def test_odd_weights_and_levels_of_compression_are_read_not_fatal(arena: Arena, accept: str, level: str) -> None:
    """Digits Python calls digits (superscripts) but cannot read as numbers (found by review)."""
    answer = arena.ask("SELECT 1", headers={"Accept-Encoding": accept}, enable_http_compression="1",
                       http_zlib_compression_level=level)  # fmt: skip
    assert answer.status == 200


def test_allowed_output_options_apply(arena: Arena) -> None:
    answer = arena.ask(
        "SELECT toUInt64(18446744073709551615) AS big FORMAT JSONEachRow", output_format_json_quote_64bit_integers="0"
    )
    assert answer.status == 200
    assert json.loads(answer.body) == {"big": 18446744073709551615}
    assert_reveals_nothing(answer)


def test_a_setting_name_that_is_not_a_name(arena: Arena) -> None:
    assert_refused(arena.ask("SELECT 1", **{"max_threads; DROP": "1"}), 115)


@pytest.mark.parametrize("revision", ["\u00b9\u00b2", "54460x", "1" * 20, "-1"])
def test_a_protocol_version_that_is_not_a_number_is_refused(arena: Arena, revision: str) -> None:
    assert_refused(arena.ask("SELECT 1", client_protocol_version=revision, default_format="Native"), 6)
