"""Process-wide state: the tracer clinotel writes to, the mode, the pseudonym key, the counters,
and the one refusal policy (strict mode raises, production mode drops, counts and logs once)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from opentelemetry import trace

from clinotel.instrumentation.errors import TelemetryValidationError
from clinotel.semconv import Pseudonymizer, preview
from clinotel.semconv import attributes as A

__all__ = [
    "INSTRUMENTATION_NAME",
    "MAX_TIME_NS",
    "Counters",
    "Mode",
    "Runtime",
    "contain",
    "current",
    "given_time",
    "guarded",
    "install",
    "refuse",
]

logger: Final = logging.getLogger("clinotel")

INSTRUMENTATION_NAME: Final = "clinotel"


class Mode(StrEnum):
    """How clinotel treats telemetry that breaks the rules."""

    STRICT = "strict"
    """Raise TelemetryValidationError: for tests and development."""
    PRODUCTION = "production"
    """Drop what is invalid, count it, log once: telemetry never breaks the workflow."""


class Counters:
    """Thread-safe counts of what clinotel dropped, redacted or contained, by reason (the keys of
    `clinotel.semconv.attributes.HEALTH_COUNTERS`)."""

    REASONS: Final = tuple(A.HEALTH_COUNTERS)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = dict.fromkeys(self.REASONS, 0)
        self._reported = dict.fromkeys(self.REASONS, 0)
        self._changes = 0
        self._reported_changes = 0

    def add(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._total[reason] += n
            self._changes += 1

    def totals(self) -> dict[str, int]:
        """Counts since the process started."""
        with self._lock:
            return dict(self._total)

    def take_unreported(self) -> dict[str, int]:
        """Counts since the previous call, for the health span; zero counts left out."""
        if self._changes == self._reported_changes:  # the usual case, without the lock
            return {}
        with self._lock:
            self._reported_changes = self._changes
            delta = {k: v - self._reported[k] for k, v in self._total.items() if v != self._reported[k]}
            self._reported = dict(self._total)
        return delta


@dataclass(slots=True)
class Runtime:
    """What configure() decided; replaced whole, never mutated, so readers need no lock."""

    tracer: trace.Tracer
    mode: Mode
    pseudonymizer: Pseudonymizer | None = field(default=None, repr=False)
    counters: Counters = field(default_factory=Counters)
    clock: Callable[[], int] | None = None
    """Nanosecond clock for span times; None uses the SDK's own (wall clock). Simulations only."""

    def now(self) -> int:
        """The current time in nanoseconds, on the clock spans use."""
        return self.clock() if self.clock is not None else time.time_ns()

    @property
    def strict(self) -> bool:
        return self.mode is Mode.STRICT


def _mode_from_env() -> Mode:
    raw = os.environ.get("CLINOTEL_MODE", "").strip().lower()
    return Mode.STRICT if raw == Mode.STRICT else Mode.PRODUCTION


# Until configure() runs, spans go to the global tracer provider: OpenTelemetry's no-op one
# when the application installed no SDK, so every call validates and records nothing.
_runtime = Runtime(tracer=trace.get_tracer(INSTRUMENTATION_NAME), mode=_mode_from_env())


def current() -> Runtime:
    """The runtime in force."""
    return _runtime


def install(runtime: Runtime) -> Runtime:
    """Make `runtime` the one in force; returns the previous one."""
    global _runtime
    previous, _runtime = _runtime, runtime
    return previous


_last_logged: dict[str, float] = {}
_LOG_EVERY_S: Final = 60.0


def log_once(kind: str, message: str) -> None:
    """Log `message` as a warning unless one of its `kind` was logged in the last minute."""
    now = time.monotonic()
    if now - _last_logged.get(kind, -_LOG_EVERY_S) >= _LOG_EVERY_S:
        _last_logged[kind] = now
        logger.warning("%s (logged at most once a minute per kind)", message)


def refuse(rt: Runtime, reason: str, message: str) -> None:
    """Telemetry broke a rule: raise in strict mode; otherwise count it under `reason` (one of
    `Counters.REASONS`) and log once."""
    if rt.strict:
        raise TelemetryValidationError(message)
    rt.counters.add(reason)
    log_once(f"refused:{reason}", f"clinotel dropped telemetry: {message}")


MAX_TIME_NS: Final = (1 << 64) - 1
"""The latest time a span can carry: OTLP holds times as unsigned 64-bit nanoseconds (year 2554)."""


def given_time(rt: Runtime, value: object, argument: str) -> int | None:
    """A time a caller gave for a span (`argument` names it), if it is one OTLP can carry:
    nanoseconds since the epoch, an int from 0 to `MAX_TIME_NS`. Anything else is refused
    (strict mode raises) and None returned: a float (seconds, from `time.time()`) or a negative
    number made the encoding of the whole batch that span left in fail."""
    if type(value) is int and 0 <= value <= MAX_TIME_NS:
        return value
    given = "an int outside that range" if type(value) is int else preview(value)
    refuse(rt, "invalid", f"{argument} is nanoseconds since the epoch, an int from 0 to 2**64 - 1; not {given}")
    return None


def contain(rt: Runtime, exc: BaseException) -> None:
    """An unexpected error inside clinotel: re-raise in strict mode, else count and log once."""
    if rt.strict or not isinstance(exc, Exception):
        raise exc
    rt.counters.add("internal_errors")
    log_once(f"internal:{type(exc).__name__}", f"clinotel contained an internal error: {type(exc).__name__}")


def guarded(rt: Runtime, fn: Callable[..., object], *args: Any) -> None:
    """Run clinotel's own work for a public call: refusals raise as they should (strict mode);
    any other error is contained, so telemetry never breaks the workflow."""
    try:
        fn(*args)
    except TelemetryValidationError:
        raise
    except Exception as e:  # noqa: BLE001 - telemetry must not break the workflow
        contain(rt, e)
