"""Grafana's provisioning layout: the dashboards' JSON, the ClickHouse datasource and the
dashboard provider, ready to mount at /etc/grafana/provisioning and /var/lib/grafana/dashboards.

    OUT/provisioning/datasources/clinotel-clickhouse.yaml
    OUT/provisioning/dashboards/clinotel.yaml
    OUT/dashboards/clinotel/<name>.json
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from clinotel.dashboards import build_all
from clinotel.model.grafana import DATASOURCE_UID, PLUGIN_TYPE
from clinotel.model.tables import DEFAULT_DATABASE

__all__ = ["DatasourceOptions", "write"]

DASHBOARDS_PATH = "/var/lib/grafana/dashboards/clinotel"


@dataclass(frozen=True)
class DatasourceOptions:
    """Where Grafana finds ClickHouse (or a clinotel collector's --http port)."""

    url: str = "http://clickhouse:8123"
    database: str = DEFAULT_DATABASE
    username: str = "grafana_reader"
    password_env: str = "CLINOTEL_GRAFANA_READ_TOKEN"


def datasource(o: DatasourceOptions) -> dict[str, Any]:
    parts = urlsplit(o.url)
    secure = parts.scheme == "https"
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "clinotel ClickHouse",
                "type": PLUGIN_TYPE,
                "uid": DATASOURCE_UID,
                "editable": False,
                "jsonData": {
                    "host": parts.hostname or "localhost",
                    "port": parts.port or (8443 if secure else 8123),
                    "protocol": "http",
                    "secure": secure,
                    "username": o.username,
                    "defaultDatabase": o.database,
                    "traces": {
                        "defaultDatabase": o.database,
                        "defaultTable": "otel_traces",
                        "otelEnabled": True,
                        "otelVersion": "latest",
                    },
                },
                "secureJsonData": {"password": f"${{{o.password_env}}}"},
            }
        ],
    }


def provider() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "clinotel",
                "folder": "clinotel",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": DASHBOARDS_PATH, "foldersFromFilesStructure": False},
            }
        ],
    }


def write(out: Path, o: DatasourceOptions | None = None, flags: Iterable[tuple[str, date]] = ()) -> list[Path]:
    """Write every dashboard and the provisioning files under `out`; returns the paths written.
    `flags`: the flag inventory's (key, expiry), for the rollout dashboard's flags panel."""
    o = o or DatasourceOptions()
    written = []
    boards = out / "dashboards" / "clinotel"
    boards.mkdir(parents=True, exist_ok=True)
    for name, data in build_all(o.database, flags).items():
        path = boards / f"{name}.json"
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    for path, content in (
        (out / "provisioning" / "datasources" / "clinotel-clickhouse.yaml", datasource(o)),
        (out / "provisioning" / "dashboards" / "clinotel.yaml", provider()),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
        written.append(path)
    return written
