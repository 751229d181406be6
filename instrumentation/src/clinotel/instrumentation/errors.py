"""The exceptions clinotel raises.

    ClinotelError
    ├── ConfigurationError          configure() was given something it cannot use, or the
    │                               `sdk` extra it needs is not installed
    └── TelemetryValidationError    strict mode: an attribute, name or carrier broke the rules

In production mode only ConfigurationError is ever raised (from configure() itself); everything
else is dropped, counted and logged once, so telemetry never breaks the clinical code it observes.
"""

from __future__ import annotations

__all__ = ["ClinotelError", "ConfigurationError", "TelemetryValidationError"]


class ClinotelError(Exception):
    """Root of clinotel's exceptions."""


class ConfigurationError(ClinotelError, ValueError):
    """A configuration value clinotel cannot use."""


class TelemetryValidationError(ClinotelError, ValueError):
    """Strict mode: telemetry that production mode would have dropped.

    The message names the attribute and the rule; it never repeats a value that looks like PHI.
    """
