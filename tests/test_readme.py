"""The README's code, run as a newcomer runs it: the "instrument a service in ten lines" snippet,
as written, exports its workflow into a running collector."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from clinotel.collector.service import Collector
from clinotel.collector.store import schema
from collector.tests.fixtures import WRITE_TOKEN
from tests.conftest import REPO

ENCOUNTER = "E1234567"


def _snippet(section: str) -> str:
    """The first Python block under the README heading `section`."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"^## {re.escape(section)}\n.*?```python\n(.*?)```", readme, re.S | re.M)
    assert found is not None, f"no Python block under '## {section}'"
    return found.group(1)


def _stored(c: Collector, expected: int) -> list[tuple[str, dict[str, str]]]:
    """Span names and attributes of ed-triage's spans, waiting (bounded) for `expected` of them."""
    assert c.writer is not None
    deadline = time.monotonic() + 15
    while True:
        c.writer.drain()
        rows = c.client.query(
            f"SELECT SpanName, SpanAttributes FROM {c.options.name(schema.TRACES)} WHERE ServiceName = 'ed-triage' "
            "ORDER BY SpanName"
        ).result_rows
        if len(rows) >= expected or time.monotonic() > deadline:
            return [(str(name), dict(attributes)) for name, attributes in rows]
        time.sleep(0.1)


def test_the_ten_line_snippet_runs_as_written_and_its_workflow_lands(collector: Collector) -> None:
    assert collector.http is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLINOTEL_"))}
    env |= {  # what the README's shell lines set, the endpoint and token of this test's collector
        "CLINOTEL_PSEUDONYM_KEY": "0123456789abcdef" * 4,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.http.port}",
        "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {WRITE_TOKEN}",
    }
    done = subprocess.run(
        [sys.executable, "-c", _snippet("Instrument a service in ten lines")],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ESI-2\n"
    assert done.stderr == "", "nothing dropped, nothing to warn about"
    spans = _stored(collector, 2)
    assert [name for name, _ in spans] == ["decide", "workflow triage"]
    decide, workflow = (attributes for _, attributes in spans)
    assert decide["clinical.decision.value"] == "ESI-2"
    assert re.fullmatch(r"[0-9a-f]{32}", workflow["clinical.workflow.id"]), "the encounter's pseudonym"
    assert ENCOUNTER in _snippet("Instrument a service in ten lines")
    assert all(ENCOUNTER not in str(attributes) for _, attributes in spans), "the encounter id never leaves"
