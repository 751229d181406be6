"""Dashboard annotations: every change event (`clinotel.change` spans) drawn on every time-series
panel, through the ClickHouse plugin's annotation query (a SQL target whose rows give `time`,
`title`, `text` and `tags`)."""

from __future__ import annotations

from typing import Any, Final

from clinotel.model.changes import annotation_sql
from clinotel.model.grafana import DATASOURCE, PLUGIN_VERSION

__all__ = ["CHANGES_NAME", "changes_annotation"]

CHANGES_NAME: Final = "Changes"


def changes_annotation(database: str) -> dict[str, Any]:
    """The 'Changes' annotation of a dashboard, filtered by its tenant, site, department and kind."""
    return {
        "name": CHANGES_NAME,
        "enable": True,
        "hide": False,
        "iconColor": "orange",
        "datasource": dict(DATASOURCE),
        "target": {
            "refId": "annotation",
            "datasource": dict(DATASOURCE),
            "pluginVersion": PLUGIN_VERSION,
            "editorType": "sql",
            "queryType": "table",
            "format": 1,
            "rawSql": annotation_sql(database),
        },
    }
