"""Shared by every test folder: the repository root."""

from __future__ import annotations

from pathlib import Path

# The embedded engine and the collector fixtures (chDB allows one engine path per process: one
# session engine serves every folder of tests).
pytest_plugins = ["collector.tests.fixtures"]

REPO = Path(__file__).resolve().parent.parent
