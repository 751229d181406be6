"""Alert rules as pydantic models, loaded from YAML with the file, line and reason of any mistake.

- name: high_risk_under_triage
  kind: threshold                # threshold | baseline | canary | disparity | collector | sdk
  metric: high_risk_miss_rate    # an indicator shared with the dashboards (or a collector metric)
  comparison: gt
  threshold: 0.10
  window: 6h
  for: 10m
  min_sample: 30
  severity: page                 # page (Alertmanager / PagerDuty) or ticket (webhook)
  summary: High-risk patients under-triaged by the model
  overrides:
    - {tenant: st-marys, kind: triage, threshold: 0.08}
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from clinotel.alerts.actions import RuleAction
from clinotel.model.collector_metrics import METRICS
from clinotel.model.files import ConfigTooLargeError, read_config
from clinotel.model.indicators import COHORT_DIMENSIONS, INDICATORS
from clinotel.model.signals import SIGNALS
from clinotel.model.workflow_signals import WORKFLOW_RATES
from clinotel.semconv import attributes as A

__all__ = [
    "RUNBOOK_BASE",
    "Comparison",
    "Kind",
    "Override",
    "Rule",
    "RuleError",
    "RulePack",
    "Test",
    "bounded_duration",
    "duration_text",
    "load",
    "parse_duration",
]

RUNBOOK_BASE: Final = "https://github.com/clinotel/clinotel/blob/main/"
"""Where the runbooks (`Rule.runbook`, a path in the repository) are published: the base of every
notification's and exported rule's `runbook_url`."""
_DURATION: Final = re.compile(r"^(\d+)(s|m|h|d)$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_S: Final = 366 * 86400
"""The longest duration a rule or an interval may name (a window, `for`, `every` …): a year and a day."""
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RESERVED_LABELS: Final = frozenset(
    {
        "alertname",
        "severity",
        "rule",
        "tenant",
        "kind",
        "cohort",
        "model_version",
        "group",
        "service",
        "feature",
        "instance",
    }
)
"""Labels the evaluator, its sinks or the Grafana export set themselves: a rule's static labels may
not override them (a `severity: ticket` label on a page, an `alertname` of another rule)."""
COLLECTOR_METRICS: Final = tuple(name for name, m in METRICS.items() if m.alertable)
DRIFT_MEASURES: Final = ("psi", "js")
"""What a `drift` rule compares with its threshold."""
"""Collector figures a `collector` rule may read (from clinotel_collector_metrics)."""


class RuleError(ValueError):
    """A rules file that cannot be used: where, and why."""


def parse_duration(value: object) -> int:
    """`90s`, `15m`, `6h`, `7d` (or a number of seconds) as seconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _DURATION.match(str(value).strip())
    if not match:
        raise ValueError(f"a duration such as 90s, 15m, 6h or 7d, not {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def duration_text(seconds: int) -> str:
    """`seconds` as a rules file writes it, in its largest whole unit: 3600 -> `1h`, 90 -> `90s`."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def bounded_duration(value: object) -> int:
    """`parse_duration`, at most `MAX_DURATION_S`: a rule's window, `for` … or an interval."""
    seconds = parse_duration(value)
    if seconds > MAX_DURATION_S:
        raise ValueError(f"a duration of at most 366d, not {str(value)[:64]}")
    return seconds


def _reserved(rule: str, label: str) -> ValueError:
    return ValueError(f"rule {rule}: label {label!r} is set by the evaluator, not a rule's static label")


def _too_deep(path: Path) -> RuleError:
    return RuleError(f"{path}: not a rules file: its YAML is nested too deeply")


Seconds = Annotated[int, BeforeValidator(bounded_duration)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
"""A threshold or band edge: NaN compares false with everything (a rule that never fires)."""


class Comparison(StrEnum):
    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"

    def holds(self, value: float, threshold: float) -> bool:
        return {
            Comparison.GT: value > threshold,
            Comparison.GE: value >= threshold,
            Comparison.LT: value < threshold,
            Comparison.LE: value <= threshold,
        }[self]

    @property
    def symbol(self) -> str:
        return {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[self.value]


class Kind(StrEnum):
    THRESHOLD = "threshold"
    """The indicator's value over the window, against the threshold."""
    BASELINE = "baseline"
    """The value ÷ the same indicator over the trailing baseline window before it."""
    CANARY = "canary"
    """The canary cohort's value ÷ the baseline cohort's."""
    DISPARITY = "disparity"
    """Each group of `dimension`: its value ÷ the reference (largest) group's, outside `band`."""
    COLLECTOR = "collector"
    """A collector figure: the sum of a counter's increases (or a gauge's maximum) over the window."""
    SDK = "sdk"
    """What one service's clinotel gate counted over the window (`clinotel_sdk_telemetry`), by
    reason: `unregistered`, `invalid`, `phi`, `redacted`, `internal_errors`."""
    DRIFT = "drift"
    """Each decision input and model output (`clinotel.model.drift`): its PSI or Jensen–Shannon
    divergence (`metric`: `psi` or `js`) over the window against the `baseline_window` before it."""


class Test(StrEnum):
    """How a rule decides that what it sees is a real effect (`clinotel.model.stats`)."""

    NONE = "none"
    """The observed value against the threshold (or band), as it is."""
    SCORE = "score"
    """Score intervals at the rule's `confidence`. A threshold rule on a rate: the Wilson interval's
    bound on the threshold's side (the lower bound for `gt`/`ge`) against the threshold. A ratio
    (baseline, canary, disparity): the ratio past its limit, and its MOVER-R Wilson interval
    excluding 1 on the harmful side."""
    SEQUENTIAL = "sequential"
    """A canary: the ratio past its limit, and its confidence sequence (valid at every look, so an
    evaluation every 30 s does not inflate false alarms) excluding 1 on the harmful side."""


class Override(BaseModel):
    """A threshold (or minimum sample) for one tenant and/or workflow kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tenant: str | None = None
    kind: str | None = None
    threshold: Finite | None = None
    min_sample: int | None = Field(default=None, ge=1)
    disabled: bool = False


class Rule(BaseModel):
    """One alert rule."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{2,62}$")
    kind: Kind = Kind.THRESHOLD
    metric: str
    comparison: Comparison = Comparison.GT
    threshold: Finite
    window: Seconds = Field(gt=0)
    for_: Seconds = Field(default=0, alias="for")
    keep_firing_for: Seconds = Field(default=0, ge=0)
    """Once firing, resolve only after reading clear this long (Prometheus's and Grafana's
    `keep_firing_for`): a figure hovering at its threshold pages once, not at every crossing."""
    min_sample: int = Field(default=30, ge=1)
    """Fewer rows than this are no data (`no_data`), never a page."""
    severity: Literal["page", "ticket"]
    summary: str = Field(min_length=3, max_length=300)
    labels: dict[str, str] = Field(default_factory=dict)
    """Static labels on every notification: Alertmanager label names (`[a-zA-Z_][a-zA-Z0-9_]*`, not
    `__…`), none of those the evaluator sets itself (`RESERVED_LABELS`, the disparity dimension)."""
    dimension: str | None = None
    band: tuple[Finite, Finite] = (0.8, 1.25)
    baseline_window: Seconds | None = None
    no_data: Literal["ok", "keep", "alerting"] = "ok"
    """What too few rows (or none) mean: clear the alert, keep its state, or fire (a silence that
    is itself the incident, such as ingestion stalling). With `ok`, an instance that is firing
    keeps firing while it has rows but fewer than `min_sample` (low volume at night is not
    evidence of recovery: it resolved, and paged again when the volume returned); one that
    returns no row at all still clears."""
    test: Test | None = None
    """How the rule decides (`Test`); default: `sequential` for a canary rule on a rate, `score`
    for a baseline or disparity rule on a rate, `none` otherwise."""
    confidence: float = Field(default=0.95, ge=0.5, lt=1)
    """The two-sided coverage of the test's interval (0.95: each side errs 2.5 % of the time)."""
    harm: Literal["higher", "lower"] | None = None
    """A disparity rule: which side of the reference group is harm (a group worse off pages);
    default: the indicator's own direction (higher under-triage is worse, a lower high-priority
    assignment rate is worse)."""
    page_reference_worse: bool = False
    """A disparity rule: also page when the reference group is the one worse off (by default that
    is labelled in the audit trail, not paged)."""
    overrides: tuple[Override, ...] = ()
    action: RuleAction | None = None
    """What to switch off when the rule starts firing (`clinotel.alerts.actions`)."""

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str, info: ValidationInfo) -> str:
        # a field of its own, so an unknown metric is reported beside the rule's other mistakes
        kind = info.data.get("kind")
        if kind is Kind.COLLECTOR:
            if metric not in COLLECTOR_METRICS:
                raise ValueError(f"collector metric must be one of {', '.join(COLLECTOR_METRICS)}")
        elif kind is Kind.SDK:
            if metric not in A.HEALTH_COUNTERS:
                raise ValueError(f"sdk metric must be one of {', '.join(A.HEALTH_COUNTERS)}")
        elif kind is Kind.DRIFT:
            if metric not in DRIFT_MEASURES:
                raise ValueError(f"drift metric must be one of {', '.join(DRIFT_MEASURES)}")
        elif metric in SIGNALS:
            if kind in (Kind.CANARY, Kind.DISPARITY) and metric not in WORKFLOW_RATES:
                raise ValueError(
                    f"{metric} is a count of the traces: threshold or baseline rules only (canary and disparity "
                    f"rules take a rate per workflow: {', '.join(WORKFLOW_RATES)})"
                )
            if kind not in (Kind.THRESHOLD, Kind.BASELINE, Kind.CANARY, Kind.DISPARITY):
                raise ValueError(f"{metric} is a signal of the traces: threshold, baseline, canary or disparity rules")
        elif kind is not None and metric not in INDICATORS:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(sorted([*INDICATORS, *SIGNALS]))}")
        return metric

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        rule = info.data.get("name", "?")
        for name in labels:
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(
                    f"rule {rule}: label {name[:64]!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, "
                    "not starting with __): Alertmanager refuses it"
                )
            if name in RESERVED_LABELS:
                raise _reserved(rule, name)
        return labels

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.group_label in self.labels:
            raise _reserved(self.name, self.group_label)
        if self.kind is Kind.DISPARITY:
            if self.dimension not in COHORT_DIMENSIONS:
                raise ValueError(f"a disparity rule needs dimension, one of {', '.join(COHORT_DIMENSIONS)}")
            if not 0 < self.band[0] < 1 < self.band[1]:
                raise ValueError("band must be (low < 1 < high), such as [0.8, 1.25]")
        elif self.dimension is not None:
            raise ValueError("dimension is for disparity rules only")
        if self.kind in (Kind.BASELINE, Kind.DRIFT) and self.baseline_window is None:
            raise ValueError("a baseline rule needs baseline_window (the trailing period compared against)")
        if self.kind is not Kind.DISPARITY and (self.harm is not None or self.page_reference_worse):
            raise ValueError("harm and page_reference_worse are for disparity rules only")
        test = self.decided_by
        if test is not Test.NONE:
            if not self._rate_indicator:
                raise ValueError(f"test: {test.value} needs an indicator that is a rate (hits among rows)")
            if test is Test.SEQUENTIAL and self.kind is not Kind.CANARY:
                raise ValueError("test: sequential is for canary rules (a score test suits the others)")
            above = self.comparison in (Comparison.GT, Comparison.GE)
            limits = [self.threshold, *(o.threshold for o in self.overrides if o.threshold is not None)]
            if self.kind in (Kind.BASELINE, Kind.CANARY) and any((t > 1) != above or t == 1 for t in limits):
                raise ValueError(
                    "a tested ratio rule's threshold is past 1 on its comparison's side: gt/ge above 1, lt/le below 1"
                )
        return self

    @property
    def _rate_indicator(self) -> bool:
        """The rule reads an indicator that is a rate (hits among rows): the only ones a test suits."""
        if self.kind in (Kind.COLLECTOR, Kind.SDK, Kind.DRIFT):
            return False
        if self.metric in SIGNALS:
            # per workflow, a signal is a rate; the span-level figures (threshold, baseline) are not
            return self.kind in (Kind.CANARY, Kind.DISPARITY) and self.metric in WORKFLOW_RATES
        return INDICATORS[self.metric].kind == "rate"

    @property
    def decided_by(self) -> Test:
        """The test the rule decides with (`test`, or its kind's default)."""
        if self.test is not None:
            return self.test
        if self.kind is Kind.THRESHOLD or not self._rate_indicator:
            return Test.NONE
        return Test.SEQUENTIAL if self.kind is Kind.CANARY else Test.SCORE

    @property
    def harm_is_higher(self) -> bool:
        """Harm is a higher value: a disparity rule's `harm` (or its indicator's direction); the
        comparison's side for the others."""
        if self.kind is Kind.DISPARITY:
            if self.harm is not None:
                return self.harm == "higher"
            if self.metric in SIGNALS:
                return SIGNALS[self.metric].higher_is_worse
            return INDICATORS[self.metric].higher_is_worse
        return self.comparison in (Comparison.GT, Comparison.GE)

    @property
    def group_label(self) -> str:
        """The label naming an instance's group: the disparity dimension, the service, or the
        collector (`instance`, as its metrics name it: host and OTLP/HTTP port)."""
        if self.kind is Kind.SDK:
            return "service"
        if self.kind is Kind.COLLECTOR:
            return "instance"
        if self.kind is Kind.DRIFT:
            return "feature"
        return self.dimension or "group"

    @property
    def runbook(self) -> str:
        """The runbook's path in the repository."""
        return f"docs/runbooks/{self.name}.md"

    def limits(self, tenant: str, kind: str) -> tuple[float, int, bool]:
        """(threshold, min_sample, disabled) for one tenant and workflow kind; the most specific
        override wins (tenant and kind, then tenant, then kind)."""
        best: Override | None = None
        score = -1
        for o in self.overrides:
            if (o.tenant not in (None, tenant)) or (o.kind not in (None, kind)):
                continue
            s = (o.tenant is not None) * 2 + (o.kind is not None)
            if s > score:
                best, score = o, s
        if best is None:
            return self.threshold, self.min_sample, False
        threshold = best.threshold if best.threshold is not None else self.threshold
        min_sample = best.min_sample if best.min_sample is not None else self.min_sample
        return threshold, min_sample, best.disabled


