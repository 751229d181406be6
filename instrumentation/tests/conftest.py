"""Fixtures of the instrumentation tests: clinotel configured to export into memory through the
real PHI gate. These tests need clinotel-instrumentation[sdk] and the test tools only: nothing
from the collector, the dashboards or the alerts, and no chDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clinotel.instrumentation.testing import CapturedSpans, FakeClock, capture, isolated


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    """Whatever a test's configure() calls install is undone after it."""
    with isolated():
        yield


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spans(clock: FakeClock) -> Iterator[CapturedSpans]:
    """Strict mode, simulated clock."""
    with capture(clock=clock) as captured:
        yield captured


@pytest.fixture
def production_spans() -> Iterator[CapturedSpans]:
    """Production mode: invalid telemetry is dropped and counted, never raised."""
    with capture(mode="production") as captured:
        yield captured
