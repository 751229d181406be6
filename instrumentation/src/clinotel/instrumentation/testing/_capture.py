"""Capture what clinotel would export, after the PHI gate; restore the configuration after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clinotel.instrumentation._internal.runtime import Mode, current, install
from clinotel.instrumentation._internal.setup import Telemetry, configure
from clinotel.semconv import HEALTH_SPAN_NAME

__all__ = ["TEST_PSEUDONYM_KEY", "CapturedSpans", "capture", "isolated", "span_to_dict"]

TEST_PSEUDONYM_KEY = "clinotel-test-pseudonym-key-not-for-production"


class CapturedSpans:
    """The spans exported while capturing, after the PHI gate."""

    def __init__(self, exporter: InMemorySpanExporter, telemetry: Telemetry) -> None:
        self._exporter = exporter
        self.telemetry = telemetry

    @property
    def all(self) -> list[ReadableSpan]:
        """Every exported span, clinotel's health spans included, in end order."""
        return list(self._exporter.get_finished_spans())

    @property
    def spans(self) -> list[ReadableSpan]:
        """Exported spans without clinotel's health spans."""
        return [s for s in self.all if s.name != HEALTH_SPAN_NAME]

    def named(self, name: str) -> list[ReadableSpan]:
        """Spans called `name`."""
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        """The single span called `name`; fails when there are none or several."""
        found = self.named(name)
        if len(found) != 1:
            raise AssertionError(f"expected one span named {name!r}, found {len(found)}: {self.names()}")
        return found[0]

    def names(self) -> list[str]:
        return [s.name for s in self.spans]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """Direct children of `parent`, in start order."""
        sid = parent.context.span_id if parent.context else None
        kids = [s for s in self.spans if s.parent is not None and s.parent.span_id == sid]
        return sorted(kids, key=lambda s: s.start_time or 0)

    def health(self) -> dict[str, int]:
        """clinotel's health figures summed over the exported health spans."""
        out: dict[str, int] = {}
        for s in self.all:
            if s.name == HEALTH_SPAN_NAME:
                for k, v in (s.attributes or {}).items():
                    if isinstance(v, int):
                        out[k] = out.get(k, 0) + v
        return out

    def clear(self) -> None:
        self._exporter.clear()


@contextmanager
def capture(
    *,
    mode: Mode | str = Mode.STRICT,
    pseudonym_key: str | bytes | None = TEST_PSEUDONYM_KEY,
    service_name: str = "clinotel-test",
    tenant: str = "test-tenant",
    clock: Callable[[], int] | None = None,
) -> Iterator[CapturedSpans]:
    """Configure clinotel to export into memory (synchronously) for the duration of the block."""
    exporter = InMemorySpanExporter()
    telemetry = configure(
        service_name=service_name,
        tenant=tenant,
        pseudonym_key=pseudonym_key,
        mode=mode,
        exporter=exporter,
        batch=False,
        set_global=False,
        clock=clock,
    )
    try:
        yield CapturedSpans(exporter, telemetry)
    finally:
        telemetry.shutdown()
        if telemetry.previous is not None:
            install(telemetry.previous)


@contextmanager
def isolated() -> Iterator[None]:
    """Undo, on exit, whatever configure() installed inside the block: the clinotel configuration
    in force before it is restored. For tests and benchmarks that configure clinotel themselves
    (shut their own Telemetry down first); the global tracer provider is left alone."""
    before = current()
    try:
        yield
    finally:
        install(before)


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    """A JSON-ready view of a span, for tests that collect spans from another process."""
    ctx = span.context
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
        "span_id": f"{ctx.span_id:016x}" if ctx else None,
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "start_time": span.start_time,
        "end_time": span.end_time,
        "attributes": dict(span.attributes or {}),
        "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events],
        "links": [f"{link.context.trace_id:032x}-{link.context.span_id:016x}" for link in span.links],
        "status": span.status.status_code.name,
        "status_description": span.status.description,
        "resource": dict(span.resource.attributes),
    }
