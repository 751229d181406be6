"""The hourly rollup of the workflows (migration 9), recomputed off the insert path, holds for
every hour and dimension exactly what the workflows view gives for each rolled-up indicator: late
ground truth counts in its WORKFLOW's hour, a workflow in two inserts counts once, a windowed
refresh leaves older days as they were, a failed refresh loses nothing, two refreshes at once
agree, and the migration renders for a cluster."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

import clinotel.instrumentation as ct
from clinotel.collector.log.wal import WriteAheadLog
from clinotel.collector.receiver.export import ReceiverStats
from clinotel.collector.store import pipeline as ingest
from clinotel.collector.store import rollups as refresher
from clinotel.collector.store import schema
from clinotel.collector.store.migrations import frozen
from clinotel.collector.telemetry.metrics import collect, render
from clinotel.collector.writer import WriterStats
from clinotel.instrumentation.testing import FakeClock, capture
from clinotel.instrumentation.testing.workflows import triage
from clinotel.model import clinical, efficiency, rollups
from clinotel.model.indicators import INDICATORS
from clinotel.model.tables import ROLLUP_TABLES
from collector.tests.test_outcome_join import DAY_MS, _scenario, _store, _trace

_KEY = ("TenantId", "WorkflowKind", "Hour", *rollups.DIMENSIONS[2:])
_ROLLED = [INDICATORS[name] for name in rollups.ROLLED_UP]


def _shown(v: Any) -> Any:
    """A figure as a panel shows it: a quantile of no rows (NaN, or NULL over a nullable column)
    is no value either way."""
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    return v


def _figures(client: Any, sql: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    rows = client.query(sql).result_rows
    return {tuple(r[: len(_KEY)]): tuple(_shown(v) for v in r[len(_KEY) :]) for r in rows}


def _from_rollup(client: Any, o: schema.SchemaOptions) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Each (tenant, kind, hour, dimensions…) the rollup has: each indicator's value and sample."""
    aggregates = [a for i in _ROLLED for a in (rollups.value(i), rollups.sample(i))]
    return _figures(
        client,
        f"SELECT {', '.join(_KEY)}, {', '.join(aggregates)} FROM {o.name(rollups.WORKFLOW_HOURS)} "
        f"GROUP BY {', '.join(_KEY)}",
    )


def _from_workflows(client: Any, o: schema.SchemaOptions) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The same figures from the workflows view with the indicators' own SQL."""
    aggregates = [a for i in _ROLLED for a in i.conditional()]
    return _figures(
        client,
        f"SELECT TenantId, WorkflowKind, toStartOfHour(toDateTime(StartTime, 'UTC')) AS Hour, "
        f"{', '.join(rollups.DIMENSIONS[2:])}, {', '.join(aggregates)} "
        f"FROM {o.name(clinical.WORKFLOWS)} FINAL GROUP BY {', '.join(_KEY)}",
    )


def _sums(client: Any, o: schema.SchemaOptions, where: str = "1") -> dict[str, int]:
    names = [c for i in _ROLLED for c in rollups.columns(i) if not c.endswith("_values")]
    row = client.query(
        f"SELECT {', '.join(f'sum({c})' for c in names)} FROM {o.name(rollups.WORKFLOW_HOURS)} WHERE {where}"
    ).result_rows[0]
    return dict(zip(names, (int(v) for v in row), strict=True))


def _start_hour(client: Any, o: schema.SchemaOptions, trace: str) -> Any:
    return client.query(
        f"SELECT toStartOfHour(toDateTime(min(StartTime), 'UTC')) FROM {o.name(clinical.WORKFLOWS)} "
        f"WHERE TraceId = '{trace}'"
    ).result_rows[0][0]


