"""What the simulated hospital records for issue 17: the decision's inputs and data quality, the
human effort of each review, rework, and clinicians' coded feedback. Drawn from a generator of
its own per workflow, so the rest of the scenario's figures do not move. Two incidents, planned by
the scenario (`telehealth_shift`, `stale_demographics`): a new arrival mode (telehealth referrals)
at one site; the demographics feed of another site stops updating."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final

from clinotel.semconv import ArrivalMode, FeedbackCategory, ReworkKind, VitalBand

__all__ = ["SHIFT_SITE", "STALE_SITE", "Worth", "draw"]

SHIFT_SITE: Final = "south"
"""Where telehealth referrals start arriving (the planted input shift)."""
STALE_SITE: Final = "east"
"""Whose demographics feed stops updating (the stale-demographics incident)."""
_ARRIVALS: Final = (
    (ArrivalMode.WALK_IN, 0.55), (ArrivalMode.AMBULANCE, 0.30), (ArrivalMode.TRANSFER, 0.10),
    (ArrivalMode.HELICOPTER, 0.02), (ArrivalMode.POLICE, 0.03),
)  # fmt: skip


@dataclass
class Worth:
    """One workflow's issue 17 records."""

    inputs: dict[str, object] = field(default_factory=dict)
    quality: dict[str, object] = field(default_factory=dict)
    effort: dict[str, object] = field(default_factory=dict)
    rework: dict[str, object] | None = None
    rework_after_ms: float = 0.0
    feedback: list[tuple[str, str]] = field(default_factory=list)


def _band(rng: random.Random, abnormal: float) -> str:
    if rng.random() < 0.02:
        return VitalBand.MISSING.value
    if rng.random() >= abnormal:
        return VitalBand.NORMAL.value
    return rng.choice(
        (VitalBand.LOW, VitalBand.HIGH, VitalBand.HIGH, VitalBand.CRITICAL_HIGH, VitalBand.CRITICAL_LOW)
    ).value


def draw(
    seed: int, i: int, frac: float, *, kind: str, site: str, shadow: bool, overridden: bool, under_triaged: bool,
    true_esi: int | None, outage: bool, canary: bool, no_show: bool, shift: bool = False, stale: bool = False,
) -> Worth:  # fmt: skip
    """The records of workflow `i` (at `frac` of the run); `shift` and `stale`: whether the
    scenario's telehealth shift and stale-demographics incidents are under way."""
    rng = random.Random(f"{seed}:{i}:worth")
    w = Worth()
    if kind == "triage":
        assert true_esi is not None
        arrival = rng.choices([a for a, _ in _ARRIVALS], weights=[p for _, p in _ARRIVALS])[0].value
        if shift and site == SHIFT_SITE and rng.random() < 0.5:
            arrival = ArrivalMode.TELEHEALTH.value
        abnormal = 0.6 if true_esi <= 2 else 0.2
        w.inputs = {
            "arrival_mode": arrival, "heart_rate_band": _band(rng, abnormal),
            "resp_rate_band": _band(rng, abnormal), "spo2_band": _band(rng, abnormal / 2),
            "temperature_band": _band(rng, 0.15), "bp_band": _band(rng, abnormal),
            "has_chief_complaint": rng.random() < 0.97, "has_medications": rng.random() < 0.85,
            "has_allergies": rng.random() < 0.9,
        }  # fmt: skip
    stale = stale and site == STALE_SITE
    missing = rng.random() < 0.03
    w.quality = {
        "context_missing": missing,
        "demographics_age_h": round(rng.uniform(48, 200) if stale else rng.lognormvariate(0.7, 0.8), 2),
        "lab_delay_min": round(rng.expovariate(1 / 15), 1),
        "mapping_errors": 1 if rng.random() < 0.01 else 0,
    }
    role = "nurse" if kind == "triage" else "scheduler"
    if shadow:  # a person decides alone: the baseline effort
        minutes, touches = rng.gauss(6.0 if kind == "triage" else 8.0, 1.2), rng.randint(5, 8)
    elif overridden:
        minutes, touches = rng.gauss(5.0, 1.0), rng.randint(3, 6)
    else:
        minutes, touches = rng.gauss(2.5 if kind == "triage" else 3.0, 0.6), rng.randint(1, 3)
    w.effort = {"minutes": round(max(0.5, minutes), 2), "touches": touches, "actor_role": role}
    if under_triaged and not overridden and rng.random() < 0.7:
        w.rework = {"kind": ReworkKind.RETRIAGED.value, "minutes": round(max(2.0, rng.gauss(12, 3)), 2),
                    "touches": rng.randint(4, 8), "actor_role": role}  # fmt: skip
    elif no_show and rng.random() < 0.5:
        w.rework = {"kind": ReworkKind.CALLBACK.value, "minutes": round(max(1.0, rng.gauss(6, 1.5)), 2),
                    "touches": rng.randint(2, 4), "actor_role": role}  # fmt: skip
    elif rng.random() < 0.015:
        w.rework = {"kind": ReworkKind.REOPENED.value, "minutes": round(max(1.0, rng.gauss(5, 1.5)), 2),
                    "touches": rng.randint(1, 3), "actor_role": role}  # fmt: skip
    w.rework_after_ms = rng.uniform(20, 180) * 60_000
    if overridden and rng.random() < 0.35:
        w.feedback.append((FeedbackCategory.WRONG_PRIORITY.value, "major" if (true_esi or 5) <= 2 else "moderate"))
    if missing and rng.random() < 0.4:
        w.feedback.append((FeedbackCategory.MISSING_CONTEXT.value, "moderate"))
    if outage and rng.random() < 0.15:
        w.feedback.append((FeedbackCategory.TOO_SLOW.value, "minor"))
    if canary and rng.random() < 0.03:
        w.feedback.append((FeedbackCategory.CONFUSING_EXPLANATION.value, "minor"))
    return w
