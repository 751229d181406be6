"""A seeded synthetic triage dataset with known answers: the raw events kept in Python, the same
workflows sent through clinotel into the collector, and every safety and fairness figure computed
here from the raw events with the definitions of metrics-definitions.md.

It holds what the defects of issue 15 needed to show: shadow predictions beside live decisions,
workflows nobody reviewed, fallback decisions that clinicians override, late ground truth with
the workflow identifier only (no span link) and outcomes for identifiers no workflow has,
reviews long enough that the last workflows' later stages start minutes after they did, a canary
cohort whose model under-triages Spanish speakers (pooled with the baseline, the bias shrinks),
and a payer class whose largest group by workflows is not the one with the most ground truth."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import clinotel.instrumentation as ct
from clinotel.collector.service import Collector
from clinotel.demo.hospital import SimClock
from dashboards.tests.demo_data import exporting_to

LANGUAGES = (("en", 0.55), ("es", 0.25), ("zh", 0.14), ("vi", 0.05), ("so", 0.006))
"""Somali speakers are a group too small to show (under MIN_GROUP)."""
AGE_BANDS = ("18-34", "35-49", "50-64", "65-79", "80+")
PAYERS = (("commercial", 0.40, 0.5), ("medicaid", 0.35, 0.95), ("medicare", 0.25, 0.8))
"""(payer class, share, share with ground truth): commercial has the most workflows, medicaid the
most rows with ground truth."""
MIN_GROUP = 30
MODELS = {"baseline": "3.2.0", "canary": "4.0.0"}
UNJOINED = 7
"""Late outcomes for identifiers no workflow has."""


@dataclass(frozen=True)
class Event:
    """One triage workflow as the service saw it."""

    language: str
    age_band: str
    payer: str
    cohort: str
    source: str
    """`model`, or `fallback` (the model was unavailable; a rule decided)."""
    decided: int
    """The decision's ESI level."""
    truth: int | None
    """The true ESI level, when ground truth arrived."""
    linked: bool
    """The ground truth was recorded with the workflow's span link (else its identifier only)."""
    action: str | None
    """The review's action; None when nobody reviewed it."""
    final: int
    """The priority after review (the decision when unreviewed or not overridden)."""
    review_s: float
    escalation_needed: bool | None
    escalated: bool
    shadow: bool

    @property
    def model(self) -> bool:
        return self.source == "model"

    @property
    def version(self) -> str:
        """The live decision's model version ('' for a fallback's)."""
        return MODELS[self.cohort] if self.model else ""


