"""Kill-switch actions: what a firing rule switches off, and the switches that do it.

    - name: canary_kill_under_triage
      ...
      action:
        disable_flag: {key: triage-model-v4, scope: {site: north}, variant: "off"}

`FlagdFile` rewrites an OpenFeature flagd flag-definition file (flagd's published schema,
`https://flagd.dev/schema/v0/flags.json`): the flag's targeting becomes "this scope gets `variant`,
everyone else what they got before", and services using the flagd provider in file mode pick it up
without a restart. The file is replaced atomically, so a reader never sees half of it. `Webhook`
posts the same request to another flag system. With `dry_run` nothing is changed and the result
says what would have been. Scope keys are evaluation-context keys the services pass (`site`,
`department`, `workflow_kind`, …).

A switch is made for the tenant whose alert fired: the condition also asks that an evaluation's
`tenant` be that tenant's, or absent. One collector's tenants share its rules, and until December
one tenant's spans could switch a flag off for every tenant's services at a site of the same name;
services that pass `tenant` in their evaluation context now follow only their own tenant's alerts.
An action's `tenant` limits it to that tenant's alerts (another's firing is audited as skipped).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field

from clinotel.model.files import read_config

__all__ = [
    "DRY_RUN",
    "ChangeRecorder",
    "DisableFlag",
    "FlagSwitch",
    "FlagdFile",
    "Outcome",
    "RuleAction",
    "Webhook",
    "scope_condition",
]

DRY_RUN: Final = "dry_run"
_KEY: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:/+-]{0,63}$"
_MARK: Final = "clinotelKilledBy"
"""Flag metadata naming the rule that switched the flag off (flagd metadata: string values)."""


class DisableFlag(BaseModel):
    """Serve `variant` to `scope` (every evaluation when empty) for flag `key`; with `tenant`,
    only to evaluations of that tenant (or without one), and only on that tenant's alerts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str = Field(pattern=_KEY)
    scope: dict[str, str] = Field(default_factory=dict)
    variant: str = Field(default="off", pattern=_KEY)
    tenant: str | None = Field(default=None, pattern=_KEY)

    def model_post_init(self, context: Any, /) -> None:
        for k, v in self.scope.items():
            if not _valid(k, r"^[a-z][a-z0-9_]{0,47}$") or not _valid(v, _KEY):
                raise ValueError(f"scope keys are lower-case codes and values labels, not {k!r}: {v!r}")

    def describe(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in sorted(self.scope.items())) or "everywhere"
        return f"flag {self.key} -> {self.variant} ({where}" + (f"; tenant {self.tenant})" if self.tenant else ")")

    def for_tenant(self, tenant: str) -> DisableFlag | None:
        """This switch as made for an alert of `tenant` ('' when the alert has none); None when it
        is limited to another tenant."""
        if self.tenant is not None and tenant != self.tenant:
            return None
        return self.model_copy(update={"tenant": tenant or None})


