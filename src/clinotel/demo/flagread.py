"""How the demo's triage services read the canary flag: the real OpenFeature SDK with the flagd
provider in file mode on the demo's flagd flag-definition file, as a hospital service would. The
provider re-reads the file when it changes, so a kill switch that rewrites it is followed without
a restart."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["FlagReader", "FlagResult"]

PROVIDER: Final = "flagd"
"""The provider's name as telemetry records it (`feature_flag.provider.name`)."""
_STEP_S: Final = 0.01


@dataclass(frozen=True, slots=True)
class FlagResult:
    """One evaluation: the variant served, its value and why (OpenFeature's reason, lower case as
    OpenTelemetry's `feature_flag.result.reason` spells it)."""

    variant: str | None
    value: bool
    reason: str


class FlagReader:
    """A boolean flag evaluated through OpenFeature's flagd provider reading `path` (file mode),
    every evaluation's context naming `tenant`: a kill switch is made for the tenant whose alert
    fired, and a service that names its tenant follows only its own tenant's switches."""

    def __init__(self, path: Path, key: str, tenant: str | None = None) -> None:
        from openfeature import api
        from openfeature.contrib.provider.flagd import FlagdProvider
        from openfeature.contrib.provider.flagd.config import ResolverType

        self.key = key
        self.tenant = tenant
        self._provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path))
        api.set_provider(self._provider, domain=f"clinotel-demo:{key}")
        self._client: Any = api.get_client(domain=f"clinotel-demo:{key}")

    def evaluate(self, context: dict[str, str]) -> FlagResult:
        """The flag for an evaluation context (`site`, `workflow_kind`: the scope keys of rules)."""
        from openfeature.evaluation_context import EvaluationContext

        attributes = dict(context) if self.tenant is None else {**context, "tenant": self.tenant}
        details = self._client.get_boolean_details(self.key, False, EvaluationContext(attributes=attributes))
        reason = str(getattr(details.reason, "value", details.reason) or "unknown").lower()
        return FlagResult(None if details.variant is None else str(details.variant), bool(details.value), reason)

    def ready(self, context: dict[str, str], timeout_s: float = 30.0) -> FlagResult:
        """The first evaluation once the provider has read the file (it starts in the background);
        RuntimeError when it has not within `timeout_s`."""
        return self.wait(context, lambda r: r.variant is not None, timeout_s)

    def wait(self, context: dict[str, str], done: Any, timeout_s: float = 30.0) -> FlagResult:
        """Evaluate until `done(result)` holds (a switch followed); RuntimeError after `timeout_s`."""
        started = time.monotonic()
        while True:
            result = self.evaluate(context)
            if done(result):
                return result
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"flag {self.key}: no such evaluation within {timeout_s:g} s (last {result})")
            time.sleep(_STEP_S)

    def close(self) -> None:
        self._provider.shutdown()
