"""The OpenFeature hook records flag evaluations with OpenTelemetry's keys and nothing else."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

import clinotel.instrumentation as ct
from clinotel.instrumentation.openfeature import ClinotelFlagHook
from clinotel.instrumentation.testing import CapturedSpans
from clinotel.semconv import attributes as A


@pytest.fixture
def flags() -> Iterator[None]:
    provider = InMemoryProvider(
        {"triage-model-v4": InMemoryFlag("off", {"on": True, "off": False}, context_evaluator=_by_site)}
    )
    api.set_provider(provider)
    api.add_hooks([ClinotelFlagHook()])
    yield
    api.clear_hooks()
    api.clear_providers()


def _by_site(flag: InMemoryFlag, ctx: EvaluationContext) -> object:
    from openfeature.flag_evaluation import FlagResolutionDetails, Reason

    variant = "on" if ctx.attributes.get("site") == "north" else "off"
    return FlagResolutionDetails(value=flag.variants[variant], variant=variant, reason=Reason.TARGETING_MATCH)


def test_flag_evaluations_are_recorded_without_their_context(spans: CapturedSpans, flags: None) -> None:
    client = api.get_client()
    context = EvaluationContext(targeting_key="MRN00123456", attributes={"site": "north", "dob": "1984-03-12"})
    with ct.workflow("triage"), ct.stage("decide"):
        assert client.get_boolean_value("triage-model-v4", False, context) is True
    decide = spans.one("decide")
    assert decide.attributes[A.FEATURE_FLAG_KEY.key] == "triage-model-v4"
    assert decide.attributes[A.FEATURE_FLAG_VARIANT.key] == "on"
    assert decide.attributes[A.FEATURE_FLAG_REASON.key] == "targeting_match"
    assert decide.attributes[A.FEATURE_FLAG_PROVIDER.key] == "In-Memory Provider"
    [event] = decide.events
    assert event.name == "feature_flag.evaluation"
    exported = repr(decide.attributes) + repr(event.attributes)
    assert "MRN00123456" not in exported
    assert "1984" not in exported
    assert "feature_flag.result.value" not in exported


def test_a_failed_evaluation_is_recorded_as_an_error(spans: CapturedSpans, flags: None) -> None:
    with ct.workflow("triage"), ct.stage("decide"):
        assert api.get_client().get_boolean_value("no-such-flag", False) is False
    assert spans.one("decide").attributes[A.FEATURE_FLAG_REASON.key] == "error"
