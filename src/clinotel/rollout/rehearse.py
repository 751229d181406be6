"""The kill-switch rehearsal: fire a rule's `disable_flag` action on a copy of a flagd
flag-definition file, with the real OpenFeature flagd provider (file mode, in this process)
watching the copy as a service would, and measure how long until evaluations in the action's
scope follow. The file itself is never touched."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from clinotel.alerts.actions import DisableFlag, FlagdFile
from clinotel.model.files import read_config

__all__ = ["Rehearsal", "RehearsalError", "rehearse"]

_STEP_S: Final = 0.01


class RehearsalError(RuntimeError):
    """The rehearsal could not run: the file, the flag or the provider; one line."""


@dataclass(frozen=True)
class Rehearsal:
    """What the rehearsal saw: the variant in the scope before and after, the switch's outcome,
    how long evaluations took to follow (None: not within the timeout), and outside the scope."""

    action: DisableFlag
    before: str | None
    after: str | None
    outcome: str
    follow_ms: float | None
    recheck_ms: int
    """How often the provider checks the file: in openfeature-provider-flagd 0.6 the file watcher
    sleeps its `deadline_ms` (FLAGD_DEADLINE_MS, 500 ms by default) between checks."""
    outside_before: str | None
    outside_after: str | None

    @property
    def followed(self) -> bool:
        return self.follow_ms is not None


def _variant(client: Any, key: str, default: Any, scope: dict[str, str]) -> str | None:
    from openfeature.evaluation_context import EvaluationContext

    context = EvaluationContext(attributes=dict(scope))
    if isinstance(default, bool):
        details = client.get_boolean_details(key, default, context)
    elif isinstance(default, str):
        details = client.get_string_details(key, default, context)
    elif isinstance(default, int | float):
        details = client.get_float_details(key, float(default), context)
    else:
        details = client.get_object_details(key, default, context)
    return str(details.variant) if details.variant is not None else None


def _ready(client: Any, action: DisableFlag, default: Any, timeout_s: float) -> str:
    """The variant in the scope once the provider has read the file (it starts in the background)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        variant = _variant(client, action.key, default, action.scope)
        if variant is not None:
            return variant
        time.sleep(_STEP_S)
    raise RehearsalError(f"the flagd provider did not read the file within {timeout_s:g} s")


@contextmanager
def _provider(path: Path) -> Iterator[tuple[Any, int]]:
    """The flagd provider in file mode on `path`, configured from the environment as a service's
    would be (FLAGD_* variables); yields (client, how often it re-checks the file in ms)."""
    from openfeature import api
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType

    try:
        provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path))
    except (ValueError, TypeError, AttributeError) as e:  # a FLAGD_* variable it cannot use
        raise RehearsalError(f"the flagd provider cannot start (check the FLAGD_* environment): {e}") from None
    try:
        api.set_provider(provider)
        yield api.get_client(), int(provider.config.deadline_ms)
    finally:
        api.shutdown()


def rehearse(flagd_file: Path, action: DisableFlag, rule: str, *, timeout_s: float = 30.0) -> Rehearsal:
    """Rehearse `action` (of rule `rule`) on a copy of `flagd_file`; RehearsalError when it
    cannot run."""
    try:
        data = json.loads(read_config(flagd_file))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise RehearsalError(f"cannot read {flagd_file}: {getattr(e, 'strerror', None) or e}") from None
    flags = data.get("flags") if isinstance(data, dict) else None
    flag = flags.get(action.key) if isinstance(flags, dict) else None
    if not isinstance(flag, dict) or not isinstance(flag.get("variants"), dict):
        raise RehearsalError(f"{flagd_file} has no flag {action.key!r} with variants")
    if action.variant not in flag["variants"]:
        raise RehearsalError(f"flag {action.key!r} has no variant {action.variant!r}")
    default = flag["variants"][action.variant]
    with tempfile.TemporaryDirectory(prefix="clinotel-rehearse-") as tmp:
        copy = Path(tmp) / "flags.flagd.json"
        shutil.copyfile(flagd_file, copy)
        with _provider(copy) as (client, recheck_ms):
            before = _ready(client, action, default, timeout_s)
            outside_before = _variant(client, action.key, default, {})
            outcome = FlagdFile(copy).disable(action, rule, dry_run=False)
            if outcome.result == "failed":
                raise RehearsalError(outcome.detail)
            switched = time.monotonic()
            follow_ms = None
            after: str | None = before
            while time.monotonic() - switched < timeout_s:
                after = _variant(client, action.key, default, action.scope)
                if after == action.variant:
                    follow_ms = (time.monotonic() - switched) * 1000
                    break
                time.sleep(_STEP_S)
            outside_after = _variant(client, action.key, default, {})
    return Rehearsal(action, before, after, outcome.result, follow_ms, recheck_ms, outside_before, outside_after)
