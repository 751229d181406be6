"""clinotel's Grafana dashboards, generated with grafanalib for the ClickHouse datasource.

Every panel is ClickHouse SQL over the clinical views, built from the indicators shared with the
alerts (`clinotel.collector.indicators`), with template variables for tenant, workflow kind,
site, department, model version and rollout cohort.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, Final

from clinotel.dashboards import efficiency, fairness, health, operations, quality, rollout, safety, trust
from clinotel.model.tables import DEFAULT_DATABASE

__all__ = ["DASHBOARDS", "build_all"]

DASHBOARDS: Final[dict[str, Callable[[str], dict[str, Any]]]] = {
    "operations": operations.build,
    "safety": safety.build,
    "fairness": fairness.build,
    "rollout": rollout.build,
    "trust": trust.build,
    "health": health.build,
    "quality": quality.build,
    "efficiency": efficiency.build,
}
"""Each dashboard's builder, by file name."""


def build_all(database: str = DEFAULT_DATABASE, flags: Iterable[tuple[str, date]] = ()) -> dict[str, dict[str, Any]]:
    """Every dashboard's JSON, by file name; `flags`: the flag inventory's (key, expiry), for the
    rollout dashboard's flags panel."""
    listed = tuple(flags)
    return {
        name: rollout.build(database, listed) if build is rollout.build else build(database)
        for name, build in DASHBOARDS.items()
    }