def test_late_truth_counts_in_its_workflows_hour_and_nothing_twice(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    traces = _scenario(client, pipeline, tmp_path)
    done = refresher.refresh(client, options)
    assert done.rows > 0
    assert done.partitions >= 1
    assert _from_rollup(client, options) == _from_workflows(client, options)
    total = _sums(client, options)
    # four workflows; model triage decisions with their truth: ENC-1 (a) ESI-3 vs ESI-2 (a day
    # later), ENC-2 ESI-4 vs ESI-3 (same insert), ENC-1 (b) ESI-3 vs ESI-4 (days later)
    assert total["workflows_rows"] == 4, "each workflow once, however many inserts its row took"
    assert (total["under_triage_rate_rows"], total["under_triage_rate_hits"]) == (3, 2)
    assert (total["high_risk_miss_rate_rows"], total["high_risk_miss_rate_hits"]) == (1, 1)
    assert total["escalation_miss_rate_rows"] == 1
    hour = _start_hour(client, options, traces["enc1_a"])
    at = f"toDateTime('{hour:%Y-%m-%d %H:%M:%S}', 'UTC')"
    assert _sums(client, options, f"Hour = {at}")["high_risk_miss_rate_hits"] == 1, (
        "the late truth counts in the hour its workflow started"
    )
    assert _sums(client, options, f"Hour > {at} + INTERVAL 12 HOUR")["high_risk_miss_rate_rows"] == 0, (
        "not in the hour the truth arrived"
    )
    # a second refresh replaces, never adds
    refresher.refresh(client, options)
    assert _sums(client, options) == total


def test_a_workflow_in_two_inserts_counts_once_with_its_dimensions(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    clock = FakeClock()
    with capture(clock=clock, tenant="st-marys") as spans:
        trace = _trace(triage(clock, "ENC-7"))
    ordered = sorted(spans.all, key=lambda s: s.start_time)
    half = len(ordered) // 2
    _store(client, pipeline, tmp_path / "a.wal", ordered[:half])
    refresher.refresh(client, options)
    _store(client, pipeline, tmp_path / "b.wal", ordered[half:])
    refresher.refresh(client, options)
    assert _from_rollup(client, options) == _from_workflows(client, options)
    assert _sums(client, options)["workflows_rows"] == 1
    keys = [k for k in _from_rollup(client, options) if k[1] == "triage"]
    assert len(keys) == 1, keys
    assert keys[0][3:7] == ("north", "ed", "4.0.1", "canary"), "the dimensions of the whole workflow"
    assert _start_hour(client, options, trace) == keys[0][2]


def test_a_windowed_refresh_replaces_its_months_and_keeps_the_older_ones(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    _scenario(client, pipeline, tmp_path)
    clock = FakeClock()
    with capture(clock=clock, tenant="st-marys") as later:
        clock.advance_ms(45 * DAY_MS)
        triage(clock, "ENC-9")
    _store(client, pipeline, tmp_path / "later.wal", list(later.all))
    refresher.refresh(client, options)
    before = _from_rollup(client, options)
    months = sorted({(k[2].year, k[2].month) for k in before})
    assert len(months) == 2, months
    newest = date(*months[-1], 1)
    # the older month's workflows taken out of the view behind the rollup's back: a window from the
    # newest month recomputes that month alone, so the older one keeps what it had
    client.command(
        f"ALTER TABLE {options.name(clinical.WORKFLOWS)} DELETE WHERE StartTime < toDateTime64('{newest}', 9, 'UTC')",
        settings={"mutations_sync": 2},
    )
    done = refresher.refresh(client, options, newest + timedelta(days=3))
    assert done.since == newest, "a window starts on the first of its month"
    after = _from_rollup(client, options)
    older = {k: v for k, v in before.items() if k[2].date() < newest}
    assert older
    assert {k: v for k, v in after.items() if k[2].date() < newest} == older
    assert {k: v for k, v in after.items() if k[2].date() >= newest} == _from_workflows(client, options)


def _store_at(
    client: Any,
    pipeline: ingest.Pipeline,
    path: Path,
    at: datetime,
    record: Callable[[FakeClock], object],
    tenant: str = "st-marys",
) -> None:
    """What `record` records on a clock started at `at`, stored in one insert."""
    clock = FakeClock(int(at.timestamp() * 1e9))
    with capture(clock=clock, tenant=tenant) as recorded:
        record(clock)
    _store(client, pipeline, path, list(recorded.all), tenant)


def _one_a_month(months: int) -> Callable[[FakeClock], object]:
    """Triage workflows `ENC-M0`…, one every 31 days."""

    def record(clock: FakeClock) -> None:
        for i in range(months):
            triage(clock, f"ENC-M{i}")
            clock.advance_ms(31 * DAY_MS)

    return record


def _late(*, with_half_year: bool) -> Callable[[FakeClock], object]:
    """What arrives on 2023-07-20 for `_one_a_month`'s workflows: truth for ENC-M3 (a quarter
    late), for ENC-M0 (half a year late) when asked, and rework on ENC-M2."""

    def record(_: FakeClock) -> None:
        ct.record_outcome("triage", identifier="ENC-M3", label="ESI-1", escalation_needed=True)
        if with_half_year:
            ct.record_outcome("triage", identifier="ENC-M0", label="ESI-2", escalation_needed=False)
        ct.record_rework("reopened", kind="triage", identifier="ENC-M2", minutes=12.5, touches=2)

    return record


def test_a_window_meets_truth_on_a_workflow_older_than_it_without_counting_a_workflow_more(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    """Ground truth that arrives two months after its workflow started lands in the workflows
    view's partition of the month it arrived; a windowed refresh of that month merges it with its
    workflow (outside the window, so the workflow's own hour waits for the whole refresh) instead
    of counting it as a workflow of its own, and the truth rollup counts it joined."""
    _store_at(
        client, pipeline, tmp_path / "workflow.wal", datetime(2030, 1, 10, 9, tzinfo=UTC), lambda c: triage(c, "ENC-Q")
    )
    refresher.refresh(client, options)
    _store_at(
        client, pipeline, tmp_path / "late.wal", datetime(2030, 3, 20, tzinfo=UTC),
        lambda _: ct.record_outcome("triage", identifier="ENC-Q", label="ESI-1", escalation_needed=True),
    )  # fmt: skip

    done = refresher.refresh(client, options, date(2030, 3, 20))

    assert done.since == date(2030, 3, 1)
    assert _sums(client, options)["workflows_rows"] == 1, "the truth is no workflow of its own"
    truth = client.query(
        f"SELECT Joined, sum(Outcomes) FROM {options.name(rollups.TRUTH_HOURS)} GROUP BY Joined"
    ).result_rows
    assert truth == [(1, 1)], "joined to the workflow it judged"
    refresher.refresh(client, options)
    assert _from_rollup(client, options) == _from_workflows(client, options), "the whole refresh: in its hour"
    january = "Hour < toDateTime('2030-02-01', 'UTC')"
    assert _sums(client, options, january)["under_triage_rate_rows"] == 1


def test_a_day_with_no_workflows_left_is_emptied(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    _scenario(client, pipeline, tmp_path)
    refresher.refresh(client, options)
    assert _sums(client, options)["workflows_rows"] == 4
    client.command(f"TRUNCATE TABLE {options.name(clinical.WORKFLOWS)}")
    refresher.refresh(client, options)
    assert _sums(client, options)["workflows_rows"] == 0
    assert not client.query(f"SELECT * FROM {options.name(rollups.WORKFLOW_HOURS)}").result_rows


def test_a_refresh_runs_behind_the_writer_as_the_readers_do(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    from clinotel.collector.readport.reader import READER_NICE

    _scenario(client, pipeline, tmp_path)
    inserts: list[dict[str, Any]] = []

    class Recording:
        """The engine's client, recording the settings of each rollup INSERT it runs."""

        def command(self, sql: str, settings: dict[str, Any] | None = None) -> Any:
            if sql.startswith("INSERT INTO"):
                inserts.append(dict(settings or {}))
            return client.command(sql, settings=settings)

        def query(self, sql: str) -> Any:
            return client.query(sql)

    refresher.refresh(Recording(), options)
    assert len(inserts) == len(ROLLUP_TABLES), "one INSERT per rollup"
    assert all(s["os_thread_priority"] == READER_NICE for s in inserts)
    assert _sums(client, options)["workflows_rows"] == 4


def test_refreshes_at_once_agree_and_leave_no_staging_table(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    _scenario(client, pipeline, tmp_path)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            refresher.refresh(client, options)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert _from_rollup(client, options) == _from_workflows(client, options)
    left = client.query(
        f"SELECT name FROM system.tables WHERE database = '{options.database}' AND name LIKE '%refresh%'"
    ).result_rows
    assert left == []


def test_a_failed_refresh_keeps_the_rollups_and_a_later_one_catches_up(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    _scenario(client, pipeline, tmp_path)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    r = refresher.RollupRefresher(client, options, window_days=7, clock=lambda: now, max_memory_bytes=1)
    assert r.refresh_once() is None, "a refresh the engine refuses (1 byte of memory) fails"
    assert r.failures == 1
    shown = render([*_rollup_families(r)])
    assert 'clinotel_rollups_refresh_failures_total{what="refresh"} 1' in shown, "in /metrics: the ticket's source"
    assert "clinotel_rollups_last_refresh_timestamp_seconds 0" in shown
    assert not client.query(f"SELECT * FROM {options.name(rollups.WORKFLOW_HOURS)}").result_rows
    r.max_memory_bytes = r.whole_memory_bytes = None
    windowed = r.refresh_once()
    assert windowed is not None
    assert time.time() - r.figures().last_refresh_s < 60
    assert windowed.since == (now - timedelta(days=7)).date().replace(day=1), (
        "a failed whole refresh is tried again when next due; the recent months are refreshed meanwhile"
    )
    first = r.refresh_once(full=True)
    assert first is not None
    assert first.since is None
    second = r.refresh_once()
    assert second is not None
    assert second.unchanged, "nothing changed since the whole one"
    assert _from_rollup(client, options) == _from_workflows(client, options)


class _DiskFullOnInsert:
    """The engine's client, but every INSERT fails as the engine fails one on a full disk (what
    a collector whose store's disk filled met; a full disk itself is `test_disk_full`'s)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def command(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql.lstrip().upper().startswith("INSERT"):
            from clickhouse_connect.driver.exceptions import DatabaseError

            raise DatabaseError(
                "Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)", code=243
            )
        return self._client.command(sql, *args, **kwargs)


def test_a_whole_refresh_that_met_a_full_disk_says_so_and_is_tried_again_within_the_hour(
    client: Any, options: schema.SchemaOptions, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk for a few seconds failed the whole refresh, advised more memory, and put the
    next whole refresh off 24 h (an operator's fault injection)."""
    r = refresher.RollupRefresher(_DiskFullOnInsert(client), options, window_days=7)
    with caplog.at_level(logging.ERROR, logger="clinotel.collector"):
        assert r.refresh_once(full=True) is None
    message = caplog.records[-1].getMessage()
    for said in ("NOT_ENOUGH_SPACE", "Free space on the store's disk", "tried again in 1 h"):
        assert said in message, message
    assert "--memory-mb" not in message, message
    assert r._full_at is not None
    assert r.full_every_s - (time.monotonic() - r._full_at) <= refresher.FULL_RETRY_WHEN_DISK_FULL_S + 1


def _rollup_families(r: refresher.RollupRefresher) -> list[Any]:
    """The `/metrics` families of a refresher's figures, as the collector shows them."""
    families = collect(ReceiverStats(), cast(WriteAheadLog, _NoLog()), WriterStats(), rollups=r.figures())
    return [f for f in families if f.name.startswith("clinotel_rollups_")]


class _NoLog:
    pending_bytes = 0
    max_bytes = 1


def test_the_rollup_columns_are_the_indicators_it_holds(client: Any, options: schema.SchemaOptions) -> None:
    rows = client.query(
        f"SELECT name, type FROM system.columns WHERE database = '{options.database}' "
        f"AND table = '{rollups.WORKFLOW_HOURS}'"
    ).result_rows
    stored = dict(rows)
    expected = {
        *rollups.DIMENSIONS, rollups.TIME_COLUMN, *(c for i in _ROLLED for c in rollups.columns(i)),
        *(name for name, _ in efficiency.ROLLUP_SUMS), rollups.LAST_START, rollups.LEAD_TIME_VALUES,
    }  # fmt: skip
    assert set(stored) == expected
    assert stored[rollups.LEAD_TIME_VALUES] == "Array(Float64)"
    for i in _ROLLED:
        if i.kind == "quantile":
            assert stored[f"{i.name}_values"] == "Array(Float64)", f"{i.name}: its values (migration 17)"
    assert all(i.table == clinical.WORKFLOWS for i in _ROLLED)


def test_migration_9_renders_for_a_cluster() -> None:
    m9 = frozen()[8]
    o = schema.SchemaOptions(cluster="obs", ttl_days=30)
    text = "\n".join(m9.statements(o))
    assert "{{" not in text
    assert all(" ON CLUSTER " in s for s in m9.statements(o))
    assert "ReplicatedMergeTree('/clickhouse/tables/{shard}/clinotel/clinical_workflow_hours'" in text
    assert "clinical_workflow_hours_local" in text
    assert "Distributed(" in text
    assert "TTL Hour + toIntervalDay(30)" in text
    single = "\n".join(m9.statements(schema.SchemaOptions()))
    assert "ON CLUSTER" not in single
    assert "_local" not in single
    assert "Replicated" not in single


@pytest.mark.parametrize("since", [date(1970, 1, 2), date(2105, 12, 31)])
def test_a_window_outside_the_data_changes_nothing_or_everything_right(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path, since: Any
) -> None:
    _scenario(client, pipeline, tmp_path)
    refresher.refresh(client, options)
    before = _from_rollup(client, options)
    refresher.refresh(client, options, since)
    assert _from_rollup(client, options) == before == _from_workflows(client, options)


@pytest.mark.parametrize("since", [date(1, 1, 1), date(1970, 1, 1), date(2106, 1, 1), date(9999, 12, 31)])
def test_a_day_the_rollup_cannot_hold_is_refused_before_anything_is_touched(
    client: Any, options: schema.SchemaOptions, since: date
) -> None:
    with pytest.raises(ValueError, match="a refresh starts on a day from 1970-01-02 to 2105-12-31"):
        refresher.refresh(client, options, since)


def test_a_refresh_writes_more_partitions_than_one_insert_may_by_default(
    client: Any, options: schema.SchemaOptions
) -> None:
    """The benchmark found it: a whole store's history was more than 100 tenant-months in one
    INSERT, which ClickHouse refuses by default. A refresh now goes a month at a time, and a month
    of more than 100 tenants is still one INSERT: it is written too."""
    start = datetime(2026, 3, 2, tzinfo=UTC)
    rows = [(f"tenant-{t:03d}", "triage", f"{t:032x}", start + timedelta(hours=t % 24), 1) for t in range(130)]
    client.insert(
        options.name(clinical.WORKFLOWS),
        rows,
        column_names=["TenantId", "WorkflowKind", "TraceId", "StartTime", "Spans"],
        settings={"throw_on_max_partitions_per_insert_block": 0},
    )
    done = refresher.refresh(client, options)
    assert done.partitions == 130, "a tenant-month each (no spans, no cohorts: the other rollups are empty)"
    assert _sums(client, options)["workflows_rows"] == 130
    windowed = refresher.refresh(client, options, date(2026, 3, 20))
    assert windowed.partitions == 130


class _EngineFullError(Exception):
    """What the engine raises when it as a whole is at its cap (the writer's and readers' memory)."""

    code = 241  # MEMORY_LIMIT_EXCEEDED


def _engine_full() -> _EngineFullError:
    return _EngineFullError("Code: 241. DB::Exception: (total) memory limit exceeded: would use 768.01 MiB")


def _triage_at(client: Any, pipeline: ingest.Pipeline, tmp_path: Path, at: datetime, encounter: str) -> None:
    """One more triage workflow of st-marys, stored, started at `at`."""
    clock = FakeClock(int(at.timestamp() * 1e9))
    with capture(clock=clock, tenant="st-marys") as spans:
        triage(clock, encounter)
    _store(client, pipeline, tmp_path / f"{encounter}.wal", list(spans.all))


def test_a_window_past_its_share_is_refreshed_within_a_whole_refreshs_share_from_then_on(
    client: Any,
    options: schema.SchemaOptions,
    pipeline: ingest.Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One tenant's window cannot be split by tenant, and grows with its monthly volume (at 10M spans
    of one tenant it needed 160-192 MB, a windowed refresh's whole share of a 768 MB engine): a
    window past its share is recomputed at once within a whole refresh's, the same figures, and
    later windows go there straight (a try that fails holds its memory beside the writer)."""
    _scenario(client, pipeline, tmp_path)
    shares: list[int | None] = []
    real = refresher.refresh

    def spied(*args: Any, max_memory_bytes: int | None = None, **kwargs: Any) -> refresher.Refreshed:
        if args[2:] and args[2] is not None:  # windowed refreshes only
            shares.append(max_memory_bytes)
        return real(*args, max_memory_bytes=max_memory_bytes, **kwargs)

    monkeypatch.setattr(refresher, "refresh", spied)
    now = datetime(2030, 1, 10, tzinfo=UTC)
    small, whole = 1 << 20, 256 << 20  # no query of the refresh fits in 1 MB
    r = refresher.RollupRefresher(
        client, options, window_days=7, clock=lambda: now, max_memory_bytes=small, whole_memory_bytes=whole
    )
    assert r.refresh_once() is not None  # the first is whole
    assert shares == []

    def more(encounter: str) -> None:
        _triage_at(client, pipeline, tmp_path, now - timedelta(days=2), encounter)  # within the window

    more("ENC-W1")
    with caplog.at_level(logging.WARNING, logger="clinotel.collector"):
        windowed = r.refresh_once()
    assert windowed is not None
    assert not windowed.unchanged
    assert windowed.since == date(2030, 1, 1)
    assert shares == [small, whole]
    assert "did not fit in a windowed refresh's memory (1 MB" in caplog.text
    assert "with a whole refresh's (256 MB) until the next whole refresh" in caplog.text
    assert r.failures == 0
    assert _from_rollup(client, options) == _from_workflows(client, options)

    shown = render([*_rollup_families(r)])
    assert "clinotel_rollups_window_share_misses_total 1" in shown
    assert 'clinotel_rollups_refresh_failures_total{what="refresh"} 0' in shown, "not a failure: no ticket"

    more("ENC-W2")
    assert r.refresh_once() is not None
    assert shares == [small, whole, whole], "straight to the whole share"
    assert _from_rollup(client, options) == _from_workflows(client, options)

    # the window's size varies (a whole previous month from the 1st to the 7th): after the next
    # whole refresh it is tried in its own share again
    assert r.refresh_once(full=True) is not None
    more("ENC-W3")
    assert r.refresh_once() is not None
    assert shares == [small, whole, whole, small, whole]
    assert r.window_share_misses == 2
    assert r.failures == 0


def test_a_window_refused_by_a_full_engine_fails_and_is_not_moved_to_the_whole_share(
    client: Any,
    options: schema.SchemaOptions,
    pipeline: ingest.Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine as a whole at its cap (the writer's and readers' memory) says nothing of the
    window's size: that refresh fails (tried again at the next interval, in its own share), it is
    not done again with twice the memory into a full engine."""
    _scenario(client, pipeline, tmp_path)
    now = datetime(2030, 1, 10, tzinfo=UTC)
    r = refresher.RollupRefresher(
        client, options, window_days=7, clock=lambda: now, max_memory_bytes=64 << 20, whole_memory_bytes=256 << 20
    )
    assert r.refresh_once() is not None  # whole
    _triage_at(client, pipeline, tmp_path, now - timedelta(days=2), "ENC-F")
    command = client.command

    def full(sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql.startswith("INSERT INTO"):
            raise _engine_full()
        return command(sql, *args, **kwargs)

    monkeypatch.setattr(client, "command", full)
    assert r.refresh_once() is None
    assert r.failures == 1
    assert r.window_share_misses == 0
    assert not r._window_in_whole_share


def test_an_unchanged_store_is_not_recomputed_and_a_change_is(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    _scenario(client, pipeline, tmp_path)
    now = datetime(2030, 1, 10, tzinfo=UTC)
    r = refresher.RollupRefresher(client, options, window_days=7, clock=lambda: now)
    first = r.refresh_once()
    assert first is not None
    assert first.since is None
    idle = r.refresh_once()
    assert idle is not None
    assert idle.unchanged, "no part changed: nothing recomputed"
    clock = FakeClock()
    with capture(clock=clock, tenant="st-marys") as more:
        triage(clock, "ENC-8")
    _store(client, pipeline, tmp_path / "more.wal", list(more.all))
    again = r.refresh_once()
    assert again is not None
    assert not again.unchanged
    assert again.since == date(2030, 1, 1)


def test_a_whole_refresh_past_its_memory_goes_a_month_at_a_time_and_counts_each_workflow_once(
    client: Any,
    options: schema.SchemaOptions,
    pipeline: ingest.Pipeline,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three years of workflows, one a month, one whose rows straddle two months (its later spans
    stored first), and ground truth that arrived a quarter after its workflow: a whole refresh
    within 14 MB, which merging every month's partition at once exceeds (it needed about 17 MB
    here; a 30M-span store outgrew half of a 768 MB engine that way), goes a month at a time and
    gives what the whole view gives: every workflow once, in the hour it started, with its truth."""
    _store_at(client, pipeline, tmp_path / "monthly.wal", datetime(2023, 1, 15, tzinfo=UTC), _one_a_month(36))
    midnight = datetime(2024, 7, 1, tzinfo=UTC)
    clock = FakeClock(int((midnight - timedelta(seconds=30)).timestamp() * 1e9))
    with capture(clock=clock, tenant="st-marys") as straddling:
        trace = _trace(triage(clock, "ENC-S"))  # the queue runs past midnight into July
    spans = list(straddling.all)
    july = [s for s in spans if s.start_time >= midnight.timestamp() * 1e9]
    assert july, "some spans start after midnight"
    assert len(july) < len(spans), "and some before"
    _store(client, pipeline, tmp_path / "july.wal", july)
    _store(client, pipeline, tmp_path / "june.wal", [s for s in spans if s not in july])
    # ground truth a quarter late: stored in the view's partition of the month it arrived; and
    # rework on a workflow of two months before
    _store_at(client, pipeline, tmp_path / "late.wal", datetime(2023, 7, 20, tzinfo=UTC), _late(with_half_year=False))

    with caplog.at_level(logging.INFO, logger="clinotel.collector"):
        done = refresher.refresh(client, options, max_memory_bytes=14 << 20)

    assert f"{rollups.WORKFLOW_HOURS} does not fit" in caplog.text, "the month-by-month path is what is tested"

    assert done.partitions >= 37
    assert _from_rollup(client, options) == _from_workflows(client, options)
    assert _sums(client, options)["workflows_rows"] == 37, "each workflow once, the straddling one too"
    april = "Hour >= toDateTime('2023-04-01', 'UTC') AND Hour < toDateTime('2023-05-01', 'UTC')"
    assert _sums(client, options, april)["under_triage_rate_rows"] == 1, "the quarter-late truth in its workflow"
    effort = ", ".join(f"sum({column})" for column, _ in efficiency.ROLLUP_SUMS)
    per_workflow = ", ".join(f"sum({each})" for _, each in efficiency.ROLLUP_SUMS)
    rolled = client.query(f"SELECT {effort} FROM {options.name(rollups.WORKFLOW_HOURS)}").result_rows[0]
    expected = client.query(
        f"SELECT {per_workflow} FROM ({efficiency.per_workflow_sql(options.database, '1')})"
    ).result_rows[0]
    assert rolled == expected, "the effort and rework of every workflow, as from the view"
    assert rolled[-1] == 12.5, "the rework minutes"
    members = client.query(
        f"SELECT sum(members) FROM {options.name(rollups.COHORT_HOURS)} WHERE Dimension = 'AgeBand'"
    ).result_rows[0][0]
    assert members == 37
    hour = _start_hour(client, options, trace)
    assert (hour.year, hour.month) == (2024, 6)
    june = "Hour >= toDateTime('2024-06-01', 'UTC') AND Hour < toDateTime('2024-07-01', 'UTC')"
    assert _sums(client, options, june)["workflows_rows"] == 2, "June's monthly workflow and the straddling one"


_MONTHLY = (rollups.WORKFLOW_HOURS, rollups.COHORT_HOURS, rollups.SIGNAL_HOURS, rollups.STAGE_HOURS)


def _rows(client: Any, o: schema.SchemaOptions, table: str) -> list[tuple[Any, ...]]:
    """Every row of a rollup, its states as the figures they give (floats to 9 places: sums in
    another order differ in the 15th digit)."""
    types = client.query(
        f"SELECT name, type FROM system.columns WHERE database = '{o.database}' AND table = '{table}'"
    ).result_rows
    read = [f"finalizeAggregation({n})" if t.startswith("AggregateFunction") else n for n, t in types]
    rows = client.query(f"SELECT {', '.join(read)} FROM {o.name(table)}").result_rows
    return sorted(tuple(_shown(round(v, 9) if isinstance(v, float) else v) for v in r) for r in rows)


def _too_big_at_once(monkeypatch: pytest.MonkeyPatch, tables: tuple[str, ...]) -> list[str]:
    """Whole refreshes of `tables` fail as past the refresh's memory; the tables tried, in order."""
    swap = refresher._swap
    tried: list[str] = []

    def too_big(c: Any, o: schema.SchemaOptions, table: str, select: Any, window: str, s: Any, **kw: Any) -> Any:
        if window == "1" and table in tables:
            tried.append(table)
            raise RuntimeError("as past the refresh's memory")
        return swap(c, o, table, select, window, s, **kw)

    monkeypatch.setattr(refresher, "_swap", too_big)
    monkeypatch.setattr(refresher, "memory_limit_exceeded", lambda e: "past the refresh's memory" in str(e))
    return tried


def test_every_rollup_month_by_month_equals_the_whole_and_leaves_no_staging_table(
    client: Any,
    options: schema.SchemaOptions,
    pipeline: ingest.Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The four rollups that can go a month at a time, each made to (as past its memory): every
    row as the whole refresh gives it, with truth a quarter and half a year late, rework months
    after its workflow, and workflows in the last and first hours of a month (in another partition
    than their UTC month's on an engine far from UTC: `test_..._far_from_utc`); no staging table
    is left."""
    _store_at(client, pipeline, tmp_path / "monthly.wal", datetime(2023, 1, 15, tzinfo=UTC), _one_a_month(12))
    for edge, name in (
        (datetime(2023, 6, 30, 20, tzinfo=UTC), "ENC-E1"),
        (datetime(2023, 9, 1, 2, tzinfo=UTC), "ENC-E2"),
    ):
        _store_at(client, pipeline, tmp_path / f"{name}.wal", edge, lambda c, name=name: triage(c, name))
    _store_at(client, pipeline, tmp_path / "late.wal", datetime(2023, 7, 20, tzinfo=UTC), _late(with_half_year=True))
    refresher.refresh(client, options)
    whole = {t: _rows(client, options, t) for t in _MONTHLY}
    for t in _MONTHLY:
        client.command(f"TRUNCATE TABLE {options.name(t)}")

    refused = _too_big_at_once(monkeypatch, _MONTHLY)
    refresher.refresh(client, options)

    assert sorted(refused) == sorted(_MONTHLY), "each went month by month"
    for t in _MONTHLY:
        assert _rows(client, options, t) == whole[t], t
    left = client.query(
        f"SELECT name FROM system.tables WHERE database = '{options.database}' AND name LIKE '%refresh%'"
    ).result_rows
    assert left == []


def test_a_rollup_that_went_month_by_month_is_not_tried_at_once_again(
    client: Any,
    options: schema.SchemaOptions,
    pipeline: ingest.Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The collector's next whole refresh goes straight to a month at a time for what did not fit
    at once last time (a try that fails holds the refresh's memory beside the writer); a new
    refresher (a restart, perhaps with more memory) tries at once again."""
    _scenario(client, pipeline, tmp_path)
    tried = _too_big_at_once(monkeypatch, (rollups.WORKFLOW_HOURS,))
    loop = refresher.RollupRefresher(client, options)
    first = loop.refresh_once(full=True)
    assert first is not None
    assert first.month_by_month == {rollups.WORKFLOW_HOURS}
    assert tried == [rollups.WORKFLOW_HOURS]
    figures = _from_rollup(client, options)
    assert figures == _from_workflows(client, options)

    again = loop.refresh_once(full=True)
    assert again is not None
    assert again.month_by_month == {rollups.WORKFLOW_HOURS}
    assert tried == [rollups.WORKFLOW_HOURS], "not tried at once a second time"
    assert _from_rollup(client, options) == figures

    refresher.RollupRefresher(client, options).refresh_once(full=True)
    assert len(tried) == 2, "a new refresher tries at once first"


def test_a_whole_refresh_refused_by_a_full_engine_goes_month_by_month_without_remembering_it(
    client: Any,
    options: schema.SchemaOptions,
    pipeline: ingest.Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine as a whole at its cap says nothing of the rollup's size: that whole refresh goes
    a month at a time, and the next one tries at once again (it is not remembered)."""
    _scenario(client, pipeline, tmp_path)
    swap = refresher._swap
    tried: list[str] = []

    def full_once(c: Any, o: schema.SchemaOptions, table: str, select: Any, window: str, s: Any, **kw: Any) -> Any:
        if window == "1" and table == rollups.WORKFLOW_HOURS:
            tried.append(table)
            if len(tried) == 1:
                raise _engine_full()
        return swap(c, o, table, select, window, s, **kw)

    monkeypatch.setattr(refresher, "_swap", full_once)
    loop = refresher.RollupRefresher(client, options)
    first = loop.refresh_once(full=True)
    assert first is not None
    assert first.month_by_month == frozenset(), "not remembered"
    assert _from_rollup(client, options) == _from_workflows(client, options)
    assert loop.refresh_once(full=True) is not None
    assert tried == [rollups.WORKFLOW_HOURS, rollups.WORKFLOW_HOURS], "tried at once again"


def test_month_by_month_on_an_engine_far_from_utc_equals_the_whole(tmp_path: Path) -> None:
    """The engine cuts the workflows view's partitions in its own time zone, the rollups' months are
    UTC's: on an engine at UTC+14 (and one at UTC-11) a workflow of the last (first) hours of a UTC
    month is in the next (previous) month's partition, and month by month still gives every row of
    the whole refresh. The engine's zone is its process's (`TZ`), so the test runs in a child."""
    here = Path(__file__).resolve()
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
        test = f"{here}::test_every_rollup_month_by_month_equals_the_whole_and_leaves_no_staging_table"
        basetemp = str(tmp_path / zone.replace("/", "_"))
        child = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", basetemp, test],
            env={**os.environ, "TZ": zone}, cwd=here.parents[2], capture_output=True, text=True, timeout=240,
            check=False,
        )  # fmt: skip
        assert child.returncode == 0, f"{zone}:\n{child.stdout[-3000:]}\n{child.stderr[-2000:]}"
        assert "1 passed" in child.stdout


def _waits(clock: FakeClock, n: int, seed: int) -> None:
    """`n` triage workflows a few minutes apart, each with a queue wait of its own (1 s to 2 h)."""
    import random

    rng = random.Random(seed)
    for k in range(n):
        clock.advance_ms(rng.randint(1, 6) * 60_000)
        cohort = ct.Cohort(language=("en", "es")[k % 2])
        with ct.workflow("triage", identifier=f"ENC-{k}", site="north", department="ed", cohort=cohort):
            with ct.stage("queue", attributes={"clinical.queue.name": "triage_nurse"}):
                clock.advance_ms(rng.randint(1_000, 7_200_000))
            with ct.stage("decide") as st:
                st.record_decision(ct.Decision(source=ct.DecisionSource.MODEL, value="ESI-3", risk=ct.Risk.MEDIUM))
            with ct.stage("complete") as st:
                st.record_outcome(status="completed")


def test_migration_17_keeps_the_counts_and_the_quantiles_read_the_same_after_a_refresh(
    client: Any, tmp_path: Path
) -> None:
    """Migration 17 replaced the quantile indicators' sampled states in the workflow and cohort
    rollups with their values. On a store at version 16 with rollup rows (written as its refresh
    wrote them), the migration keeps every count; the quantiles read as none until the next whole
    refresh (the collector runs one at its start), and then as the workflows view gives them, and
    as `quantile()` gave them before (up to 8,192 values: the same interpolation)."""
    import uuid

    o = schema.SchemaOptions(database=f"v16_{uuid.uuid4().hex[:10]}")
    try:
        schema.apply(client, o, until=16)
        pipe = ingest.install(client, o)
        clock = FakeClock()
        with capture(clock=clock, tenant="st-marys") as got:
            _waits(clock, 120, seed=17)
        _store(client, pipe, tmp_path / "w.wal", list(got.all))
        wait = INDICATORS["queue_wait_p95_ms"]
        hour = "toStartOfHour(toDateTime(StartTime, 'UTC'))"
        waited = f"FROM {o.name(clinical.WORKFLOWS)} FINAL WHERE {wait.where}"
        client.command(
            f"INSERT INTO {o.name(rollups.WORKFLOW_HOURS)} (TenantId, WorkflowKind, Hour, workflows_rows, "
            f"queue_wait_p95_ms_rows, queue_wait_p95_ms_state) SELECT TenantId, WorkflowKind, {hour} AS Hour, "
            f"count(), count(), quantileState(0.95)(toFloat64({wait.expr})) {waited} "
            "GROUP BY TenantId, WorkflowKind, Hour"
        )
        before = client.query(
            f"SELECT Hour, sum(workflows_rows), quantileMerge(0.95)(queue_wait_p95_ms_state) "
            f"FROM {o.name(rollups.WORKFLOW_HOURS)} GROUP BY Hour ORDER BY Hour"
        ).result_rows
        assert len(before) >= 4
        assert sum(r[1] for r in before) == 120
        assert schema.apply(client, o, until=17) == [17]

        def figures() -> list[tuple[Any, ...]]:
            rows = client.query(
                f"SELECT Hour, sum(workflows_rows), {rollups.value(wait)} FROM {o.name(rollups.WORKFLOW_HOURS)} "
                "GROUP BY Hour ORDER BY Hour"
            ).result_rows
            return [(h, n, _shown(q)) for h, n, q in rows]

        assert figures() == [(h, n, None) for h, n, _ in before], "counts kept, no values until a refresh"
        schema.apply(client, o)  # as a collector's start does before its whole refresh: the later migrations too
        refresher.refresh(client, o)
        assert figures() == [(h, n, _shown(q)) for h, n, q in before]
        view = client.query(
            f"SELECT {hour} AS Hour, count(), {wait.value} {waited} GROUP BY Hour ORDER BY Hour"
        ).result_rows
        assert figures() == [(h, n, _shown(q)) for h, n, q in view]
        cohort = client.query(
            f"SELECT Grp, {rollups.value(wait)} FROM {o.name(rollups.COHORT_HOURS)} "
            "WHERE Dimension = 'Language' GROUP BY Grp ORDER BY Grp"
        ).result_rows
        groups = client.query(
            f"SELECT Language, {wait.value} FROM {o.name(clinical.WORKFLOWS)} FINAL WHERE {wait.where} "
            "GROUP BY Language ORDER BY Language"
        ).result_rows
        assert [g for g, _ in cohort] == ["en", "es"]
        assert [(g, _shown(q)) for g, q in cohort] == [(g, _shown(q)) for g, q in groups]
    finally:
        client.command(f"DROP DATABASE IF EXISTS {o.database}")


def test_tenants_refreshed_a_few_at_a_time_give_every_rollup_row_of_all_at_once(
    client: Any,
    options: schema.SchemaOptions,
    pipeline: ingest.Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refresh merges the workflows of as many tenants at once as fit in a share of its memory (a
    merge holds a granule of every part it reads: 40 tenants' small parts took a windowed refresh
    past its 192 MB). Made to take each tenant alone, every rollup's rows, windowed, whole and
    month by month, are those of all tenants at once, with truth months late on workflows of
    two tenants (read from other partitions: each tenant's own only), rework, and a tenant whose
    only rows in the window and in its workflow's months are of a workflow merged apart."""
    tenants = ("general", "north-west", "st-marys", "west-end")
    for tenant in tenants[:3]:
        _store_at(
            client, pipeline, tmp_path / f"{tenant}.wal", datetime(2023, 1, 15, tzinfo=UTC), _one_a_month(12), tenant
        )
    for tenant in tenants[1:3]:
        late = _late(with_half_year=tenant == "st-marys")
        _store_at(client, pipeline, tmp_path / f"{tenant}-late.wal", datetime(2023, 7, 20, tzinfo=UTC), late, tenant)
    # a tenant whose only rows in the window (and in its workflow's months) are of a workflow merged
    # apart: one workflow in January, its truth in July (a review: its rows were dropped as stale)
    _store_at(
        client,
        pipeline,
        tmp_path / "w.wal",
        datetime(2023, 1, 10, tzinfo=UTC),
        lambda c: triage(c, "ENC-W"),
        "west-end",
    )
    truth = lambda _: ct.record_outcome("triage", identifier="ENC-W", label="ESI-1", escalation_needed=True)  # noqa: E731
    _store_at(client, pipeline, tmp_path / "w-late.wal", datetime(2023, 7, 20, tzinfo=UTC), truth, "west-end")
    refresher.refresh(client, options)
    at_once = {t: _rows(client, options, t) for t in ROLLUP_TABLES}
    assert {r[0] for r in at_once[rollups.WORKFLOW_HOURS]} == set(tenants)

    grouped: list[Any] = []
    groups = refresher._tenant_groups

    def seen(*args: Any) -> Any:
        grouped.append(groups(*args))
        return grouped[-1]

    monkeypatch.setattr(refresher, "_tenant_groups", seen)
    monkeypatch.setattr(refresher, "FINAL_SHARE", 1 << 40)  # every tenant over the budget: each alone
    for t in ROLLUP_TABLES:
        client.command(f"TRUNCATE TABLE {options.name(t)}")
    refresher.refresh(client, options, max_memory_bytes=1 << 30)
    assert grouped == [[(t,) for t in tenants]], "the whole refresh, a tenant at a time"
    assert {t: _rows(client, options, t) for t in ROLLUP_TABLES} == at_once

    refresher.refresh(client, options, date(2023, 7, 20), max_memory_bytes=1 << 30)
    assert grouped[-1] == [(t,) for t in tenants], "the window, a tenant at a time"
    assert {t: _rows(client, options, t) for t in ROLLUP_TABLES} == at_once

    for t in ROLLUP_TABLES:
        client.command(f"TRUNCATE TABLE {options.name(t)}")
    _too_big_at_once(monkeypatch, _MONTHLY)
    refresher.refresh(client, options, max_memory_bytes=1 << 30)
    assert len(grouped) > 3, "each month's merge by tenant too"
    assert all(g is None or all(len(one) == 1 for one in g) for g in grouped)
    assert {t: _rows(client, options, t) for t in ROLLUP_TABLES} == at_once


def test_tenant_groups_fit_the_share_and_none_when_all_fit(
    client: Any,
    options: schema.SchemaOptions,
    pipeline: ingest.Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The groups hold every tenant of the parts read once, in order, each within its share and of
    at most `GROUP_TENANTS`, but a tenant over it alone; no memory given, or all within it: one
    query for all (None)."""
    tenants = ("a-clinic", "b-clinic", "c-clinic", "d-clinic")
    for tenant in tenants:
        _store_at(
            client, pipeline, tmp_path / f"{tenant}.wal", datetime(2023, 1, 15, tzinfo=UTC), _one_a_month(2), tenant
        )
    assert refresher._tenant_groups(client, options, "1", None) is None
    assert refresher._tenant_groups(client, options, "1", 1 << 30) is None
    cost = dict(
        client.query(
            f"SELECT TenantId, sum(data_uncompressed_bytes) FROM system.parts p INNER JOIN "
            f"(SELECT DISTINCT _part AS name, TenantId FROM {options.name(clinical.WORKFLOWS)}) AS t USING name "
            f"WHERE p.database = '{options.database}' AND p.table = '{clinical.WORKFLOWS}' AND p.active "
            "GROUP BY TenantId"
        ).result_rows
    )
    two = int(max(cost.values()) * 2.5 * refresher.FINAL_SHARE)
    groups = refresher._tenant_groups(client, options, "1", two)
    assert groups is not None
    assert len(groups) == 2
    assert [t for g in groups for t in g] == list(tenants)
    assert all(sum(cost[t] for t in g) * refresher.FINAL_SHARE <= two for g in groups)
    alone = refresher._tenant_groups(client, options, "1", 1)
    assert alone == [(t,) for t in tenants]
    monkeypatch.setattr(refresher, "GROUP_TENANTS", 1)  # each query names its tenants: a bounded list
    assert refresher._tenant_groups(client, options, "1", two) == [(t,) for t in tenants]
    assert refresher._tenant_groups(client, options, "_partition_value.2 >= 202302", 1) == [(t,) for t in tenants]


def test_a_tenant_group_past_the_memory_keeps_its_rows_and_the_others_are_refreshed(
    client: Any,
    options: schema.SchemaOptions,
    pipeline: ingest.Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A windowed refresh whose group of one (large) tenant goes past its memory keeps that
    tenant's rollup rows as they were, whatever its failed insert wrote to the staging table, and
    refreshes every other tenant's: one hospital does not hold the others' dashboards back. When
    every group fails, the refresh fails."""
    tenants = ("general", "north-west", "st-marys")
    for tenant in tenants:
        _store_at(
            client, pipeline, tmp_path / f"{tenant}.wal", datetime(2023, 7, 3, tzinfo=UTC), _one_a_month(1), tenant
        )
    refresher.refresh(client, options)
    before = _rows(client, options, rollups.WORKFLOW_HOURS)
    for tenant in tenants:
        more = tmp_path / f"{tenant}-more.wal"
        _store_at(client, pipeline, more, datetime(2023, 7, 5, tzinfo=UTC), lambda c: triage(c, "ENC-X"), tenant)

    failing = {"north-west"}
    command = client.command

    def too_big(sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql.startswith("INSERT INTO") and any(f"TenantId IN ('{t}')" in sql for t in failing):
            command(sql, *args, **kwargs)  # a failed INSERT ... SELECT keeps the blocks it wrote
            raise RuntimeError("as past the refresh's memory")
        return command(sql, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(refresher, "FINAL_SHARE", 1 << 40)
        m.setattr(refresher, "memory_limit_exceeded", lambda e: "past the refresh's memory" in str(e))
        m.setattr(client, "command", too_big)
        done = refresher.refresh(client, options, date(2023, 7, 1), max_memory_bytes=1 << 30)
        assert done.tenant_groups_kept == 3, "north-west's, in the workflow, cohort and truth hours"
        got = _rows(client, options, rollups.WORKFLOW_HOURS)
        failing.update(tenants)
        with pytest.raises(RuntimeError, match="past the refresh's memory"):
            refresher.refresh(client, options, date(2023, 7, 1), max_memory_bytes=1 << 30)
    refresher.refresh(client, options, date(2023, 7, 1))
    after = _rows(client, options, rollups.WORKFLOW_HOURS)

    def of(rows: list[tuple[Any, ...]], tenant: str) -> list[tuple[Any, ...]]:
        return [r for r in rows if r[0] == tenant]

    for tenant in ("general", "st-marys"):
        assert of(got, tenant) == of(after, tenant), tenant
    assert of(got, "north-west") == of(before, "north-west"), "kept as it was, not dropped"
    assert of(before, "north-west") != of(after, "north-west"), "the refresh would have changed it"


def test_the_collector_refreshes_a_tenant_kept_at_the_windows_share_within_a_whole_refreshs(
    client: Any,
    options: schema.SchemaOptions,
    pipeline: ingest.Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The collector's windowed refresh that had to keep a large tenant's rows (its group past the
    window's share) does the window again within a whole refresh's share: that tenant's dashboards
    move too, not only at the next whole refresh."""
    for tenant in ("general", "north-west"):
        _store_at(
            client, pipeline, tmp_path / f"{tenant}.wal", datetime(2023, 7, 3, tzinfo=UTC), _one_a_month(1), tenant
        )
    now = datetime(2023, 7, 9, tzinfo=UTC)
    small, whole = 64 << 20, 256 << 20
    loop = refresher.RollupRefresher(
        client, options, window_days=7, clock=lambda: now, max_memory_bytes=small, whole_memory_bytes=whole
    )
    assert loop.refresh_once() is not None  # whole
    for tenant in ("general", "north-west"):
        more = tmp_path / f"{tenant}-more.wal"
        _store_at(client, pipeline, more, datetime(2023, 7, 5, tzinfo=UTC), lambda c: triage(c, "ENC-X"), tenant)
    command = client.command

    def too_big_in_the_window_share(sql: str, *args: Any, **kwargs: Any) -> Any:
        in_small = (kwargs.get("settings") or {}).get("max_memory_usage") == small
        if in_small and sql.startswith("INSERT INTO") and "TenantId IN ('north-west')" in sql:
            raise RuntimeError("as past the refresh's memory")
        return command(sql, *args, **kwargs)

    monkeypatch.setattr(refresher, "FINAL_SHARE", 1 << 40)  # a group a tenant
    monkeypatch.setattr(refresher, "memory_limit_exceeded", lambda e: "past the refresh's memory" in str(e))
    monkeypatch.setattr(client, "command", too_big_in_the_window_share)
    windowed = loop.refresh_once()
    assert windowed is not None
    assert windowed.since == date(2023, 7, 1)
    assert windowed.tenant_groups_kept == 0, "none kept in the end"
    assert _from_rollup(client, options) == _from_workflows(client, options), "north-west's new workflow too"
