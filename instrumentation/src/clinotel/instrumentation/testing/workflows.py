"""Two realistic workflows written the way a hospital service would write them.

clinotel's own tests drive the collector and dashboards with them; they are also a worked
example of the API. Both take a `FakeClock`, so every duration is known.
"""

from __future__ import annotations

import clinotel.instrumentation as ct
from clinotel.instrumentation.testing._clock import FakeClock

__all__ = ["schedule", "triage"]


def triage(clock: FakeClock, encounter_id: str, *, override: bool = True) -> str:
    """Emergency triage: EHR event in, nurse worklist, model recommendation with a shadow model
    beside it, nurse override, priority assigned in the EHR."""
    cohort = ct.Cohort(
        age_band=ct.AgeBand.ADULT_65_79,
        sex=ct.Sex.FEMALE,
        language="es",
        payer_class=ct.PayerClass.MEDICAID,
        acuity=ct.Acuity.HIGH,
    )
    with ct.workflow(
        "triage", identifier=encounter_id, site="north", department="ed", service_line="emergency", cohort=cohort
    ) as wf:
        with ct.stage("ingest", attributes={"clinical.ingest.source": "hl7"}):
            clock.advance_ms(12)
        with ct.stage("queue", attributes={"clinical.queue.name": "triage_nurse"}):
            clock.advance_ms(95_000)
        with ct.stage("decide") as st:
            clock.advance_ms(40)
            st.record_flag("triage-model-v4", "canary", provider="flagd", reason="targeting_match")
            st.record_decision(
                ct.Decision(
                    source=ct.DecisionSource.MODEL,
                    value="ESI-3",
                    confidence=0.71,
                    risk=ct.Risk.MEDIUM,
                    model_name="triage-gbm",
                    model_version="4.0.1",
                    rollout_mode=ct.RolloutMode.RECOMMEND,
                    rollout_cohort=ct.RolloutCohort.CANARY,
                )
            )
            st.record_shadow(source="model", value="ESI-2", model_name="triage-gbm", model_version="3.9.0")
        with ct.stage("review") as st:
            clock.advance_ms(30_000)
            if override:
                st.record_review(
                    action="override", actor_role="nurse", reason="clinical_judgement", final_value="ESI-2"
                )
            else:
                st.record_review(action="accept", actor_role="nurse", final_value="ESI-3")
        with ct.stage("act") as st:
            clock.advance_ms(150)
            st.record_action(type="assign_priority", target="ehr", status="succeeded", automated=False)
        with ct.stage("complete") as st:
            st.record_outcome(status="completed")
        return wf.traceparent


def schedule(clock: FakeClock, appointment_id: str) -> None:
    """Appointment scheduling from the patient portal, decided by rules with the model in shadow."""
    with ct.workflow(
        "scheduling", identifier=appointment_id, site="south", department="cardiology", service_line="cardiology"
    ):
        with ct.stage("ingest", attributes={"clinical.ingest.source": "portal"}):
            clock.advance_ms(8)
        with ct.stage("decide") as st:
            clock.advance_ms(25)
            st.record_decision(source="rules", value="new_patient_30", rollout_mode="shadow", rollout_cohort="baseline")
            st.record_shadow(source="model", value="new_patient_60", confidence=0.64, model_name="slotter")
        with ct.stage("act") as st:
            clock.advance_ms(300)
            st.record_action(type="book_slot", target="scheduling", status="succeeded", automated=True)
            st.set_many(
                {
                    "clinical.scheduling.slots_offered": 3,
                    "clinical.scheduling.slot_filled": True,
                    "clinical.scheduling.lead_time_days": 6.5,
                }
            )
        with ct.stage("complete") as st:
            st.record_outcome(status="completed")
