"""The dashboards tests share the collector fixtures: the embedded engine (one per process)."""

pytest_plugins = ["collector.tests.fixtures"]
