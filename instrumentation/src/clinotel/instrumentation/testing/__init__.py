"""Test support for services instrumented with clinotel: capture what would be exported.

    from clinotel.instrumentation.testing import capture

    def test_triage_records_a_decision():
        with capture() as spans:
            handle_triage(request)
        decide = spans.one("decide")
        assert decide.attributes["clinical.decision.source"] == "model"

Spans pass through the same PHI gate as in production, so a test sees exactly what would leave
the process. The previous clinotel configuration is restored afterwards; the global tracer
provider is never touched. `clinotel.instrumentation.testing.phi` holds PHI-like values that must
never be exported; `clinotel.instrumentation.testing.workflows` two sample workflows. Needs the
`sdk` extra (from a checkout: `pip install './instrumentation[sdk]'`).
"""

try:
    from clinotel.instrumentation.testing._capture import (
        TEST_PSEUDONYM_KEY,
        CapturedSpans,
        capture,
        isolated,
        span_to_dict,
    )
except ModuleNotFoundError as _missing:  # pragma: no cover - exercised by tests/test_packaging.py
    if not (_missing.name or "").startswith("opentelemetry"):
        raise
    from clinotel.instrumentation._internal.setup import INSTALL_SDK

    raise ImportError(f"{__name__} needs the OpenTelemetry SDK: {INSTALL_SDK}") from _missing
from clinotel.instrumentation.testing._clock import FakeClock

__all__ = ["TEST_PSEUDONYM_KEY", "CapturedSpans", "FakeClock", "capture", "isolated", "span_to_dict"]
