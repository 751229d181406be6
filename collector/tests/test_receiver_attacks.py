"""OTLP/JSON nested deeper than any parser goes: a clear 400, never a 500 with a traceback in the
collector's log, and the collector keeps acknowledging."""

from __future__ import annotations

import pytest

from clinotel.collector.service import Collector
from collector.tests.otlp_clients import plain_request, post

DEPTH = 5000
SPAN = b'{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"x","attributes":[{"key":"clinical.site","value":'  # noqa: E501
DEEP_VALUE = b'{"kvlistValue":{"values":[{"key":"k","value":' * DEPTH + b'{"stringValue":"x"}' + b"}]}}" * DEPTH
BODIES = {
    "a nested attribute value": b'{"resourceSpans":[{"scopeSpans":[{"spans":[' + SPAN + DEEP_VALUE + b"}]}]}]}]}",
    "nested arrays": b'{"resourceSpans":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("name", list(BODIES))
def test_json_nested_too_deeply_is_a_clear_400(collector: Collector, name: str) -> None:
    assert collector.http is not None
    url = f"http://127.0.0.1:{collector.http.port}/v1/traces"
    status, _, body = post(url, BODIES[name], content_type="application/json")
    assert status == 400, body
    assert b"nested too deeply" in body
    assert post(url, plain_request(2))[0] == 200