class RuleAction(BaseModel):
    """What a rule does when it starts firing, besides notifying."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    disable_flag: DisableFlag


@dataclass(frozen=True)
class Outcome:
    """What a switch did: `applied`, `unchanged` (already off there), `dry_run` or `failed`."""

    result: str
    detail: str


ChangeRecorder = Callable[[DisableFlag, str, Outcome, datetime, str], None]
"""Records a kill-switch action as a change event: (action, rule name, outcome, when, the firing
alert's tenant, '' when it has none)."""


class FlagSwitch(Protocol):
    """Turns a flag off for a scope."""

    name: str

    def disable(self, action: DisableFlag, rule: str, dry_run: bool) -> Outcome: ...


def _valid(text: str, pattern: str) -> bool:
    import re

    return re.fullmatch(pattern, text) is not None


def scope_condition(scope: dict[str, str], tenant: str | None = None) -> Any:
    """The JsonLogic condition that holds for evaluations in `scope` (`true` for every one) and,
    with `tenant`, whose `tenant` is exactly that one (the same case) or is not given."""
    terms: list[Any] = [{"==": [{"var": k}, v]} for k, v in sorted(scope.items())]
    if tenant:
        # strictly equal, or missing (absent, null or ""): `!` held for 0 and false too, and `==`
        # for ["acme"] (re-review)
        terms.append({"or": [{"===": [{"var": "tenant"}, tenant]}, {"missing": ["tenant"]}]})
    if not terms:
        return True
    return terms[0] if len(terms) == 1 else {"and": terms}


class FlagdFile:
    """Rewrites a flagd flag-definition file (JSON) in place, atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"flagd:{path.name}"

    def disable(self, action: DisableFlag, rule: str, dry_run: bool) -> Outcome:
        if dry_run:  # reads need no lock (the file is replaced by rename); a dry run creates nothing
            return self._disable(action, rule, dry_run)
        try:
            with _locked(self.path):
                return self._disable(action, rule, dry_run)
        except OSError as e:
            return Outcome("failed", f"cannot lock {self.path}: {e.strerror or e}")

    def _disable(self, action: DisableFlag, rule: str, dry_run: bool) -> Outcome:
        try:
            data = json.loads(read_config(self.path))
        except (OSError, ValueError) as e:
            return Outcome("failed", f"cannot read {self.path}: {getattr(e, 'strerror', None) or e}")
        flags = data.get("flags") if isinstance(data, dict) else None
        flag = flags.get(action.key) if isinstance(flags, dict) else None
        if not isinstance(flag, dict):
            return Outcome("failed", f"{self.path} has no flag {action.key!r}")
        variants = flag.get("variants")
        if not isinstance(variants, dict) or action.variant not in variants:
            return Outcome("failed", f"flag {action.key!r} has no variant {action.variant!r}")
        old = flag.get("targeting") or None
        metadata = flag.get("metadata") or {}
        if not isinstance(old, dict | None) or (old is not None and not isinstance(old.get("if", []), list)):
            return Outcome("failed", f"flag {action.key!r} in {self.path.name} has targeting that is not JsonLogic")
        if not isinstance(metadata, dict):
            return Outcome("failed", f"flag {action.key!r} in {self.path.name} has metadata that is not an object")
        condition = scope_condition(action.scope, action.tenant)
        if old is not None and old.get("if", [])[:2] == [condition, action.variant]:
            return Outcome("unchanged", f"{action.describe()} already in {self.path.name}")
        if dry_run:
            return Outcome(DRY_RUN, f"would set {action.describe()} in {self.path.name}")
        flag["targeting"] = {"if": [condition, action.variant, old]}
        flag["metadata"] = {**metadata, _MARK: rule}
        try:
            _replace(self.path, json.dumps(data, indent=2) + "\n")
        except OSError as e:
            return Outcome("failed", f"cannot write {self.path}: {e.strerror or e}")
        return Outcome("applied", f"{action.describe()} in {self.path.name}")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the flagd file's lock (a `.<name>.lock` file beside it) for one read-modify-write:
    two evaluators switching flags in one file at once would otherwise each write back what they
    read, and the first one's switch would be lost. The lock file is never replaced, so both
    lock the same inode."""
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _replace(path: Path, text: str) -> None:
    """Write `text` to `path` by rename (readers see the old file or the new one), with a newer
    modification time than the old file's (file watchers compare it)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if before and os.stat(tmp).st_mtime_ns <= before:
            os.utime(tmp, ns=(before + 1_000_000, before + 1_000_000))
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Webhook:
    """Posts `{flag, scope, variant, rule}` to another flag system's endpoint."""

    def __init__(self, url: str, http: httpx.Client | None = None, timeout_s: float | None = None) -> None:
        from clinotel.alerts.sinks import DEFAULT_TIMEOUT_S

        self.url = url
        self.http = http
        self.timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        self.name = "flag-webhook"

    def disable(self, action: DisableFlag, rule: str, dry_run: bool) -> Outcome:
        from clinotel.alerts.sinks import post, shown

        if dry_run:
            return Outcome(DRY_RUN, f"would ask {shown(self.url)} for {action.describe()}")
        payload = {"flag": action.key, "scope": action.scope, "variant": action.variant, "rule": rule,
                   "tenant": action.tenant}  # fmt: skip
        try:
            post(self.http, self.url, payload, timeout_s=self.timeout_s)
        except RuntimeError as e:
            return Outcome("failed", str(e))
        return Outcome("applied", f"{action.describe()} through {shown(self.url)}")
