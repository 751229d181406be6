"""The simulated hospital: a deterministic plan of every workflow instance, from a seed.

Planning is pure (no telemetry, no clock): the same seed gives the same plans, so the demo's
figures repeat, and several processes can each take a share of one scenario. The story:

- emergency triage (ED at every site) and appointment scheduling (clinics), at three sites;
- the triage model rolls out through shadow mode, then recommendation, then a canary of model
  v4 at one site behind the feature flag `triage-model-v4`;
- incidents: a model outage that forces the rules fallback; an EHR timeout spike at ingest; and
  the canary model under-triaging Spanish-speaking patients (`Scenario.incidents` chooses which
  happen, and when; `model_slowdown`, a model that answers in seconds, is there for the false-page
  benchmark);
- nurses and schedulers override with coded reasons; late ground truth (the true acuity) arrives
  for a share of triage workflows.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from clinotel.demo.worth import STALE_SITE, Worth, draw
from clinotel.semconv import (
    ActorRole,
    AgeBand,
    IngestSource,
    OutcomeStatus,
    PayerClass,
    ReviewAction,
    RolloutCohort,
    RolloutMode,
    Sex,
)

__all__ = [
    "CHANGES",
    "INCIDENTS",
    "KNOWN_INCIDENTS",
    "LATEST_TRUTH_H",
    "SITES",
    "TRUTH_LEAD_NS",
    "Incident",
    "Phase",
    "PlannedChange",
    "Scenario",
    "WorkflowPlan",
    "plan",
    "replan",
]

SITES: Final = ("north", "south", "east")
CLINICS: Final = ("cardiology", "oncology", "primary_care", "orthopedics")
CANARY_SITE: Final = "north"
FLAG_KEY: Final = "triage-model-v4"
TENANT: Final = "demo-health"
"""The simulated hospital's tenant."""
BASELINE_MODEL: Final = "3.2.0"
CANARY_MODEL: Final = "4.0.0"
LATEST_TRUTH_H: Final = 72
"""Ground truth arrives 2 to this many hours after its workflow."""
TRUTH_LEAD_NS: Final = int((LATEST_TRUTH_H + 1) * 3600 * 1e9)
"""How far ahead of now a run whose simulated hours end now dates its latest ground truth (with an
hour to spare): what its collector must accept (`CollectorConfig.max_span_lead_ns`)."""


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of the rollout, as fractions of the simulated window."""

    name: str
    start: float
    end: float
    mode: RolloutMode
    canary: bool = False


@dataclass(frozen=True, slots=True)
class Incident:
    name: str
    start: float
    end: float
    description: str


PHASES: Final = (
    Phase("shadow", 0.0, 0.25, RolloutMode.SHADOW),
    Phase("recommend", 0.25, 0.55, RolloutMode.RECOMMEND),
    Phase("canary", 0.55, 1.0, RolloutMode.RECOMMEND, canary=True),
)
INCIDENTS: Final = (
    Incident("model_outage", 0.40, 0.46, "the triage model is unreachable; the rules fallback decides"),
    Incident("ehr_timeouts", 0.70, 0.76, "the EHR answers slowly and sometimes times out at ingest"),
    Incident("canary_bias", 0.55, 1.0, "canary model v4 under-triages Spanish-speaking patients"),
    Incident("telehealth_shift", 0.70, 1.0, "a new arrival mode (telehealth referrals) at the south site"),
    Incident("stale_demographics", 0.80, 0.95, f"the {STALE_SITE} site's demographics feed stops updating"),
)
"""The demo's incidents. Also known by name: `model_slowdown` (the triage model answers, in
seconds: a decision latency spike without a fallback)."""
KNOWN_INCIDENTS: Final = (*(i.name for i in INCIDENTS), "model_slowdown")


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """A change event of the story, at a fraction of the simulated window."""

    at: float
    kind: str
    name: str
    version: str
    actor: str
    scope: tuple[tuple[str, str], ...] = ()


CHANGES: Final = (
    PlannedChange(0.0, "model", "triage-model", BASELINE_MODEL, "pipeline:ml-release", (("workflow_kind", "triage"),)),
    PlannedChange(0.25, "config", "triage-rollout-mode", "recommend", "role:clinical-product-owner",
                  (("workflow_kind", "triage"),)),
    PlannedChange(0.54, "deploy", "ed-triage", CANARY_MODEL, "pipeline:ci-main", (("site", CANARY_SITE),)),
    PlannedChange(0.55, "flag", FLAG_KEY, "on", "pipeline:flag-rollout",
                  (("site", CANARY_SITE), ("workflow_kind", "triage"))),
)  # fmt: skip
"""What the hospital's pipelines record as they roll the model out (`clinotel changes add`)."""


