"""configure(): set clinotel up for a process.

The OpenTelemetry SDK and the OTLP exporters are the `sdk` extra. They are imported only when
configure() (or otlp_exporter()) runs, by `sdk.py`, the one module that builds SDK objects.
Without them, clinotel's calls validate and record nothing, as OpenTelemetry's API does without
an SDK; configure() says which extra to install.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from opentelemetry import trace

from clinotel.instrumentation._internal.runtime import INSTRUMENTATION_NAME, Counters, Mode, Runtime, current, install
from clinotel.instrumentation.errors import ConfigurationError
from clinotel.semconv import MIN_KEY_BYTES, Pseudonymizer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler

__all__ = [
    "ENV_MODE",
    "ENV_PSEUDONYM_KEY",
    "INSTALL_SDK",
    "SDK_EXTRA",
    "Telemetry",
    "configure",
    "missing_sdk",
    "otlp_exporter",
]

logger: Final = logging.getLogger("clinotel")

ENV_MODE: Final = "CLINOTEL_MODE"
ENV_PSEUDONYM_KEY: Final = "CLINOTEL_PSEUDONYM_KEY"
SDK_EXTRA: Final = "clinotel-instrumentation[sdk]"
"""What to install for configure(): opentelemetry-sdk and the OTLP exporters."""
INSTALL_SDK: Final = (
    f"install {SDK_EXTRA} (not on PyPI yet: from a clinotel checkout, pip install './instrumentation[sdk]')"
)
"""How, in the errors that ask for it."""


def missing_sdk(what: str, error: ModuleNotFoundError) -> ConfigurationError:
    """The error for `what` when the SDK extra is not installed; re-raises anything else."""
    if not (error.name or "").startswith(("opentelemetry", "grpc", "google")):
        raise error
    return ConfigurationError(
        f"{what} needs the OpenTelemetry SDK and OTLP exporters: {INSTALL_SDK} (module {error.name} is not installed)"
    )


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
        stop = getattr(self.provider, "shutdown", None) if self.owns_provider else None
        if stop is not None:
            stop()
        elif self.processor is not None:
            self.processor.shutdown()

    def restore(self) -> None:
        """Shut down, and put back what was in force before this configure() (a tool that records
        a few spans inside a process that has telemetry of its own, such as a change event)."""
        self.shutdown()
        if self.previous is not None:
            install(self.previous)

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

    Needs the `sdk` extra (from a checkout: `pip install './instrumentation[sdk]'`); without it, this
    raises ConfigurationError naming the extra.

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
    counters = Counters()
    previous = current()

    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        # everything off, whatever else is set: a short pseudonym key or a mistyped mode stopped
        # a service from starting with telemetry switched off (a 2026-12-07 review)
        try:
            disabled_mode = _mode(mode)
        except ConfigurationError:
            disabled_mode = Mode.PRODUCTION
        try:
            disabled_key = _pseudonymizer(pseudonym_key)
        except ConfigurationError:
            disabled_key = None
        # no key, or a short one: identifiers are still taken (by a throwaway key; nothing leaves)
        disabled_key = disabled_key or Pseudonymizer(os.urandom(32))
        noop = trace.NoOpTracerProvider()
        install(Runtime(noop.get_tracer(INSTRUMENTATION_NAME), disabled_mode, disabled_key, counters, clock))
        return Telemetry(noop, disabled_mode, counters, previous=previous)

    resolved_mode = _mode(mode)
    key = _pseudonymizer(pseudonym_key)

    try:
        from clinotel.instrumentation._internal.sdk import build_pipeline

        pipeline = build_pipeline(
            service_name=service_name,
            service_version=service_version,
            environment=environment,
            tenant=tenant,
            resource_attributes=resource_attributes,
            sampler=sampler,
            tracer_provider=tracer_provider,
            exporter=exporter,
            endpoint=endpoint,
            protocol=protocol,
            headers=headers,
            export=export,
            batch=batch,
            set_global=set_global,
            counters=counters,
        )
    except ModuleNotFoundError as e:
        raise missing_sdk("configure()", e) from e
    install(Runtime(pipeline.tracer, resolved_mode, key, counters, clock))
    return Telemetry(pipeline.provider, resolved_mode, counters, pipeline.processor, pipeline.owns_provider, previous)


def otlp_exporter(
    endpoint: str | None = None, protocol: str | None = None, headers: Mapping[str, str] | None = None
) -> SpanExporter:
    """The official OTLP span exporter `configure()` builds: these arguments, else the
    `OTEL_EXPORTER_OTLP_*` environment. For a process that wraps it (say, in a tee) and passes the
    result as `configure(exporter=...)`; clinotel's PHI gate still goes in front. Needs the `sdk`
    extra."""
    try:
        from clinotel.instrumentation._internal import sdk

        return sdk.otlp_exporter(endpoint, protocol, headers)
    except ModuleNotFoundError as e:
        raise missing_sdk("otlp_exporter()", e) from e


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
