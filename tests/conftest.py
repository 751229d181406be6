"""Shared by every test folder: the repository root."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

# The embedded engine and the collector fixtures (chDB allows one engine path per process: one
# session engine serves every folder of tests).
pytest_plugins = ["collector.tests.fixtures"]

REPO = Path(__file__).resolve().parent.parent

HEAVIEST_FIRST: Final = (
    "tests/test_demo.py",
    "collector/tests/test_workflow_hours.py",
    "dashboards/tests/test_signal_rollup.py",
    "dashboards/tests/test_report.py",
    "collector/tests/test_side_by_side.py",
    "alerts/tests/test_grafana_parity.py",
    "collector/tests/test_engine_memory.py",
    "alerts/tests/test_cron.py",
)
"""The test files that take longest (the demo's three demos, 3-4 minutes), run first: `make test`
hands files to its two workers in the order collected (`--dist loadfile --no-loadscope-reorder`;
xdist's own order, by number of tests, started the demo's file last, on one worker while the other
had nothing left). Only the order changes, never what runs."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of a `HEAVIEST_FIRST` file before the rest, in that order; the rest as collected."""
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}

    def key(item: pytest.Item) -> int:
        try:
            name = item.path.relative_to(REPO).as_posix()
        except ValueError:
            return len(rank)
        return rank.get(name, len(rank))

    items.sort(key=key)
