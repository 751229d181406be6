"""The demo hospital's feature flags as an OpenFeature flagd flag-definition file: model v4 on at
the canary site, off elsewhere. The canary kill rule's `disable_flag` action rewrites it. And the
flag's entry in the inventory (flags.yaml), which the rollout dashboard's flags panel reads."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Final

from clinotel.demo.scenario import CANARY_SITE, FLAG_KEY, TENANT

__all__ = ["FLAGD_FILE", "INVENTORY_FILE", "write_flagd_file", "write_inventory"]

FLAGD_FILE: Final = "flags.flagd.json"
"""Its name in the demo's output directory."""
INVENTORY_FILE: Final = "flags.yaml"


def write_inventory(path: Path, today: date) -> Path:
    """Write the demo's flag inventory to `path`: the canary flag, created a month before `today`,
    expiring three months after, guarded by the canary kill rule."""
    created, expiry = today - timedelta(days=30), today + timedelta(days=90)
    path.write_text(
        f"flags:\n  - key: {FLAG_KEY}\n    owner: triage-ml-team\n    created: {created.isoformat()}\n"
        f"    expiry: {expiry.isoformat()}\n"
        f"    exposure: {{tenant: {TENANT}, site: {CANARY_SITE}, workflow_step: decide}}\n"
        "    kill_criteria: [canary_kill_under_triage]\n"
        "    retirement: full rollout for 30 days without a kill criterion firing\n",
        encoding="utf-8",
    )
    return path


def write_flagd_file(path: Path) -> Path:
    """Write the demo's flag definitions (flagd's schema) to `path`."""
    flags = {
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "flags": {
            FLAG_KEY: {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": {"if": [{"==": [{"var": "site"}, CANARY_SITE]}, "on", None]},
            }
        },
    }
    path.write_text(json.dumps(flags, indent=2) + "\n", encoding="utf-8")
    return path
