"""configure(): OTEL_* environment, the application's own provider, modes, and their errors."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import clinotel.instrumentation as ct
from clinotel.instrumentation import otlp_exporter
from clinotel.instrumentation.testing import TEST_PSEUDONYM_KEY
from clinotel.semconv import attributes as A


def _memory(**kwargs: object) -> tuple[ct.Telemetry, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tel = ct.configure(exporter=exporter, batch=False, set_global=False, **kwargs)  # type: ignore[arg-type]
    return tel, exporter


def test_otel_environment_sets_the_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "ed-triage")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,clinical.tenant.id=st-marys")
    tel, exporter = _memory()
    with ct.workflow("triage"):
        pass
    tel.shutdown()
    resource = exporter.get_finished_spans()[0].resource.attributes
    assert resource["service.name"] == "ed-triage"
    assert resource["deployment.environment.name"] == "staging"
    assert resource[A.TENANT_ID.key] == "st-marys"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("CLINOTEL_TENANT", "env-tenant")
    tel, exporter = _memory(service_name="from-code", tenant="code-tenant", service_version="2.1.0")
    with ct.workflow("triage"):
        pass
    tel.shutdown()
    resource = exporter.get_finished_spans()[0].resource.attributes
    assert resource["service.name"] == "from-code"
    assert resource["service.version"] == "2.1.0"
    assert resource[A.TENANT_ID.key] == "code-tenant"


def test_mode_and_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINOTEL_MODE", "strict")
    monkeypatch.setenv("CLINOTEL_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
    tel, exporter = _memory()
    assert tel.mode is ct.Mode.STRICT
    with pytest.raises(ct.TelemetryValidationError), ct.workflow("Not A Code"):
        pass
    with ct.workflow("triage", identifier="ENC-1"):
        pass
    tel.shutdown()
    ids = [s.attributes.get(A.WORKFLOW_ID.key) for s in exporter.get_finished_spans()]
    assert ct.pseudonymize("ENC-1", TEST_PSEUDONYM_KEY.encode()) in ids


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "lenient"}, "strict' or 'production"),
        ({"pseudonym_key": "short"}, "at least 16 bytes"),
        ({"protocol": "thrift", "export": True, "exporter": None}, "protocol"),
    ],
)
def test_configuration_errors_are_clear(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ct.ConfigurationError, match=message):
        ct.configure(set_global=False, **kwargs)  # type: ignore[arg-type]


def test_otlp_exporter_follows_protocol_and_endpoint_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    http = otlp_exporter("http://127.0.0.1:4318", None, None)
    assert isinstance(http, HttpExporter)
    assert http._endpoint == "http://127.0.0.1:4318/v1/traces"
    assert otlp_exporter("http://h:4318/v1/traces", "http/protobuf", None)._endpoint == "http://h:4318/v1/traces"  # type: ignore[attr-defined]
    assert otlp_exporter("http://h:4318/otlp", "http/protobuf", None)._endpoint == "http://h:4318/otlp/v1/traces"  # type: ignore[attr-defined]
    assert otlp_exporter("http://h:4318?x=1", "http/protobuf", None)._endpoint == "http://h:4318/v1/traces?x=1"  # type: ignore[attr-defined]
    # the specification's http/json, not shipped here: the same endpoint in protobuf, not a failed start
    assert otlp_exporter("http://h:4318", "http/json", None)._endpoint == "http://h:4318/v1/traces"  # type: ignore[attr-defined]
    assert isinstance(otlp_exporter("http://h:4317", "GRPC", None), GrpcExporter)
    assert isinstance(otlp_exporter("http://127.0.0.1:4317", "grpc", None), GrpcExporter)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert isinstance(otlp_exporter(None, None, None), GrpcExporter)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.internal:4318")
    env_http = otlp_exporter(None, None, None)
    assert isinstance(env_http, HttpExporter)
    assert env_http._endpoint == "http://collector.internal:4318/v1/traces"  # type: ignore[attr-defined]


def test_the_applications_provider_stays_in_charge() -> None:
    app_exporter = InMemorySpanExporter()
    app_provider = TracerProvider()
    app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    global_before = trace.get_tracer_provider()
    clinotel_exporter = InMemorySpanExporter()

    tel = ct.configure(tracer_provider=app_provider, exporter=clinotel_exporter, batch=False)
    with ct.workflow("triage", site="north"), ct.stage("decide"):
        pass
    tel.shutdown()

    assert trace.get_tracer_provider() is global_before, "the global provider was replaced"
    assert sorted(s.name for s in app_exporter.get_finished_spans()) == ["decide", "workflow triage"]
    assert sorted(s.name for s in clinotel_exporter.get_finished_spans()) == ["decide", "workflow triage"]
    assert app_provider.get_tracer("x").start_span("still-works").is_recording()


def test_the_applications_provider_without_clinotel_export() -> None:
    app_exporter = InMemorySpanExporter()
    app_provider = TracerProvider()
    app_provider.add_span_processor(SimpleSpanProcessor(ct.SanitizingSpanExporter(app_exporter)))
    ct.configure(tracer_provider=app_provider, export=False)
    with ct.workflow("scheduling"):
        pass
    assert [s.name for s in app_exporter.get_finished_spans()] == ["workflow scheduling"]


def test_the_applications_sampler_applies() -> None:
    exporter = InMemorySpanExporter()
    ct.configure(exporter=exporter, batch=False, set_global=False, sampler=ALWAYS_OFF)
    with ct.workflow("triage") as wf:
        assert not wf.span.is_recording()
    assert exporter.get_finished_spans() == ()


def test_sdk_disabled_makes_everything_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    # whatever else is wrong: telemetry switched off never stops the service from starting
    monkeypatch.setenv("CLINOTEL_PSEUDONYM_KEY", "short")
    monkeypatch.setenv("CLINOTEL_MODE", "prod")
    exporter = InMemorySpanExporter()
    ct.configure(exporter=exporter, batch=False, set_global=False)
    with ct.workflow("triage") as wf, ct.stage("decide") as st:
        st.record_decision(source="model", value="ESI-2")
        carrier = wf.enqueue("q")
    assert exporter.get_finished_spans() == ()
    assert isinstance(carrier, dict)


@pytest.mark.parametrize("key", [TEST_PSEUDONYM_KEY, "short", ""])
def test_sdk_disabled_keeps_identifiers_working_in_strict_mode(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """Disabled, a configured key was dropped: strict mode raised for every identifier."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    ct.configure(exporter=InMemorySpanExporter(), batch=False, set_global=False, mode="strict", pseudonym_key=key)
    with ct.workflow("triage", identifier="ENC-1"), ct.stage("decide") as st:
        st.record_decision(source="model", value="ESI-2")


def test_a_resource_key_the_gate_drops_is_dropped_once_at_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key the Kubernetes operator adds (`k8s.container.name`) made the gate copy every span at
    export, 1.22-1.26x the SDK by hand (a 2026-12-07 review): the provider's resource is the
    clean one, so spans leave as they are."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.container.name=triage,patient.mrn=MRN 00123456")
    tel, exporter = _memory(service_name="ed-triage")
    with ct.workflow("triage"):
        pass
    tel.shutdown()
    span = next(s for s in exporter.get_finished_spans() if s.name == "workflow triage")
    assert "patient.mrn" not in span.resource.attributes
    assert span.resource.attributes["service.name"] == "ed-triage"
    assert span.resource is tel.provider.resource, "the span as recorded, not a copy"  # type: ignore[attr-defined]
    assert tel.dropped()["unregistered"] >= 1


def test_configure_installs_the_global_provider_only_when_none_is_set() -> None:
    exporter = InMemorySpanExporter()
    before = trace.get_tracer_provider()
    ct.configure(exporter=exporter, batch=False, set_global=True)
    after = trace.get_tracer_provider()
    if isinstance(before, TracerProvider):
        assert after is before
    else:
        assert isinstance(after, TracerProvider)
