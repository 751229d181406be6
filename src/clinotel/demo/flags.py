"""The demo hospital's feature flags as an OpenFeature flagd flag-definition file: model v4 on at
the canary site, off elsewhere. The canary kill rule's `disable_flag` action rewrites it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from clinotel.demo.scenario import CANARY_SITE, FLAG_KEY

__all__ = ["FLAGD_FILE", "write_flagd_file"]

FLAGD_FILE: Final = "flags.flagd.json"
"""Its name in the demo's output directory."""


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
