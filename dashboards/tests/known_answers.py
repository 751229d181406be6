"""A seeded synthetic triage dataset with known answers: the raw events kept in Python, the same
workflows sent through clinotel into the collector, and every safety and fairness figure computed
here from the raw events with the definitions of metrics-definitions.md."""

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
MIN_GROUP = 30


@dataclass(frozen=True)
class Event:
    """One triage workflow as the service saw it."""

    language: str
    age_band: str
    decided: int
    """The model's ESI level."""
    truth: int | None
    """The true ESI level, when ground truth arrived."""
    action: str
    escalation_needed: bool | None
    escalated: bool


def generate(n: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    names, weights = zip(*LANGUAGES, strict=True)
    events = []
    for _ in range(n):
        language = rng.choices(names, weights)[0]
        true = rng.choices((1, 2, 3, 4, 5), (0.05, 0.2, 0.4, 0.25, 0.1))[0]
        bias = 0.25 if language == "es" else 0.08  # the model under-triages Spanish speakers more
        roll = rng.random()
        decided = min(5, true + 1) if roll < bias else (max(1, true - 1) if roll < bias + 0.07 else true)
        known = rng.random() < 0.8
        action = "override" if rng.random() < (0.35 if decided != true else 0.05) else "accept"
        events.append(
            Event(
                language, rng.choice(AGE_BANDS), decided, true if known else None, action,
                (true == 1) if known else None, true == 1 and rng.random() < 0.7,
            )
        )  # fmt: skip
    return events


def send(collector: Collector, token: str, events: Sequence[Event]) -> None:
    """Each event as a triage workflow through clinotel, then its late ground truth."""
    clock = SimClock(base_ns=time.time_ns() - 3 * 3600 * 10**9)
    truths = []
    with exporting_to(collector, token, clock, len(events) * 10):
        for i, e in enumerate(events):
            clock.at(i * 3 * 3600 * 1000 / len(events))
            cohort = ct.Cohort(age_band=e.age_band, language=e.language)
            with ct.workflow("triage", identifier=f"ENC-{i}", site="north", department="ed", cohort=cohort) as wf:
                with ct.stage("decide") as st:
                    clock.advance(20)
                    st.record_decision(source="model", value=f"ESI-{e.decided}", confidence=0.8, model_version="4.0.0")
                with ct.stage("review") as st:
                    clock.advance(1000)
                    st.record_review(action=e.action, actor_role="nurse", final_value=f"ESI-{e.decided}")
                with ct.stage("complete") as st:
                    st.record_outcome(status="escalated" if e.escalated else "completed")
                if e.truth is not None:
                    truths.append((i, wf.traceparent, e))
        for i, link, e in truths:
            ct.record_outcome("triage", identifier=f"ENC-{i}", link=link, label=f"ESI-{e.truth}",
                              escalation_needed=bool(e.escalation_needed))  # fmt: skip


def rate(events: Sequence[Event], hit: Callable[[Event], bool], eligible: Callable[[Event], bool]) -> float | None:
    rows = [e for e in events if eligible(e)]
    return sum(hit(e) for e in rows) / len(rows) if rows else None


def under_triage(events: Sequence[Event]) -> float | None:
    return rate(events, lambda e: e.truth is not None and e.decided > e.truth, lambda e: e.truth is not None)


def high_risk_miss(events: Sequence[Event]) -> float | None:
    return rate(events, lambda e: e.decided >= 3, lambda e: e.truth is not None and e.truth <= 2)


def override(events: Sequence[Event]) -> float | None:
    return rate(events, lambda e: e.action == "override", lambda e: True)


def high_priority(events: Sequence[Event]) -> float | None:
    """The selection rate of demographic parity: decisions at ESI-1/2."""
    return rate(events, lambda e: e.decided <= 2, lambda e: True)


def escalation_miss(events: Sequence[Event]) -> float | None:
    return rate(events, lambda e: not e.escalated, lambda e: bool(e.escalation_needed))


def by_group(events: Sequence[Event], key: Callable[[Event], str]) -> dict[str, list[Event]]:
    groups: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        groups[key(e)].append(e)
    return dict(groups)


def disparities(
    events: Sequence[Event], key: Callable[[Event], str], measure: Callable[[Sequence[Event]], float | None]
) -> dict[str, float | None]:
    """Group measure ÷ the reference group's (the largest group), for groups of MIN_GROUP or more
    eligible rows (Aequitas's disparity with a major-group reference)."""
    groups = by_group(events, key)
    reference = max(groups, key=lambda g: len(groups[g]))
    ref = measure(groups[reference])
    out: dict[str, float | None] = {}
    for g, rows in groups.items():
        value = measure(rows)
        out[g] = value / ref if value is not None and ref else None
    return out


def parity(
    events: Sequence[Event],
    key: Callable[[Event], str],
    measure: Callable[[Sequence[Event]], float | None],
    eligible: Callable[[Event], bool],
) -> tuple[float, float]:
    """(max − min, min ÷ max) of the measure over groups with MIN_GROUP eligible rows (Fairlearn's
    between-groups difference and ratio)."""
    values = [
        v for rows in by_group(events, key).values()
        if sum(eligible(e) for e in rows) >= MIN_GROUP and (v := measure(rows)) is not None
    ]  # fmt: skip
    return max(values) - min(values), min(values) / max(values)
