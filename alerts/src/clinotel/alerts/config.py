"""The alerting configuration: one model for every place that runs an evaluator (`clinotel alerts
evaluate`, `clinotel serve --rules`, the demo), built by `wiring` into sinks and an evaluator.

The command-line options (`options`) set the fields of the same names; timeouts, retries and the
lease have defaults here and no flag.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from clinotel.alerts.lease import DEFAULT_LEASE_S
from clinotel.alerts.paging import BUDGET_S, check_url
from clinotel.alerts.rules import RUNBOOK_BASE, bounded_duration
from clinotel.alerts.sinks import DEFAULT_DEADLINE_S, DEFAULT_TIMEOUT_S, MIN_EXPIRY_S, PAGERDUTY_URL, ROUTING_KEY_ENV

__all__ = ["ONCE_EVERY_S", "AlertingConfig"]

MIN_LONG_LEASE_S: Final = 60.0
ONCE_EVERY_S: Final = 900
"""`alerts evaluate --once` without `--every`: the runs (cron's) taken to be 15 minutes apart, so
Alertmanager keeps a firing alert an hour without a re-send."""


def _interval(value: object) -> int:
    seconds = bounded_duration(value)
    if seconds <= 0:
        raise ValueError(f"an interval above zero, such as 30s, not {value!r}")
    return seconds


def _sink_name(name: str) -> str:
    if not _SINK_NAME.fullmatch(name):
        raise ValueError(f"a sink name (a-z first, then a-z, 0-9, _ . -), not {name!r}")
    return name


def _runbook_base(url: str) -> str:
    """A base URL the runbooks' paths are appended to: one `/` at its end. No user or password
    (every notification and exported rule carries the link), query or fragment (the path would
    land inside it)."""
    if not _PLAIN_FOLDER_URL.fullmatch(check_url(url)):
        raise ValueError(
            "a runbook base is a plain http(s) URL of a folder (an ASCII host, a path of letters, digits and "
            "- . _ ~ / %): no user or password (every page carries the link), no ; parameters, query or fragment"
        )
    return url.rstrip("/") + "/"


_PLAIN_FOLDER_URL: Final = re.compile(
    r"https?://(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%/-]*)?"
)
"""What `_runbook_base` takes: its host ASCII letters, digits, dots and hyphens (or a bracketed
IPv6 address), an optional port, a path of unreserved characters and escapes; a review found a
percent-encoded `user:pw@`, a `;token=` in the host or path, and a non-ASCII dot in the host
passed the first form."""


_SINK_NAME: Final = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
Url = Annotated[str, AfterValidator(check_url)]
RunbookBase = Annotated[str, AfterValidator(_runbook_base)]
Interval = Annotated[int, BeforeValidator(_interval)]
SinkName = Annotated[str, AfterValidator(_sink_name)]


class AlertingConfig(BaseModel):
    """Where the rules come from, how often they run, and where notifications go.

    Sinks are chosen by name from the `clinotel.alert_sinks` entry-point group (`wiring`): those
    whose settings are given (`alertmanager`, `pagerduty`, `webhook`) and any named in `sinks`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: Path | None = None
    """The rules file; None: the default pack."""
    every: Interval = 30
    """Seconds between evaluations (a duration such as `30s` is accepted)."""
    sinks: tuple[SinkName, ...] = ()
    """Sinks by entry-point name, besides those the settings below select."""
    alertmanager: tuple[Url, ...] = ()
    """Alertmanager API v2 base URLs (each replica of a cluster: Alertmanager deduplicates)."""
    pagerduty: bool = False
    pagerduty_url: Url = PAGERDUTY_URL
    routing_key_env: str = Field(default=ROUTING_KEY_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    """The environment variable holding PagerDuty's routing key (never the key itself)."""
    webhook: tuple[Url, ...] = ()
    runbook_base: RunbookBase = RUNBOOK_BASE
    """Where the runbooks are published: a notification's `runbook_url` is this and the rule's
    `runbook` path (`docs/runbooks/NAME.md`), as in clinotel's repository."""
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0, le=300)
    """Each delivery's connect, read and write timeout."""
    deadline_s: float = Field(default=DEFAULT_DEADLINE_S, gt=0, le=600)
    """The whole of one delivery attempt (the timeouts above bound each read, not the answer)."""
    delivery_budget_s: float = Field(default=BUDGET_S, gt=0, le=3600)
    """No delivery attempt starts this long after a pass began delivering: a sink that hangs delays
    the next pass by this and one attempt's deadline at most (each sink is delivered to on its own);
    what was not tried stays owed."""
    attempts: int = Field(default=3, ge=1, le=10)
    """Tries of one delivery within a pass; one that still fails is owed to the next pass."""
    backoff_s: tuple[Annotated[float, Field(ge=0, le=60)], ...] = Field(default=(0.2, 0.5), min_length=1)
    """Waits between tries: the n-th retry waits `backoff_s[n - 1]` (the last repeated)."""
    lease_s: float | None = Field(default=None, gt=0, le=86_400)
    """How long a pass's claim on the store lasts; None: three intervals, at least a minute
    (`DEFAULT_LEASE_S` for a single pass)."""

    flagd_file: Path | None = None
    """The kill switch: the flagd flag-definition file a rule's `disable_flag` action rewrites."""
    flag_webhook: Url | None = None
    """The kill switch for another flag system: where a `disable_flag` action is posted."""
    dry_run: bool = False
    """Actions say what they would switch off and change nothing."""
    changes_endpoint: Url | None = None
    """The collector's OTLP/HTTP address where each action is recorded as a change event (the
    write token from CLINOTEL_WRITE_TOKEN); None: actions are audited only."""
    changes_hours: float = Field(default=24.0, ge=0, le=24 * 31)
    """Pages and tickets list what changed in their scope in these last hours (0: not at all)."""

    def sink_names(self) -> tuple[str, ...]:
        """Every sink to build, in order: Alertmanager, PagerDuty, the webhook, then `sinks`."""
        implied = [
            name
            for name, given in (
                ("alertmanager", bool(self.alertmanager)),
                ("pagerduty", self.pagerduty),
                ("webhook", bool(self.webhook)),
            )
            if given
        ]
        return tuple(dict.fromkeys([*implied, *self.sinks]))

    @property
    def alert_expiry_s(self) -> int:
        """How far ahead of each re-send Alertmanager is told a firing alert ends: four evaluation
        intervals (as Prometheus does), and an hour at least (`MIN_EXPIRY_S`), so a pass late or
        failed, or an evaluator that died, does not resolve an incident that goes on."""
        return max(MIN_EXPIRY_S, 4 * self.every)

    def lease_for(self, once: bool = False) -> float:
        """The lease a pass holds: a single run's (`once`) or a long-running evaluator's."""
        if self.lease_s is not None:
            return self.lease_s
        return DEFAULT_LEASE_S if once else max(3.0 * self.every, MIN_LONG_LEASE_S)
