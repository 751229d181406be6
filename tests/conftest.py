"""Shared by the suite under tests/: the repository root and the collector fixtures."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The embedded engine and the collector fixtures, shared by the collector and dashboard tests:
# chDB allows one engine path per process, so there is one session engine for all of them.
pytest_plugins = ["tests.collector.fixtures"]
