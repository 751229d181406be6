"""configure(): the one module that builds OpenTelemetry SDK objects for clinotel."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from clinotel.instrumentation._export import SanitizingSpanExporter
from clinotel.instrumentation._runtime import INSTRUMENTATION_NAME, Counters, Mode, Runtime, current, install
from clinotel.instrumentation.errors import ConfigurationError
from clinotel.semconv import MIN_KEY_BYTES, Pseudonymizer
from clinotel.semconv import attributes as A

__all__ = ["Telemetry", "configure"]

logger: Final = logging.getLogger("clinotel")

ENV_MODE: Final = "CLINOTEL_MODE"
ENV_TENANT: Final = "CLINOTEL_TENANT"
ENV_PSEUDONYM_KEY: Final = "CLINOTEL_PSEUDONYM_KEY"
PROTOCOLS: Final = ("http/protobuf", "grpc")


@dataclass
class Telemetry:
    """What configure() set up; `shutdown()` flushes and stops what clinotel added."""

    provider: trace.TracerProvider
    mode: Mode
    counters: Counters
    processor: SpanProcessor | None = None
    owns_provider: bool = False
    previous: Runtime | None = field(default=None, repr=False)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export everything queued; True when it all went out in time."""
        if self.processor is not None:
            return self.processor.force_flush(timeout_millis)
        flush = getattr(self.provider, "force_flush", None)
        return bool(flush(timeout_millis)) if flush is not None else True

    def shutdown(self) -> None:
        """Flush and stop clinotel's export pipeline (and its provider when clinotel made it)."""
        if self.owns_provider and isinstance(self.provider, TracerProvider):
            self.provider.shutdown()
        elif self.processor is not None:
            self.processor.shutdown()

    def dropped(self) -> dict[str, int]:
        """What clinotel dropped, redacted or contained since start, by reason."""
        return self.counters.totals()


def configure(
    *,
    service_name: str | None = None,
    service_version: str | None = None,
    environment: str | None = None,
    tenant: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    pseudonym_key: str | bytes | None = None,
    mode: Mode | str | None = None,
    sampler: Sampler | None = None,
    tracer_provider: TracerProvider | None = None,
    exporter: SpanExporter | None = None,
    export: bool = True,
    batch: bool = True,
    set_global: bool = True,
    resource_attributes: Mapping[str, str] | None = None,
    clock: Callable[[], int] | None = None,
) -> Telemetry:
    """Set clinotel up for this process; every argument falls back to the standard environment.

    - `service_name`, `service_version`, `environment`, `tenant`, `resource_attributes`: the
      resource; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and `CLINOTEL_TENANT` fill gaps.
    - `endpoint`, `protocol` (`http/protobuf` or `grpc`), `headers`: the OTLP exporter;
      `OTEL_EXPORTER_OTLP_[TRACES_]{ENDPOINT,PROTOCOL,HEADERS,TIMEOUT,COMPRESSION}` otherwise.
    - `pseudonym_key`: the tenant's HMAC key for workflow ids (`CLINOTEL_PSEUDONYM_KEY`), 16
      bytes or more.
    - `mode`: `production` (default; drop and count) or `strict` (raise); `CLINOTEL_MODE`.
    - `sampler`: an OpenTelemetry sampler; `OTEL_TRACES_SAMPLER[_ARG]` otherwise.
    - `tracer_provider`: the application's own provider; clinotel adds its sanitizing export
      pipeline to it (unless `export=False`) and leaves the global provider alone.
    - `exporter`: any SpanExporter instead of OTLP (always wrapped by the PHI gate).
    - `batch`: BatchSpanProcessor (default, `OTEL_BSP_*`) or SimpleSpanProcessor (tests).
    - `set_global`: install clinotel's provider as the global one when no SDK provider is set.
    - `clock`: nanosecond clock for span times, for simulations; leave unset in services.

    `OTEL_SDK_DISABLED=true` makes every clinotel call a no-op.
    """
    resolved_mode = _mode(mode)
    key = _pseudonymizer(pseudonym_key)
    counters = Counters()
    previous = current()

    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        noop = trace.NoOpTracerProvider()
        install(Runtime(noop.get_tracer(INSTRUMENTATION_NAME), resolved_mode, key, counters, clock))
        return Telemetry(noop, resolved_mode, counters, previous=previous)

    owns = tracer_provider is None
    if tracer_provider is None:
        resource = _resource(service_name, service_version, environment, tenant, resource_attributes)
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
    install(Runtime(tracer, resolved_mode, key, counters, clock))
    return Telemetry(tracer_provider, resolved_mode, counters, processor, owns, previous)


def _mode(mode: Mode | str | None) -> Mode:
    raw = mode if mode is not None else os.environ.get(ENV_MODE, Mode.PRODUCTION)
    try:
        return Mode(str(raw).strip().lower())
    except ValueError:
        raise ConfigurationError(f"mode must be 'strict' or 'production', not {raw!r}") from None


def _pseudonymizer(key: str | bytes | None) -> Pseudonymizer | None:
    raw = key if key is not None else os.environ.get(ENV_PSEUDONYM_KEY)
    if raw is None or raw == "":
        return None
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if len(data) < MIN_KEY_BYTES:
        raise ConfigurationError(f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes")
    return Pseudonymizer(data)


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
    """The official OTLP span exporter `configure()` builds: these arguments, else the
    `OTEL_EXPORTER_OTLP_*` environment. For a process that wraps it (say, in a tee) and passes the
    result as `configure(exporter=...)`; clinotel's PHI gate still goes in front."""
    proto = (
        protocol
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
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
    if urlsplit(endpoint).path.rstrip("/").endswith("/v1/traces"):
        return endpoint
    return endpoint.rstrip("/") + "/v1/traces"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clinotel-instrumentation")
    except PackageNotFoundError:
        return "0+unknown"