@dataclass(frozen=True)
class Scenario:
    """How big and how long the simulated hospital runs."""

    workflows: int = 20_000
    seed: int = 7
    hours: float = 12.0
    triage_share: float = 0.6
    ground_truth_share: float = 0.6
    incidents: tuple[Incident, ...] = INCIDENTS
    """What goes wrong, and when (as fractions of the window); () for a clean run."""

    def __post_init__(self) -> None:
        unknown = [i.name for i in self.incidents if i.name not in KNOWN_INCIDENTS]
        if unknown:
            raise ValueError(f"unknown incident(s) {', '.join(unknown)}; known: {', '.join(KNOWN_INCIDENTS)}")

    def during(self, incident: str, frac: float) -> bool:
        """Whether `incident` is under way at `frac` of the window."""
        return any(i.name == incident and i.start <= frac < i.end for i in self.incidents)

    @property
    def window_ns(self) -> int:
        return int(self.hours * 3600 * 1e9)

    def base_ns(self, now_ns: int) -> int:
        """Where the simulated hours start for a run at `now_ns`: early enough that the latest
        ground truth (`LATEST_TRUTH_H` after its workflow) still lands an hour before now. A
        collector refuses spans that start more than a day ahead of their arrival."""
        return now_ns - self.window_ns - TRUTH_LEAD_NS


@dataclass(slots=True)
class WorkflowPlan:
    """Everything that will happen to one workflow instance; times are offsets in ms."""

    index: int
    kind: str
    offset_ms: float
    identifier: str
    site: str
    department: str
    service_line: str
    cohort: dict[str, str]
    ingest_source: IngestSource
    ingest_ms: float
    ingest_error: str | None
    queue_name: str
    queue_depth: int
    queue_ms: float
    decide_ms: float
    decision: dict[str, object]
    shadow: dict[str, object] | None
    flag_variant: str | None
    """The canary flag's variant served, when the flag is evaluated (the canary phase)."""
    review: dict[str, object] | None
    review_ms: float
    action: dict[str, object]
    act_ms: float
    outcome: OutcomeStatus
    truth: str | None = None
    truth_after_ms: float = 0.0
    scheduling: dict[str, object] = field(default_factory=dict)
    phase: str = ""
    flag_reason: str = "targeting_match"
    """Why the flag served `flag_variant` (OpenTelemetry's `feature_flag.result.reason`)."""
    worth: Worth = field(default_factory=Worth)
    """Inputs, data quality, effort, rework and feedback (`clinotel.demo.worth`)."""


_ESI_WEIGHTS: Final = (0.03, 0.17, 0.45, 0.25, 0.10)
_LANGUAGES: Final = (("en", 0.68), ("es", 0.20), ("vi", 0.05), ("zh", 0.04), ("ar", 0.03))
_AGE: Final = (
    (AgeBand.CHILD, 0.14),
    (AgeBand.ADULT_18_34, 0.22),
    (AgeBand.ADULT_35_49, 0.18),
    (AgeBand.ADULT_50_64, 0.2),
    (AgeBand.ADULT_65_79, 0.17),
    (AgeBand.ADULT_80_PLUS, 0.09),
)
_PAYER: Final = (
    (PayerClass.COMMERCIAL, 0.45),
    (PayerClass.MEDICARE, 0.22),
    (PayerClass.MEDICAID, 0.22),
    (PayerClass.SELF_PAY, 0.08),
    (PayerClass.MILITARY, 0.03),
)
_OVERRIDE_REASONS: Final = ("clinical_judgement", "additional_information", "patient_preference", "model_error")


