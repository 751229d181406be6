"""The one module that builds OpenTelemetry SDK objects for clinotel (the `sdk` extra):
provider, resource, processors, the PHI gate in front of the exporter, the OTLP exporters."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from clinotel.instrumentation._internal.export import SanitizingSpanExporter, clean_resource
from clinotel.instrumentation._internal.runtime import INSTRUMENTATION_NAME, Counters
from clinotel.instrumentation.errors import ConfigurationError
from clinotel.semconv import attributes as A

__all__ = ["ENV_TENANT", "PROTOCOLS", "Pipeline", "build_pipeline", "otlp_exporter"]

logger: Final = logging.getLogger("clinotel")

ENV_TENANT: Final = "CLINOTEL_TENANT"
PROTOCOLS: Final = ("http/protobuf", "grpc")


@dataclass(frozen=True, slots=True)
class Pipeline:
    """What build_pipeline() made: the tracer clinotel writes to and what to flush and stop."""

    provider: TracerProvider
    tracer: trace.Tracer
    processor: SpanProcessor | None
    owns_provider: bool


def build_pipeline(
    *,
    service_name: str | None,
    service_version: str | None,
    environment: str | None,
    tenant: str | None,
    resource_attributes: Mapping[str, str] | None,
    sampler: Sampler | None,
    tracer_provider: TracerProvider | None,
    exporter: SpanExporter | None,
    endpoint: str | None,
    protocol: str | None,
    headers: Mapping[str, str] | None,
    export: bool,
    batch: bool,
    set_global: bool,
    counters: Counters,
) -> Pipeline:
    """The provider (the application's, or a new one), with the PHI gate in front of the
    exporter; see `configure()` for the arguments."""
    owns = tracer_provider is None
    if tracer_provider is None:
        resource = _resource(service_name, service_version, environment, tenant, resource_attributes)
        # through the gate once, here: a resource the gate would change at export (a key the
        # Kubernetes operator adds to OTEL_RESOURCE_ATTRIBUTES) sent every span down the slow
        # path, a copy of each, 1.22-1.26x the SDK by hand (a 2026-12-07 review)
        counts: dict[str, int] = {}
        resource = clean_resource(resource, counts)
        for reason, n in counts.items():
            counters.add(reason, n)
        tracer_provider = TracerProvider(resource=resource, sampler=sampler)
    elif sampler is not None or service_name or tenant:
        logger.info("clinotel: with the application's tracer provider, its resource and sampler apply")

    processor: SpanProcessor | None = None
    if export:
        inner = exporter if exporter is not None else otlp_exporter(endpoint, protocol, headers)
        gate = SanitizingSpanExporter(inner, counters)
        processor = BatchSpanProcessor(gate) if batch else SimpleSpanProcessor(gate)
        tracer_provider.add_span_processor(processor)

    if owns and set_global:
        if isinstance(trace.get_tracer_provider(), TracerProvider):
            logger.info("clinotel: a global tracer provider is already set; clinotel keeps its own")
        else:
            trace.set_tracer_provider(tracer_provider)

    tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME, _version())
    return Pipeline(tracer_provider, tracer, processor, owns)


def _resource(
    service_name: str | None,
    service_version: str | None,
    environment: str | None,
    tenant: str | None,
    extra: Mapping[str, str] | None,
) -> Resource:
    attrs: dict[str, str] = dict(extra or {})
    for k, v in (
        (A.SERVICE_NAME.key, service_name),
        (A.SERVICE_VERSION.key, service_version),
        (A.DEPLOYMENT_ENVIRONMENT.key, environment),
        (A.TENANT_ID.key, tenant or os.environ.get(ENV_TENANT)),
    ):
        if v:
            attrs[k] = v
    return Resource.create(attrs)


def otlp_exporter(
    endpoint: str | None = None, protocol: str | None = None, headers: Mapping[str, str] | None = None
) -> SpanExporter:
    """The official OTLP span exporter for these arguments, else the `OTEL_EXPORTER_OTLP_*`
    environment."""
    proto = (
        (
            protocol
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
        .strip()
        .lower()
    )
    if proto == "http/json":
        # a value the OpenTelemetry specification allows, for an exporter this package does not
        # ship: the same endpoint over OTLP/HTTP protobuf, which every OTLP receiver takes,
        # rather than a service that will not start for its telemetry's sake
        logger.warning("clinotel: OTLP protocol http/json is not shipped here; exporting http/protobuf instead")
        proto = "http/protobuf"
    if proto not in PROTOCOLS:
        raise ConfigurationError(f"OTLP protocol must be one of {', '.join(PROTOCOLS)}, not {proto!r}")
    hdrs = dict(headers) if headers else None
    if proto == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        insecure = None
        if endpoint is not None:
            insecure = urlsplit(endpoint).scheme == "http"
        return GrpcExporter(endpoint=endpoint, headers=hdrs, insecure=insecure)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=_traces_url(endpoint) if endpoint else None, headers=hdrs)


def _traces_url(endpoint: str) -> str:
    """Like OTEL_EXPORTER_OTLP_ENDPOINT: a base URL (any path) gets `/v1/traces` appended."""
    parts = urlsplit(endpoint)
    if parts.path.rstrip("/").endswith("/v1/traces"):
        return endpoint
    # onto the path, not after a query (`…:4318?x=1` was sent to `/?x=1/v1/traces`)
    return parts._replace(path=parts.path.rstrip("/") + "/v1/traces").geturl()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clinotel-instrumentation")
    except PackageNotFoundError:
        return "0+unknown"
