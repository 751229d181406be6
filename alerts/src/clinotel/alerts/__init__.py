"""clinotel's alert rules as code: loaded from YAML, evaluated against the clinical views with the
dashboards' metric definitions, audited in ClickHouse and paged."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["default_rules_path"]


def default_rules_path() -> Path:
    """The default rule pack shipped with clinotel-alerts."""
    return Path(str(resources.files("clinotel.alerts").joinpath("default-rules.yaml")))