def _pick(rng: random.Random, weighted: tuple[tuple[object, float], ...]) -> object:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def _phase(frac: float) -> Phase:
    for p in PHASES:
        if p.start <= frac < p.end:
            return p
    return PHASES[-1]


def plan(scenario: Scenario, *, start: int = 0, stop: int | None = None) -> Iterator[WorkflowPlan]:
    """The plans of workflows `start`..`stop` of the scenario, in arrival order.

    Each workflow draws from its own seeded generator, so any slice is identical to the same
    slice of the whole run.
    """
    stop = scenario.workflows if stop is None else min(stop, scenario.workflows)
    window_ms = scenario.window_ns / 1e6
    for i in range(start, stop):
        rng = random.Random(f"{scenario.seed}:{i}")
        frac = (i + rng.random()) / scenario.workflows
        if rng.random() < scenario.triage_share:
            yield _triage(rng, scenario, i, frac, frac * window_ms)
        else:
            yield _scheduling(rng, scenario, i, frac, frac * window_ms)


def _cohort(rng: random.Random) -> dict[str, str]:
    return {
        "age_band": str(_pick(rng, _AGE)),
        "sex": rng.choice((Sex.FEMALE, Sex.MALE, Sex.FEMALE, Sex.MALE, Sex.UNKNOWN)).value,
        "language": str(_pick(rng, _LANGUAGES)),
        "payer_class": str(_pick(rng, _PAYER)),
    }


def _ingest(rng: random.Random, scenario: Scenario, frac: float) -> tuple[float, str | None]:
    base = rng.lognormvariate(3.0, 0.5)  # ~20 ms
    if scenario.during("ehr_timeouts", frac):
        base *= 40
        if rng.random() < 0.15:
            return base + 5000, "EHR read timed out after 5 s"
    return base, None


def replan(scenario: Scenario, p: WorkflowPlan, *, flag_on: bool) -> WorkflowPlan:
    """Workflow `p` again, with the canary flag as a service evaluated it (`flag_on`) instead of
    as the story planned it: the same patient, arrival and draws, the model the flag chose."""
    rng = random.Random(f"{scenario.seed}:{p.index}")
    frac = (p.index + rng.random()) / scenario.workflows
    if rng.random() >= scenario.triage_share:
        return p  # scheduling: no flag
    return _triage(rng, scenario, p.index, frac, frac * (scenario.window_ns / 1e6), flag_on=flag_on)


