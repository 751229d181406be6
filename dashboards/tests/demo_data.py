"""Workflows sent through clinotel and the official OTLP exporter into a running collector: the
demo's simulated hospital, or any workflows a test writes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import clinotel.instrumentation as ct
from clinotel.collector.service import Collector
from clinotel.demo.hospital import SimClock, record_changes, record_truths, run_workflow
from clinotel.demo.scenario import TRUTH_LEAD_NS, Scenario, plan
from clinotel.instrumentation.testing import isolated


@contextmanager
def exporting_to(collector: Collector, token: str, clock: SimClock, max_spans: int) -> Iterator[None]:
    """clinotel configured to export to `collector` on `clock`; on exit everything is flushed,
    written and queryable (the collector's own figures recorded, the hourly rollup refreshed)."""
    assert collector.http is not None
    assert collector.writer is not None
    # the simulation outruns real time: a queue that holds the whole run, so no span is dropped
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(max_spans)
    with isolated():
        telemetry = ct.configure(
            service_name="clinotel-demo-hospital",
            tenant="demo-health",
            endpoint=f"http://127.0.0.1:{collector.http.port}",
            protocol="http/protobuf",
            headers={"authorization": f"Bearer {token}"},
            pseudonym_key="clinotel-test-key-0123456789abcdef",
            set_global=False,
            clock=clock,
        )
        try:
            yield
            assert telemetry.force_flush()
        finally:
            telemetry.shutdown()
            del os.environ["OTEL_BSP_MAX_QUEUE_SIZE"]
    collector.writer.drain()
    if collector.recorder is not None:
        collector.recorder.record()
    if collector.rollups is not None:
        assert collector.rollups.refresh_once(full=True) is not None


def load_demo(collector: Collector, token: str, workflows: int = 2000, seed: int = 7) -> Scenario:
    """`workflows` demo workflows (and their late truths) into `collector`. The simulated hours end
    now, so their late truth is dated up to `TRUTH_LEAD_NS` ahead: the collector takes it as the
    demo's own collector does (`clinotel.demo.pipeline.start_collector`)."""
    scenario = Scenario(workflows=workflows, seed=seed, hours=6.0)
    clock = SimClock(base_ns=time.time_ns() - scenario.window_ns)
    assert collector.receiver is not None
    limits = collector.receiver.limits
    collector.receiver.limits = replace(limits, max_span_lead_ns=TRUTH_LEAD_NS)
    try:
        with exporting_to(collector, token, clock, workflows * 12):
            truths = [t for p in plan(scenario) if (t := run_workflow(p, clock)) is not None]
            record_truths(truths, clock)
            record_changes(scenario, clock.base_ns)
    finally:
        collector.receiver.limits = limits
    return scenario
