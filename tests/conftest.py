"""Shared fixtures: clinotel configured to export into memory through the real PHI gate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clinotel.instrumentation.testing import CapturedSpans, capture

REPO = Path(__file__).resolve().parent.parent

# The embedded engine and the collector fixtures, shared by the collector and dashboard tests:
# chDB allows one engine path per process, so there is one session engine for all of them.
pytest_plugins = ["tests.collector.fixtures"]


class FakeClock:
    """A nanosecond clock the test moves by hand, so durations are exact."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += int(ms * 1_000_000)


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