class RulePack(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _unique(self) -> RulePack:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique: {', '.join(dupes)}")
        return self


def _line_of(node: yaml.Node, loc: tuple[int | str, ...]) -> int:
    """The 1-based line of the YAML node at `loc` (as deep as it exists)."""
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            nxt = node.value[key]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
    return int(node.start_mark.line) + 1


def _duplicates(node: yaml.Node, data: Any) -> list[tuple[int, str]]:
    """(line, message) for every rule whose name an earlier rule already has."""
    rules = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(rules, list):
        return []
    first: dict[str, int] = {}
    found = []
    for i, rule in enumerate(rules):
        name = rule.get("name") if isinstance(rule, dict) else None
        if not isinstance(name, str):
            continue
        line = _line_of(node, ("rules", i, "name"))
        if name in first:
            found.append((line, f"rules.{i}.name: duplicate rule name {name!r} (first at line {first[name]})"))
        else:
            first[name] = line
    return found


def load(path: Path) -> RulePack:
    """Read and check a rules file; RuleError names the file, and every mistake with its line
    and reason, one per line."""
    try:
        text = read_config(path)
    except OSError as e:
        raise RuleError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise RuleError(f"{path}: not a text file (UTF-8)") from None
    except ConfigTooLargeError as e:
        raise RuleError(f"{path}: {e}") from None
    try:
        node = yaml.compose(text)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise RuleError(f"{path}{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    except (ValueError, OverflowError) as e:  # a timestamp PyYAML cannot build, such as 2026-13-45
        raise RuleError(f"{path}: not valid YAML: {(str(e).splitlines() or [type(e).__name__])[0]}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise _too_deep(path) from None
    if node is None:
        raise RuleError(f"{path}:1: empty rules file")
    problems = _duplicates(node, data)
    try:
        pack = RulePack.model_validate(data)
    except RecursionError:  # and pydantic validates them so
        raise _too_deep(path) from None
    except ValidationError as e:
        for error in e.errors():
            loc = tuple(error["loc"])
            if not loc and problems:
                continue  # the duplicate names, already reported at their own lines
            field = ".".join(str(p) for p in loc) or "(top)"
            problems.append((_line_of(node, loc), f"{field}: {error['msg']}"))
    else:
        if not problems:
            return pack
    problems.sort(key=lambda p: p[0])
    raise RuleError("\n".join(f"{path}:{line}: {message}" for line, message in problems))
