"""A clock a test moves by hand, so span durations are exact."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """A nanosecond clock the test moves by hand: pass it as `capture(clock=...)` (or
    `configure(clock=...)`) and durations are exactly what the test advanced."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance_ms(self, ms: float) -> None:
        """Move the clock on by `ms` milliseconds."""
        self.now += int(ms * 1_000_000)