def _triage(
    rng: random.Random, scenario: Scenario, i: int, frac: float, offset_ms: float, *, flag_on: bool | None = None
) -> WorkflowPlan:
    site = rng.choice(SITES)
    cohort = _cohort(rng)
    true_esi = rng.choices((1, 2, 3, 4, 5), weights=_ESI_WEIGHTS)[0]
    cohort["acuity"] = "high" if true_esi <= 2 else ("medium" if true_esi == 3 else "low")
    phase = _phase(frac)
    # the story's flag: model v4 at the canary site during the canary phase (`flag_on`: as evaluated)
    canary = phase.canary and (site == CANARY_SITE if flag_on is None else flag_on)
    version = CANARY_MODEL if canary else BASELINE_MODEL

    # The model: mostly right; under-triage (a higher ESI number) sometimes; the canary model
    # under-triages Spanish-speaking patients much more often.
    under_p = 0.06
    if canary and cohort["language"] == "es" and scenario.during("canary_bias", frac):
        under_p = 0.30
    roll = rng.random()
    if roll < under_p and true_esi < 5:
        predicted = true_esi + 1
    elif roll < under_p + 0.08 and true_esi > 1:
        predicted = true_esi - 1
    else:
        predicted = true_esi
    confidence = round(min(0.99, max(0.35, rng.gauss(0.82 if predicted == true_esi else 0.62, 0.1))), 3)
    outage = scenario.during("model_outage", frac)

    model_decision: dict[str, object] = {
        "source": "model",
        "value": f"ESI-{predicted}",
        "confidence": confidence,
        "risk": "high" if predicted <= 2 else ("medium" if predicted == 3 else "low"),
        "model_name": "triage-gbm",
        "model_version": version,
        "rollout_mode": phase.mode.value,
        "rollout_cohort": (RolloutCohort.CANARY if canary else RolloutCohort.BASELINE).value,
    }
    nurse_esi = true_esi if rng.random() < 0.9 else max(1, min(5, true_esi + rng.choice((-1, 1))))
    decide_ms = rng.lognormvariate(3.6, 0.35)  # ~40 ms
    if scenario.during("model_slowdown", frac):
        decide_ms *= 60  # the model answers, in seconds
    shadow: dict[str, object] | None = None
    if outage:
        decision: dict[str, object] = {
            "source": "fallback",
            "value": f"ESI-{nurse_esi}",
            "fallback_reason": "model_unavailable",
            "rollout_mode": phase.mode.value,
            "rollout_cohort": model_decision["rollout_cohort"],
        }
        decide_ms += 2000  # the model call times out before the fallback answers
    elif phase.mode is RolloutMode.SHADOW:
        decision = {"source": "human", "value": f"ESI-{nurse_esi}", "rollout_mode": phase.mode.value}
        shadow = model_decision
    else:
        decision = model_decision

    recommended = str(decision["value"])
    if decision["source"] == "model":
        wrong = predicted != true_esi
        override = rng.random() < (0.65 if wrong else 0.05)
        final = f"ESI-{true_esi}" if override and wrong else (f"ESI-{nurse_esi}" if override else recommended)
        review: dict[str, object] = {
            "action": ReviewAction.OVERRIDE.value if override else ReviewAction.ACCEPT.value,
            "actor_role": ActorRole.NURSE.value,
            "final_value": final,
        }
        if override:
            review["reason"] = rng.choice(_OVERRIDE_REASONS)
    else:
        review = {"action": ReviewAction.ACCEPT.value, "actor_role": ActorRole.NURSE.value, "final_value": recommended}
    ingest_ms, ingest_error = _ingest(rng, scenario, frac)
    escalated = true_esi == 1 and rng.random() < 0.5
    worth = draw(
        scenario.seed, i, frac, kind="triage", site=site, shadow=phase.mode is RolloutMode.SHADOW,
        overridden=review["action"] == ReviewAction.OVERRIDE.value,
        under_triaged=decision["source"] == "model" and predicted > true_esi, true_esi=true_esi, outage=outage,
        canary=canary, no_show=False, shift=scenario.during("telehealth_shift", frac),
        stale=scenario.during("stale_demographics", frac),
    )  # fmt: skip
    return WorkflowPlan(
        index=i,
        kind="triage",
        offset_ms=offset_ms,
        identifier=f"ENC{scenario.seed:02d}{i:08d}",
        site=site,
        department="ed",
        service_line="emergency",
        cohort=cohort,
        ingest_source=rng.choice((IngestSource.HL7, IngestSource.HL7, IngestSource.FHIR, IngestSource.EHR)),
        ingest_ms=ingest_ms,
        ingest_error=ingest_error,
        queue_name="triage_nurse",
        queue_depth=rng.randint(0, 12),
        queue_ms=rng.expovariate(1 / 240_000) if true_esi > 2 else rng.expovariate(1 / 30_000),
        decide_ms=decide_ms,
        decision=decision,
        shadow=shadow,
        flag_variant=("on" if canary else "off") if phase.canary else None,
        review=review,
        review_ms=rng.lognormvariate(10.3, 0.6),  # ~30 s
        action={"type": "assign_priority", "target": "ehr", "status": "succeeded", "automated": False},
        act_ms=rng.lognormvariate(4.5, 0.4),
        outcome=OutcomeStatus.ESCALATED if escalated else OutcomeStatus.COMPLETED,
        truth=f"ESI-{true_esi}" if rng.random() < scenario.ground_truth_share else None,
        truth_after_ms=rng.uniform(2, LATEST_TRUTH_H) * 3_600_000,
        phase=phase.name,
        worth=worth,
    )


