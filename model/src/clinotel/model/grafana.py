"""The ClickHouse datasource clinotel provisions in Grafana, as every generated file names it: the
dashboards' panels and datasource file (clinotel-dashboards) and the exported alert rules
(clinotel-alerts). One home for both, importable without grafanalib."""

from __future__ import annotations

from typing import Final

__all__ = ["DATASOURCE", "DATASOURCE_UID", "PLUGIN_TYPE", "PLUGIN_VERSION"]

PLUGIN_TYPE: Final = "grafana-clickhouse-datasource"
PLUGIN_VERSION: Final = "4.20.0"
"""The plugin version queries are saved as (and the compose stack installs)."""
DATASOURCE_UID: Final = "clinotel-clickhouse"
DATASOURCE: Final = {"type": PLUGIN_TYPE, "uid": DATASOURCE_UID}
"""A query's `datasource` reference (copy it: the dict is shared)."""