def _pick(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    names, weights = zip(*weighted, strict=True)
    return rng.choices(names, weights)[0]


def generate(n: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for _ in range(n):
        language = _pick(rng, LANGUAGES)
        payer = _pick(rng, [(p[0], p[1]) for p in PAYERS])
        truth_share = next(p[2] for p in PAYERS if p[0] == payer)
        cohort = "canary" if rng.random() < 0.35 else "baseline"
        true = rng.choices((1, 2, 3, 4, 5), (0.05, 0.2, 0.4, 0.25, 0.1))[0]
        bias = 0.30 if (language == "es" and cohort == "canary") else 0.08  # the canary model's bias
        roll = rng.random()
        decided = min(5, true + 1) if roll < bias else (max(1, true - 1) if roll < bias + 0.07 else true)
        source = "fallback" if rng.random() < 0.05 else "model"
        known = rng.random() < truth_share
        if rng.random() < 0.1:
            action = None
        else:
            r = rng.random()
            wrong = decided != true
            action = (
                "override" if r < (0.35 if wrong else 0.05) else
                "reject" if r < (0.38 if wrong else 0.07) else
                "escalate" if r < (0.40 if wrong else 0.08) else
                "timeout" if r < (0.42 if wrong else 0.09) else "accept"
            )  # fmt: skip
        final = true if action == "override" else decided
        events.append(
            Event(
                language, rng.choice(AGE_BANDS), payer, cohort, source, decided, true if known else None,
                rng.random() < 0.7, action, final, rng.uniform(1, 600), (true == 1) if known else None,
                true == 1 and rng.random() < 0.7, rng.random() < 0.3,
            )
        )  # fmt: skip
    return events


def send(collector: Collector, token: str, events: Sequence[Event]) -> None:
    """Each event as a triage workflow through clinotel, then its late ground truth (linked, or by
    identifier only), then outcomes for identifiers no workflow has."""
    clock = SimClock(base_ns=time.time_ns() - 4 * 3600 * 10**9)
    truths = []
    with exporting_to(collector, token, clock, len(events) * 12):
        for i, e in enumerate(events):
            clock.at(i * 3 * 3600 * 1000 / len(events))
            cohort = ct.Cohort(age_band=e.age_band, language=e.language, payer_class=e.payer)
            with ct.workflow("triage", identifier=f"ENC-{i}", site="north", department="ed", cohort=cohort) as wf:
                with ct.stage("decide") as st:
                    clock.advance(20)
                    if e.model:
                        st.record_decision(source="model", value=f"ESI-{e.decided}", confidence=0.8,
                                           model_version=e.version, rollout_cohort=e.cohort)  # fmt: skip
                    else:
                        st.record_decision(source="fallback", value=f"ESI-{e.decided}",
                                           fallback_reason="model_unavailable", rollout_cohort=e.cohort)  # fmt: skip
                    if e.shadow:
                        st.record_shadow(source="model", value=f"ESI-{e.decided}", model_version="5.0.0-rc1")
                if e.action is not None:
                    with ct.stage("review") as st:
                        clock.advance(e.review_s * 1000)
                        st.record_review(action=e.action, actor_role="nurse", final_value=f"ESI-{e.final}")
                with ct.stage("act") as st:
                    clock.advance(50)
                    st.record_action(type="assign_priority", target="ehr", status="succeeded")
                with ct.stage("complete") as st:
                    st.record_outcome(status="escalated" if e.escalated else "completed")
                if e.truth is not None:
                    truths.append((i, wf.traceparent, e))
        clock.advance(60_000)
        for i, link, e in truths:
            ct.record_outcome("triage", identifier=f"ENC-{i}", link=link if e.linked else None,
                              label=f"ESI-{e.truth}", escalation_needed=bool(e.escalation_needed))  # fmt: skip
        for k in range(UNJOINED):
            ct.record_outcome("triage", identifier=f"ENC-UNKNOWN-{k}", label="ESI-2")


def rate(events: Sequence[Event], hit: Callable[[Event], bool], eligible: Callable[[Event], bool]) -> float | None:
    rows = [e for e in events if eligible(e)]
    return sum(hit(e) for e in rows) / len(rows) if rows else None


def counts(events: Sequence[Event], hit: Callable[[Event], bool], eligible: Callable[[Event], bool]) -> tuple[int, int]:
    rows = [e for e in events if eligible(e)]
    return sum(hit(e) for e in rows), len(rows)


def _truth(e: Event) -> bool:
    return e.truth is not None


MEASURES: dict[str, tuple[Callable[[Event], bool], Callable[[Event], bool]]] = {
    "under_triage_rate": (lambda e: e.decided > (e.truth or 0), lambda e: e.model and _truth(e)),
    "final_under_triage_rate": (lambda e: e.final > (e.truth or 0), _truth),
    "high_risk_miss_rate": (lambda e: e.decided >= 3, lambda e: e.model and _truth(e) and (e.truth or 9) <= 2),
    "high_priority_tpr": (lambda e: e.decided <= 2, lambda e: e.model and _truth(e) and (e.truth or 9) <= 2),
    "override_rate": (lambda e: e.action == "override", lambda e: e.model and e.action is not None),
    "cds_override_rate": (
        lambda e: e.action in ("override", "reject"),
        lambda e: e.model and e.action in ("accept", "override", "reject"),
    ),
    "high_priority_rate": (lambda e: e.decided <= 2, lambda e: e.model),
    "escalation_miss_rate": (
        lambda e: not (e.escalated or e.action == "escalate"),
        lambda e: bool(e.escalation_needed),
    ),
}
"""Each indicator's (hit, eligible) on the raw events, as metrics-definitions.md defines it."""


def measure(name: str) -> Callable[[Sequence[Event]], float | None]:
    hit, eligible = MEASURES[name]
    return lambda events: rate(events, hit, eligible)


def by_group(events: Sequence[Event], key: Callable[[Event], str]) -> dict[str, list[Event]]:
    groups: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        groups[key(e)].append(e)
    return dict(groups)


def stratum(e: Event) -> tuple[str, str]:
    """(rollout cohort, model version): groups are compared within one."""
    return e.cohort, e.version


def reference(events: Sequence[Event], key: Callable[[Event], str]) -> str:
    """The group with the most workflows (ties to the later name)."""
    groups = by_group(events, key)
    return max(groups, key=lambda g: (len(groups[g]), g))
