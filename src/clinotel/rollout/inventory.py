"""The flag inventory, `flags.yaml`: every clinical flag with an owner, an expiry, where it is
exposed, the kill criteria that guard it (alert rule names) and when it retires.

    flags:
      - key: triage-model-v4
        owner: triage-ml-team
        created: 2026-01-10
        expiry: 2026-06-30
        exposure: {tenant: demo-health, site: north, workflow_step: decide}
        kill_criteria: [canary_kill_under_triage]
        retirement: full rollout for 30 days without a kill criterion firing
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clinotel.model.files import ConfigTooLargeError, read_config

__all__ = ["EXPOSURE_KEYS", "Exposure", "Flag", "Inventory", "InventoryError", "Problem", "check", "load"]

_LABEL: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:/+-]{0,63}$"
EXPOSURE_KEYS: Final = ("tenant", "site", "department", "provider_group", "shift", "workflow_step")


class InventoryError(ValueError):
    """A flags file that cannot be read: where and why, one mistake a line."""


class Exposure(BaseModel):
    """Where a flag may be on; an empty field means no limit on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tenant: str | None = Field(default=None, pattern=_LABEL)
    site: str | None = Field(default=None, pattern=_LABEL)
    department: str | None = Field(default=None, pattern=_LABEL)
    provider_group: str | None = Field(default=None, pattern=_LABEL)
    shift: str | None = Field(default=None, pattern=_LABEL)
    workflow_step: str | None = Field(default=None, pattern=_LABEL)


class Flag(BaseModel):
    """One flag of the inventory."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str = Field(pattern=_LABEL)
    owner: str = Field(default="", pattern=r"^$|^[a-z][a-z0-9_.-]{1,62}$")
    """A team (never a person)."""
    created: date
    expiry: date
    exposure: Exposure = Exposure()
    kill_criteria: tuple[str, ...] = ()
    """The alert rules that guard it (their `disable_flag` action turns it off)."""
    retirement: str = Field(default="", max_length=500)


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    flags: tuple[Flag, ...]


@dataclass(frozen=True)
class Problem:
    """One finding of `check`: the flag and what is wrong."""

    flag: str
    message: str

    def __str__(self) -> str:
        return f"{self.flag}: {self.message}"


def load(path: Path) -> Inventory:
    """Read and check `path`; InventoryError names the file and every mistake."""
    try:
        text = read_config(path)
    except OSError as e:
        raise InventoryError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InventoryError(f"{path}: not a text file (UTF-8)") from None
    except ConfigTooLargeError as e:
        raise InventoryError(f"{path}: {e}") from None
    try:
        data: Any = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, OverflowError) as e:  # ValueError: a date such as 2026-13-45
        raise InventoryError(f"{path}: not valid YAML: {(str(e).splitlines() or [type(e).__name__])[0]}") from None
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as e:
        lines = [f"{path}: {'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}" for err in e.errors()]
        raise InventoryError("\n".join(lines)) from None
    keys = [f.key for f in inventory.flags]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise InventoryError(f"{path}: flags listed twice: {', '.join(twice)}")
    return inventory


def check(
    inventory: Inventory,
    today: date,
    rules: Iterable[str] | None = None,
    evaluated: Mapping[str, datetime] | None = None,
    stale_days: int = 14,
    now: datetime | None = None,
) -> list[Problem]:
    """What CI should refuse: an expired flag, one without an owner or kill criteria, a kill
    criterion that is not a rule (`rules`: the rule pack's names); with `evaluated` (flag key ->
    last evaluation seen in telemetry): a flag evaluated but not in the inventory, and one in the
    inventory not evaluated for `stale_days`."""
    known_rules = set(rules) if rules is not None else None
    problems = []
    for f in inventory.flags:
        if f.expiry < today:
            live = evaluated is not None and f.key in evaluated
            problems.append(Problem(f.key, f"expired on {f.expiry}" + (" and still evaluated" if live else "")))
        if not f.owner:
            problems.append(Problem(f.key, "has no owner (a team)"))
        if not f.kill_criteria:
            problems.append(Problem(f.key, "has no kill criteria (alert rule names)"))
        for rule in f.kill_criteria:
            if known_rules is not None and rule not in known_rules:
                problems.append(Problem(f.key, f"kill criterion {rule!r} is not an alert rule"))
    if evaluated is not None:
        listed = {f.key for f in inventory.flags}
        for key in sorted(set(evaluated) - listed):
            problems.append(Problem(key, "is evaluated in telemetry but not in the inventory"))
        for f in inventory.flags:
            last = evaluated.get(f.key)
            if now is not None and (last is None or (now - last).days >= stale_days):
                seen = f"last on {last:%Y-%m-%d}" if last else "never seen"
                problems.append(Problem(f.key, f"not evaluated for {stale_days} days ({seen}): retire it"))
    return problems
