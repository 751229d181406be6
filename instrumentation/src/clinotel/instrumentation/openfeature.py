"""An OpenFeature hook that records flag evaluations on the current clinotel stage.

    from openfeature import api
    from clinotel.instrumentation.openfeature import ClinotelFlagHook

    api.add_hooks([ClinotelFlagHook()])

Records `feature_flag.key`, `feature_flag.result.variant`, `feature_flag.provider.name` and
`feature_flag.result.reason`. Unlike the generic OpenTelemetry hook it never records the flag's
value or any part of the evaluation context, which may identify a patient. Needs the
`openfeature` extra (from a checkout: `pip install "./instrumentation[openfeature]"`).
"""

from __future__ import annotations

from typing import Any

from openfeature.flag_evaluation import FlagEvaluationDetails
from openfeature.hook import Hook, HookContext, HookHints

from clinotel.instrumentation import record_flag

__all__ = ["ClinotelFlagHook"]


class ClinotelFlagHook(Hook):
    """Record each flag evaluation with OpenTelemetry's feature-flag keys, never its context."""

    def after(self, hook_context: HookContext, details: FlagEvaluationDetails[Any], hints: HookHints) -> None:
        reason = details.reason.lower() if isinstance(details.reason, str) else None
        record_flag(details.flag_key, details.variant, provider=_provider(hook_context), reason=reason)

    def error(self, hook_context: HookContext, exception: Exception, hints: HookHints) -> None:
        record_flag(hook_context.flag_key, None, provider=_provider(hook_context), reason="error")


def _provider(hook_context: HookContext) -> str | None:
    meta = hook_context.provider_metadata
    return meta.name if meta is not None else None
