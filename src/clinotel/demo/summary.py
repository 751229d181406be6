"""Figures a newcomer wants to see, computed from the spans as exported (after the PHI gate).

This reads exported telemetry only, never the simulation's plans: what it shows is what the
pipeline can know. Each service process summarises its own exported spans; the demo merges them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from clinotel.model.digits import ascii_digits
from clinotel.semconv import REDACTED
from clinotel.semconv import attributes as A

__all__ = ["DemoSummary", "Summariser", "disparity", "rate", "summarise"]

STAGES = ("ingest", "queue", "decide", "review", "act", "complete")


@dataclass
class DemoSummary:
    workflows: Counter[str] = field(default_factory=Counter)
    spans: int = 0
    stage_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    reviews: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(phase-ish rollout cohort, action) -> count, for triage reviews of model decisions."""
    fallbacks: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    under_triage: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    """(rollout cohort, language) -> [under-triaged, with ground truth]."""
    outcomes_joined: int = 0
    outcomes: int = 0
    redacted_strings: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def percentile(self, stage: str, q: float) -> float | None:
        values = sorted(self.stage_ms.get(stage, ()))
        if not values:
            return None
        return values[min(len(values) - 1, int(q * len(values)))]

    def merge(self, other: DemoSummary) -> None:
        """Add another service's figures (each service joins its own workflows to their truth)."""
        self.workflows.update(other.workflows)
        self.spans += other.spans
        for stage, values in other.stage_ms.items():
            self.stage_ms[stage].extend(values)
        self.reviews.update(other.reviews)
        self.fallbacks.update(other.fallbacks)
        self.errors.update(other.errors)
        for key, (under, total) in other.under_triage.items():
            cell = self.under_triage[key]
            cell[0] += under
            cell[1] += total
        self.outcomes_joined += other.outcomes_joined
        self.outcomes += other.outcomes
        self.redacted_strings += other.redacted_strings
        for reason, n in other.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def to_json(self) -> dict[str, object]:
        """A JSON form, for a service process to hand its figures to the demo."""
        return {
            "workflows": dict(self.workflows),
            "spans": self.spans,
            "stage_ms": dict(self.stage_ms),
            "reviews": [[*k, n] for k, n in self.reviews.items()],
            "fallbacks": dict(self.fallbacks),
            "errors": dict(self.errors),
            "under_triage": [[*k, *v] for k, v in self.under_triage.items()],
            "outcomes_joined": self.outcomes_joined,
            "outcomes": self.outcomes,
            "redacted_strings": self.redacted_strings,
            "dropped": self.dropped,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DemoSummary:
        s = cls()
        s.workflows.update(data["workflows"])
        s.spans = data["spans"]
        for stage, values in data["stage_ms"].items():
            s.stage_ms[stage].extend(values)
        s.reviews.update({(c, a): n for c, a, n in data["reviews"]})
        s.fallbacks.update(data["fallbacks"])
        s.errors.update(data["errors"])
        for cohort, language, under, total in data["under_triage"]:
            s.under_triage[(cohort, language)] = [under, total]
        s.outcomes_joined = data["outcomes_joined"]
        s.outcomes = data["outcomes"]
        s.redacted_strings = data["redacted_strings"]
        s.dropped = dict(data["dropped"])
        return s

    def override_rate(self, cohort: str) -> tuple[float, int]:
        total = sum(n for (c, _), n in self.reviews.items() if c == cohort)
        over = self.reviews[(cohort, "override")]
        return (over / total if total else 0.0), total


def _esi(value: object) -> int | None:
    if isinstance(value, str) and value.startswith("ESI-") and ascii_digits(value[4:]):
        return int(value[4:])
    return None


class Summariser:
    """Takes exported spans one at a time (as an exporter would) and keeps only what it needs."""

    def __init__(self) -> None:
        self.summary = DemoSummary()
        self._roots: dict[int, tuple[object, object]] = {}
        self._decisions: dict[int, tuple[object, object, object]] = {}
        self._truths: dict[str, str] = {}

    def add(self, span: ReadableSpan) -> None:
        if span.name == A.HEALTH_SPAN_NAME:
            # one per export batch with drops or redactions to report: how many depends on when the
            # batches went out, not on the hospital (the counts are in `dropped`)
            return
        s = self.summary
        s.spans += 1
        attrs = span.attributes or {}
        trace_id = span.context.trace_id if span.context else 0
        s.redacted_strings += sum(1 for e in span.events for v in (e.attributes or {}).values() if REDACTED in str(v))
        if span.name.startswith("workflow "):
            s.workflows[str(attrs.get(A.WORKFLOW_KIND.key))] += 1
            self._roots[trace_id] = (attrs.get(A.WORKFLOW_ID.key), attrs.get(A.COHORT_LANGUAGE.key))
            return
        stage = attrs.get(A.WORKFLOW_STAGE.key)
        if stage == "outcome":
            s.outcomes += 1
            wid, label = attrs.get(A.WORKFLOW_ID.key), attrs.get(A.OUTCOME_LABEL.key)
            if isinstance(wid, str) and isinstance(label, str):
                self._truths[wid] = label
            return
        if span.status.status_code.name == "ERROR":
            s.errors[str(stage)] += 1
        shadow = attrs.get(A.DECISION_SHADOW.key)
        if stage in STAGES and not shadow and span.start_time and span.end_time:
            s.stage_ms[str(stage)].append((span.end_time - span.start_time) / 1e6)
        if stage == "decide" and not shadow:
            source = attrs.get(A.DECISION_SOURCE.key)
            self._decisions[trace_id] = (source, attrs.get(A.ROLLOUT_COHORT.key), attrs.get(A.DECISION_VALUE.key))
            if source == "fallback":
                s.fallbacks[str(attrs.get(A.DECISION_FALLBACK_REASON.key))] += 1
        if stage == "review" and attrs.get(A.WORKFLOW_KIND.key) == "triage":
            decided = self._decisions.get(trace_id)
            if decided is not None and decided[0] == "model":
                s.reviews[(str(decided[1]), str(attrs.get(A.REVIEW_ACTION.key)))] += 1

    def result(self, dropped: dict[str, int] | None = None) -> DemoSummary:
        """Join model decisions to late ground truth by pseudonymous id; the summary."""
        s = self.summary
        s.dropped = dict(dropped or {})
        s.under_triage.clear()
        s.outcomes_joined = 0
        for trace_id, (wid, language) in self._roots.items():
            source, cohort, value = self._decisions.get(trace_id, (None, None, None))
            if not isinstance(wid, str) or wid not in self._truths or source != "model":
                continue
            s.outcomes_joined += 1
            predicted, true = _esi(value), _esi(self._truths[wid])
            if predicted is None or true is None:
                continue
            cell = s.under_triage[(str(cohort), str(language))]
            cell[0] += int(predicted > true)
            cell[1] += 1
        return s


def summarise(spans: Iterable[ReadableSpan], dropped: dict[str, int] | None = None) -> DemoSummary:
    """The summary of a finished list of spans."""
    summariser = Summariser()
    for span in spans:
        summariser.add(span)
    return summariser.result(dropped)


def disparity(s: DemoSummary, cohort: str, group: str, reference: str) -> tuple[float | None, int, int]:
    """Under-triage rate of `group` divided by that of `reference`, within one rollout cohort."""
    g, r = s.under_triage.get((cohort, group), [0, 0]), s.under_triage.get((cohort, reference), [0, 0])
    if not g[1] or not r[1] or not r[0]:
        return None, g[1], r[1]
    return (g[0] / g[1]) / (r[0] / r[1]), g[1], r[1]


def rate(cells: Sequence[int]) -> float:
    return cells[0] / cells[1] if cells[1] else 0.0