def _scheduling(rng: random.Random, scenario: Scenario, i: int, frac: float, offset_ms: float) -> WorkflowPlan:
    site = rng.choice(SITES)
    clinic = rng.choice(CLINICS)
    phase = _phase(frac)
    slot = rng.choice(("new_patient_30", "new_patient_60", "follow_up_15", "follow_up_30", "procedure_90"))
    model: dict[str, object] = {
        "source": "model",
        "value": slot,
        "confidence": round(min(0.99, max(0.3, rng.gauss(0.78, 0.12))), 3),
        "risk": "low",
        "model_name": "slot-ranker",
        "model_version": "1.4.2",
        "rollout_mode": phase.mode.value,
        "rollout_cohort": RolloutCohort.BASELINE.value,
    }
    # the rules engine mostly picks the slot the model ranks first (a shadow model that disagreed
    # on most workflows would be a finding, not a clean hospital)
    rules: dict[str, object] = {
        "source": "rules",
        "value": slot if rng.random() < 0.9 else rng.choice(("new_patient_30", "follow_up_30")),
        "rollout_mode": "shadow",
    }
    shadow_mode = phase.mode is RolloutMode.SHADOW
    decision: dict[str, object] = rules if shadow_mode else model
    override = rng.random() < 0.12
    offered = rng.randint(1, 5)
    filled = rng.random() < 0.86
    ingest_ms, ingest_error = _ingest(rng, scenario, frac)
    review: dict[str, object] = {
        "action": ReviewAction.OVERRIDE.value if override else ReviewAction.ACCEPT.value,
        "actor_role": ActorRole.SCHEDULER.value,
        "final_value": rng.choice(("new_patient_30", "follow_up_15")) if override else str(decision["value"]),
    }
    if override:
        review["reason"] = rng.choice(("patient_preference", "capacity", "clinical_judgement"))
    status = OutcomeStatus.COMPLETED
    if not filled:
        status = OutcomeStatus.ABANDONED
    elif rng.random() < 0.08:
        status = OutcomeStatus.NO_SHOW
    return WorkflowPlan(
        index=i,
        kind="scheduling",
        offset_ms=offset_ms,
        identifier=f"APT{i:09d}",
        site=site,
        department=clinic,
        service_line=clinic,
        cohort=_cohort(rng),
        ingest_source=rng.choice((IngestSource.PORTAL, IngestSource.PHONE, IngestSource.REFERRAL)),
        ingest_ms=ingest_ms,
        ingest_error=ingest_error,
        queue_name="scheduling_worklist",
        queue_depth=rng.randint(0, 40),
        queue_ms=rng.expovariate(1 / 900_000),
        decide_ms=rng.lognormvariate(3.2, 0.3),
        decision=decision,
        shadow=model if shadow_mode else None,
        flag_variant=None,
        review=review,
        review_ms=rng.lognormvariate(11.0, 0.5),
        action={"type": "book_slot", "target": "scheduling", "status": "succeeded" if filled else "skipped"},
        act_ms=rng.lognormvariate(5.0, 0.4),
        outcome=status,
        scheduling={"slots_offered": offered, "slot_filled": filled, "lead_time_days": round(rng.uniform(1, 30), 1)},
        phase=phase.name,
        worth=draw(
            scenario.seed,
            i,
            frac,
            kind="scheduling",
            site=site,
            shadow=shadow_mode,
            overridden=override,
            under_triaged=False,
            true_esi=None,
            outage=False,
            canary=False,
            no_show=status is OutcomeStatus.NO_SHOW,
            shift=scenario.during("telehealth_shift", frac),
            stale=scenario.during("stale_demographics", frac),
        ),
    )
