"""The hourly signal rollup holds, for the demo hospital's spans, exactly what the signals' own SQL
gives span by span from `otel_traces`: each data-quality check's rows and failures, the rework
rate's records and workflows, rework by kind and role with its minutes, feedback by category and
severity, and every drift feature's bins (live and shadow apart), hour by hour."""

from __future__ import annotations

from typing import Any

from clinotel.collector.service import Collector
from clinotel.model import rollups
from clinotel.model.drift import FEATURES
from clinotel.model.signals import IS_FEEDBACK, IS_REWORK, IS_WORKFLOW, KIND, SIGNALS, attr
from clinotel.model.sql import literal
from clinotel.model.tables import TRACES
from clinotel.semconv import attributes as A
from collector.tests.fixtures import WRITE_TOKEN
from dashboards.tests.demo_data import load_demo

_HOUR = "toStartOfHour(toDateTime(Timestamp, 'UTC'))"
_SHADOW = f"toUInt8({attr(A.ROLLOUT_MODE.key)} = 'shadow')"


def _set(client: Any, sql: str) -> set[tuple[Any, ...]]:
    return {tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in client.query(sql).result_rows}


def test_the_signal_rollup_is_the_signals_span_by_span(collector: Collector) -> None:
    load_demo(collector, WRITE_TOKEN, workflows=1500)  # refreshes the rollups once everything is stored
    client, o = collector.client, collector.options
    hours, traces = o.name(rollups.SIGNAL_HOURS), o.name(TRACES)
    place = f"TenantId, {KIND}, {_HOUR}, {attr(A.SITE.key)}, {attr(A.DEPARTMENT.key)}"
    rolled = "TenantId, WorkflowKind, Hour, Site, Department"
    checked = 0
    for name in rollups.QUALITY:
        s = SIGNALS[name]
        assert s.hit is not None
        want = _set(client, f"SELECT {place}, count(), countIf({s.hit}) FROM {traces} WHERE {s.where} GROUP BY {place}")
        got = _set(client, f"SELECT {rolled}, sum(Rows), sum(Hits) FROM {hours} WHERE Signal = {literal(name)} "
                           f"GROUP BY {rolled}")  # fmt: skip
        assert got == want, name
        checked += len(want)
    for signal, where in ((rollups.WORKFLOW, IS_WORKFLOW), (rollups.REWORK, IS_REWORK)):
        want = _set(client, f"SELECT {place}, count() FROM {traces} WHERE {where} GROUP BY {place}")
        got = _set(
            client, f"SELECT {rolled}, sum(Rows) FROM {hours} WHERE Signal = {literal(signal)} GROUP BY {rolled}"
        )
        assert got == want, signal
        checked += len(want)
    rework = f"{attr(A.REWORK_KIND.key)}, {attr(A.EFFORT_ACTOR_ROLE.key)}"
    want = _set(client, f"SELECT {rework}, count(), sum(toFloat64OrZero({attr(A.EFFORT_MINUTES.key)})) "
                        f"FROM {traces} WHERE {IS_REWORK} GROUP BY {rework}")  # fmt: skip
    got = _set(client, f"SELECT Bin, Detail, sum(Rows), sum(Total) FROM {hours} WHERE Signal = 'rework' GROUP BY 1, 2")
    assert got == want
    assert want, "the demo records rework"
    feedback = f"{attr(A.FEEDBACK_CATEGORY.key)}, {attr(A.FEEDBACK_SEVERITY.key)}"
    want = _set(client, f"SELECT {place}, {feedback}, count() FROM {traces} WHERE {IS_FEEDBACK} GROUP BY {place}, "
                        f"{feedback}")  # fmt: skip
    got = _set(client, f"SELECT {rolled}, Bin, Detail, sum(Rows) FROM {hours} WHERE Signal = 'feedback' "
                       f"GROUP BY {rolled}, Bin, Detail")  # fmt: skip
    assert got == want
    assert want, "the demo records feedback"
    for f in FEATURES:
        want = _set(client, f"SELECT {place}, {_SHADOW}, {f.bin} AS bin, count() FROM {traces} WHERE bin != '' "
                            f"GROUP BY {place}, {_SHADOW}, bin")  # fmt: skip
        got = _set(client, f"SELECT {rolled}, Shadow, Bin, sum(Rows) FROM {hours} WHERE Signal = {literal(f.name)} "
                           f"GROUP BY {rolled}, Shadow, Bin")  # fmt: skip
        assert got == want, f.name
        checked += len(want)
    assert checked > 500
