"""Exports spans through an official OpenTelemetry Python exporter; exit status 0 only when the
collector acknowledged them. Run as a script by the client matrix, in whichever environment has
that exporter: `python python_export.py PROTOCOL ENDPOINT SERVICE COUNT TOKEN`."""

from __future__ import annotations

import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def exporter(protocol: str, endpoint: str, token: str) -> SpanExporter:
    headers = {"authorization": f"Bearer {token}"}
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, headers=headers)
    if protocol == "http/json":
        from opentelemetry.exporter.otlp.json.http.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter as JsonExporter,
        )

        return JsonExporter(endpoint=endpoint, headers=headers)  # type: ignore[no-any-return]
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter(endpoint=endpoint, headers=headers, insecure=True)


def main(protocol: str, endpoint: str, service: str, count: str, token: str) -> int:
    memory = InMemorySpanExporter()
    # The payload claims another tenant: the token decides.
    provider = TracerProvider(resource=Resource.create({"service.name": service, "clinical.tenant.id": "general"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for i in range(int(count)):
        provider.get_tracer("client-matrix").start_span(f"python span {i}").end()
    out = exporter(protocol, endpoint, token)
    result = out.export(memory.get_finished_spans())
    out.shutdown()
    return 0 if result is SpanExportResult.SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
