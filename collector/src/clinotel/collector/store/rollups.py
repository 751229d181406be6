"""The hourly rollups (`clinical_workflow_hours`, `clinical_cohort_hours`, `clinical_signal_hours`,
`clinical_stage_hours`, `clinical_feedback_hours`, `clinotel_service_hours`, `clinical_truth_hours`:
`clinotel.model.rollups`) and the change events (`clinotel_changes`: `clinotel.model.changes`)
recomputed from the workflows view and the spans, off the insert path.

A refresh computes the rollup rows of every workflow that started (every span recorded) on or
after the first day of a month into a staging table of its own, then swaps each of those
tenant-months into the rollup with `REPLACE PARTITION` (atomic per partition: a reader sees a
tenant-month's old rows or its new ones, never half). The figures are the indicators' own SQL over
the merged workflows (`FINAL`), so nothing is counted twice and late ground truth lands in its
workflow's hour. Two collectors refreshing one store at once both write correct months; the later
swap wins.

The collector refreshes every `interval_s` the months from `window_days` ago (late truth within
that window appears within one interval), and the whole rollup at its start and every
`full_every_s` (truth later than the window, retention, a backfill). A window reads the workflows
view's partitions from the month before its first day, and every row elsewhere of the workflows
it finds there (`_whole_workflows`): ground truth arriving months after its workflow started
lands in the partition of the month it arrived, and is merged with its workflow (which, started
before the window, takes it into its own hour at the next whole refresh) instead of counting as
a workflow of its own in the window. A whole refresh that goes past its memory recomputes the
rollups that read the most a month at a time instead, so what it needs does not grow with
retention (all months at once outgrew half of a 768 MB engine at 30M spans): those of the
workflows' starts (workflow and cohort hours), each month merging its own partition and its two
neighbours' (`FINAL` holds what it reads of every partition it merges) with the rows elsewhere of
the workflows found there, and those of the spans (signal and stage hours, by the span's month),
with every rework record read once for all months: the same figures as at once, more slowly (each
month's effort is read from the spans of that month on), so it is the fallback, not the rule. A
windowed refresh's months match the whole refresh's but for a reused workflow id, which meets only
the rework records from the window on. The rollups of the merged workflows are computed for as many
tenants at once as the parts they merge fit in a share of the refresh's memory (`_tenant_groups`):
a merge holds a granule of every part it reads, and many tenants have many small parts.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from clinotel.collector.store.embedded import settings_clause
from clinotel.collector.store.schema import SchemaOptions
from clinotel.collector.store.segments import engine_failed, engine_full, memory_limit_exceeded, out_of_space
from clinotel.collector.telemetry.metrics import RollupFigures
from clinotel.model import changes, rollups
from clinotel.model.sql import literal
from clinotel.model.store import first_line
from clinotel.model.tables import (
    CHANGES,
    COHORT_HOURS,
    FEEDBACK_HOURS,
    SERVICE_HOURS,
    SIGNAL_HOURS,
    STAGE_HOURS,
    STAGE_SPANS,
    TRACES,
    TRUTH_HOURS,
    WORKFLOW_HOURS,
    WORKFLOWS,
)
from clinotel.model.threads import guarded
from clinotel.model.workflow_signals import rework_by_workflow_sql

__all__ = ["DEFAULT_INTERVAL_S", "DEFAULT_WINDOW_DAYS", "Refreshed", "RollupRefresher", "memory_shares", "refresh"]

logger: Final = logging.getLogger("clinotel.collector")

DEFAULT_INTERVAL_S: Final = 30.0
DEFAULT_WINDOW_DAYS: Final = 7
FULL_EVERY_S: Final = 24 * 3600.0
FULL_RETRY_WHEN_DISK_FULL_S: Final = 3600.0
"""A whole refresh that failed for want of disk space is tried again this soon, not a day later: a
full disk for a few seconds put it off 24 h (an operator's fault injection)."""
REFRESH_NICE: Final = 19
"""`os_thread_priority` of a refresh's queries (the readers' own): ingest comes first."""


def memory_shares(engine_memory_bytes: int) -> tuple[int, int]:
    """(a windowed refresh's, a whole refresh's) memory in an embedded engine capped at
    `engine_memory_bytes`: a quarter and a half (a whole refresh merges every workflow: at 10M
    spans it needs more than a quarter of 768 MB)."""
    return engine_memory_bytes // 4, engine_memory_bytes // 2


_STAGING: Final = f"{WORKFLOW_HOURS}_refresh_"
FIRST_DAY: Final = date(1970, 1, 2)
LAST_DAY: Final = date(2105, 12, 31)
"""The days a refresh may start from: the rollup's hours are `DateTime`s."""
_ORPHAN_AFTER_S: Final = 6 * 3600
"""A staging table older than this was left by a refresh that died: dropped by the next one (of
this collector or another on the store). Far longer than any refresh measured (a whole refresh
month by month at 30M spans: 6 minutes), as a month-by-month pass keeps its tables throughout."""


@dataclass(frozen=True)
class Refreshed:
    """What one refresh did."""

    since: date | None
    """The first day recomputed, the first of a month (None: every day)."""
    partitions: int
    """Partitions (a tenant's month) swapped in, or dropped having no rows any more."""
    rows: int
    """Rollup rows written."""
    seconds: float
    unchanged: bool = False
    """Nothing was recomputed: no part of the workflows or spans changed since the last refresh."""
    month_by_month: frozenset[str] = frozenset()
    """The rollups of a whole refresh recomputed a month at a time (they did not fit at once)."""
    tenant_groups_kept: int = 0
    """Groups of tenants whose rows a windowed refresh kept as they were (past its memory)."""


def _previous_month(day: date) -> date:
    """The first day of the month before `day`'s."""
    return (day.replace(day=1) - timedelta(days=1)).replace(day=1)


def _next_month(day: date) -> date:
    """The first day of the month after `day`'s."""
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def _yyyymm(day: date) -> int:
    return day.year * 100 + day.month


def _month_before(day: date) -> int:
    return _yyyymm(_previous_month(day))


def _partitions(client: Any, table: str, where: str = "1") -> set[str]:
    rows = client.query(f"SELECT DISTINCT _partition_id FROM {table} WHERE {where}").result_rows
    return {str(r[0]) for r in rows}


def _partition_rows(client: Any, table: str) -> dict[str, int]:
    """The rows of each of `table`'s partitions."""
    rows = client.query(f"SELECT _partition_id, count() FROM {table} GROUP BY _partition_id").result_rows
    return {str(p): int(n) for p, n in rows}


def _drop_orphans(client: Any, o: SchemaOptions) -> None:
    rows = client.query(
        "SELECT name FROM system.tables "
        f"WHERE database = {literal(o.database)} AND startsWith(name, {literal(_STAGING)}) "
        f"AND metadata_modification_time < now() - {_ORPHAN_AFTER_S}"
    ).result_rows
    for (name,) in rows:
        client.command(f"DROP TABLE IF EXISTS {o.name(str(name))} SYNC")


def _described(client: Any, o: SchemaOptions, table: str, column: str) -> str:
    """`column` of `system.tables` for this node's `table` (its `_local` table on a cluster)."""
    return str(
        client.command(
            f"SELECT {column} FROM system.tables WHERE database = {literal(o.database)} "
            f"AND name = {literal(o.local_name(table))}"
        )
    )


def _sorting_key(client: Any, o: SchemaOptions, table: str) -> str:
    return _described(client, o, table, "sorting_key")


def _table_settings(client: Any, o: SchemaOptions, table: str) -> str:
    """The `SETTINGS ...` clause of this node's `table` as the engine shows it (`''` when none): a
    staging table takes its target's, so that the parts it writes, which `REPLACE PARTITION` moves
    into the target as they are, are written as the target writes its own (its storage policy, and
    full rather than packed for an embedded store's rollups: `store.embedded.full_parts`)."""
    return settings_clause(_described(client, o, table, "engine_full"))


@contextmanager
def _staging(client: Any, o: SchemaOptions, definition: str, settings: dict[str, Any] | None = None) -> Iterator[str]:
    """A staging table of a refresh (`CREATE TABLE <name> <definition>`), dropped on leaving (one a
    refresh that died left behind is an orphan: `_drop_orphans`)."""
    table = o.name(f"{_STAGING}{uuid.uuid4().hex[:12]}")
    client.command(f"CREATE TABLE {table} {definition}", settings=settings)
    try:
        yield table
    finally:
        client.command(f"DROP TABLE IF EXISTS {table} SYNC")


Selects = str | Sequence[tuple[tuple[str, ...], str]]
"""A rollup's rows: one query, or one per group of tenants (`_tenant_groups`) with its tenants."""


def _swap(
    client: Any,
    o: SchemaOptions,
    table: str,
    select: Selects,
    window: str,
    settings: dict[str, Any],
    *,
    isolate: bool = False,
    kept_groups: list[tuple[str, ...]] | None = None,
) -> tuple[set[str], int]:
    """`select`'s rows (each query's, in turn) swapped into the rollup `table` a partition (a
    tenant's month) at a time, and the partitions of the months `window` covers that have no rows
    any more dropped; (the partitions written, rows). With `isolate`, a group past the refresh's
    memory is left as it was (logged) while the others are swapped: one large tenant does not
    hold every other's dashboards back (each such group added to `kept_groups`); when every group
    fails, the refresh fails."""
    target = o.local(table)
    definition = (
        f"AS {target} ENGINE = MergeTree "
        f"PARTITION BY (TenantId, toYYYYMM({rollups.TIME_COLUMN})) ORDER BY ({_sorting_key(client, o, table)})"
        f"{_table_settings(client, o, table)}"
    )
    groups = [((), select)] if isinstance(select, str) else list(select)
    failed = 0
    # a failed group's partitions: what it wrote to the staging table before it failed (an
    # INSERT ... SELECT that fails keeps the blocks it wrote), and the target's, kept as they were
    partial: set[str] = set()
    kept: set[str] = set()
    with _staging(client, o, definition) as staging:
        for n, (tenants, one) in enumerate(groups):
            try:
                client.command(f"INSERT INTO {staging}\n{one}", settings=settings)
            except Exception as e:
                failed += 1
                # a full engine (the writer's and readers' memory) says nothing of the group's size
                too_large = memory_limit_exceeded(e) and not engine_full(e)
                if not (isolate and tenants and too_large) or failed == len(groups):
                    raise
                if kept_groups is not None:
                    kept_groups.append(tenants)
                partial |= _partitions(client, staging, rollups.of_tenants(tenants))
                kept |= _partitions(client, target, f"({window}) AND {rollups.of_tenants(tenants)}")
                logger.warning(
                    "the %s of %s did not fit in the refresh's memory: theirs are kept as they were (%d of %d "
                    "groups of tenants; --memory-mb gives the engine more): %s",
                    table, ", ".join(tenants), n + 1, len(groups), first_line(e),
                )  # fmt: skip
        counts = _partition_rows(client, staging)
        staged = set(counts) - partial
        rows = sum(counts[p] for p in staged)
        stale = _partitions(client, target, window) - staged - kept
        for partition in sorted(staged):
            client.command(f"ALTER TABLE {target} REPLACE PARTITION ID {literal(partition)} FROM {staging}")
        for partition in sorted(stale):
            client.command(f"ALTER TABLE {target} DROP PARTITION ID {literal(partition)}")
    return staged, rows


def _instant(day: date) -> str:
    return f"toDateTime64({literal(day.strftime('%Y-%m-%d'))}, 9, 'UTC')"


def _hour_window(since: date, until: date | None = None) -> str:
    """The rollup rows of the hours from `since` (and before `until`, when given)."""
    hour = rollups.TIME_COLUMN
    window = f"{hour} >= toDateTime({literal(since.isoformat())}, 'UTC')"
    return window if until is None else f"{window} AND {hour} < toDateTime({literal(until.isoformat())}, 'UTC')"


_WORKFLOW_MONTH: Final = "makeDate(intDiv(_partition_value.2, 100), _partition_value.2 % 100, 1)"
"""The month of a workflows view partition (tenant, `toYYYYMM(StartTime)`), as a Date."""
_SPAN_MONTH: Final = "toStartOfMonth(_partition_value.2)"
"""The month of a span table partition (tenant, `toDate(Timestamp)`), as a Date."""


def _months(client: Any, table: str, partition_month: str) -> list[date]:
    """The first days of the months `table` holds, from its partitions (`partition_month`: the
    month of `_partition_value`, as a Date), each with its neighbours: the partitions are cut in
    the engine's time zone, the rollup's months in UTC."""
    rows = client.query(f"SELECT DISTINCT {partition_month} AS m FROM {table}").result_rows
    held = {date(d.year, d.month, 1) for (d,) in rows}
    around = {m for d in held for m in (_previous_month(d), d, _next_month(d))}
    # a partition past 2149 reads as 1970 (a Date's range), one past 2105 holds nothing a rollup can
    return sorted(m for m in around if FIRST_DAY.replace(day=1) <= m <= LAST_DAY.replace(day=1))


@contextmanager
def _whole_workflows(
    client: Any, o: SchemaOptions, source: str, starts: str, settings: dict[str, Any]
) -> Iterator[tuple[str, str | None]]:
    """How to merge (`FINAL`) whole the workflows whose rows in the workflows view's parts that
    `source` keeps include one that `starts` (a condition on `StartTime`: the hours recomputed),
    while reading little more than those parts: (a filter of the view's parts, a table or None).
    The filter is `source` less such workflows with rows in other parts too (ground truth lands in
    the partition of the month it arrived, with its arrival as `StartTime`; a workflow's spans may
    come months apart); the table, when there are such workflows, holds every row of them. A
    workflow with no such row cannot start in those hours, merged in part or whole."""
    workflows = o.local(WORKFLOWS)
    # a copy of this node's rows, unreplicated
    engine = _described(client, o, WORKFLOWS, "engine").removeprefix("Replicated")
    definition = f"AS {workflows} ENGINE = {engine} ORDER BY ({_sorting_key(client, o, WORKFLOWS)})"
    with _staging(client, o, definition) as strays:
        elsewhere = (
            f"SELECT TraceId FROM {workflows} WHERE NOT ({source}) "
            f"AND TraceId IN (SELECT TraceId FROM {workflows} WHERE ({source}) AND ({starts}))"
        )
        client.command(
            f"INSERT INTO {strays} SELECT * FROM {workflows} PREWHERE TraceId IN ({elsewhere})",
            settings=settings | _COPY_SETTINGS,
        )
        if int(client.command(f"SELECT count() FROM {strays}")) == 0:
            yield source, None
        else:
            yield f"({source}) AND TraceId NOT IN (SELECT TraceId FROM {strays})", strays


def _around(month: date) -> str:
    """The workflows view's partitions of `month` and its neighbours' (the partitions are cut in
    the engine's time zone, the months in UTC): where a workflow that started in it has its first row."""
    return f"_partition_value.2 BETWEEN {_month_before(month)} AND {_yyyymm(_next_month(month))}"


_GRANULE: Final = 8192
"""The workflows view's `index_granularity`: a merge reads a part a granule at a time."""
FINAL_SHARE: Final = 8
"""A refresh merges (`FINAL`) at once the workflows of as many tenants as fit in this fraction of
its memory (`_tenant_groups`)."""
GROUP_TENANTS: Final = 256
"""The most tenants of a group: each query names them up to four times, within the engine's 256
KiB `max_query_size` at 64 characters a name (a review: 1,337 tenants in one group failed every
refresh with "Max query size exceeded")."""


def _tenant_groups(
    client: Any, o: SchemaOptions, source: str, memory_bytes: int | None
) -> list[tuple[str, ...]] | None:
    """The tenants of the workflows view's parts that `source` keeps, in groups whose merge fits in
    a `FINAL_SHARE` of `memory_bytes` (and of at most `GROUP_TENANTS`), or None when all fit at
    once (or no memory is given). `source` is the partitions read, before the workflows merged
    apart are left out (`_whole_workflows`): a tenant whose only workflows there are such must
    still have a group (a review: its truth hours were dropped as stale). A
    `FINAL` merge holds a granule of every part it merges, whatever the tenant: a part's whole
    uncompressed bytes while it is smaller than a granule (measured: 1.8 times the bytes of 105
    small parts of 40 tenants, 153 MB, past a windowed refresh's 192 MB with the query around it).
    The estimate is a granule's worth of each part's bytes; a tenant over it alone is a group."""
    if memory_bytes is None:
        return None
    rows = client.query(
        "SELECT s.TenantId, sum(p.cost) FROM (SELECT _part AS part, any(TenantId) AS TenantId "
        f"FROM {o.local(WORKFLOWS)} WHERE {source} GROUP BY part) AS s "
        "INNER JOIN (SELECT name, data_uncompressed_bytes * least(1, "
        f"{_GRANULE} / greatest(rows, 1)) AS cost FROM system.parts WHERE database = {literal(o.database)} "
        f"AND table = {literal(o.local_name(WORKFLOWS))} AND active) AS p ON s.part = p.name "
        "GROUP BY s.TenantId ORDER BY s.TenantId",
        settings={"max_threads": 1},
    ).result_rows
    budget = memory_bytes / FINAL_SHARE
    if sum(float(cost) for _, cost in rows) <= budget:
        return None
    groups: list[tuple[str, ...]] = []
    group: list[str] = []
    held = 0.0
    for tenant, cost in rows:
        if group and (held + float(cost) > budget or len(group) >= GROUP_TENANTS):
            groups.append(tuple(group))
            group, held = [], 0.0
        group.append(str(tenant))
        held += float(cost)
    if group:
        groups.append(tuple(group))
    return groups


_COPY_SETTINGS: Final = {
    "min_insert_block_size_rows": 8192,
    "min_insert_block_size_bytes": 8 << 20,
    "optimize_on_insert": 0,
}
"""The rows of a month's workflows found in other partitions are copied in small blocks, not merged
on insert (`FINAL` over the copy merges them): writing a block takes memory in proportion to its
rows times the view's columns (at 30M spans a copy of a month's workflows in blocks of 65,536 rows
went past 192 MB; of 8,192, it fit in 96 MB)."""


def _per_month(
    client: Any,
    o: SchemaOptions,
    table: str,
    months: list[date],
    select: Callable[[date, date], Selects],
    settings: dict[str, Any],
) -> tuple[set[str], int]:
    """The whole of a rollup recomputed a month at a time (`select(first, until)`: a month's rows),
    so what one query holds does not grow with retention; then the partitions of months the source
    no longer holds dropped."""
    written: set[str] = set()
    rows = 0
    for first in months:
        until = _next_month(first)
        staged, r = _swap(client, o, table, select(first, until), _hour_window(first, until), settings)
        written |= staged
        rows += r
    target = o.local(table)
    for partition in sorted(_partitions(client, target) - written):
        client.command(f"ALTER TABLE {target} DROP PARTITION ID {literal(partition)}")
    return written, rows


def _refresh_from(
    client: Any,
    o: SchemaOptions,
    since: date | None,
    settings: dict[str, Any],
    month_by_month: Collection[str],
    memory_bytes: int | None = None,
    kept_groups: list[tuple[str, ...]] | None = None,
) -> tuple[dict[str, set[str]], int, frozenset[str]]:
    """The rollups' rows from the first day of a month `since` on (None: all of them; one that does
    not fit in the refresh's memory at once, or is named in `month_by_month`, a month at a time: the
    module's docstring) swapped in; (partitions written per rollup, rows, those done by month). The
    rollups of the merged workflows are computed for as many tenants at once as fit in a share of
    `memory_bytes` (`_tenant_groups`); a windowed refresh's groups kept as they were are added to
    `kept_groups`."""
    first = None if since is None else _instant(since)
    source = "1" if since is None else f"_partition_value.2 >= {_month_before(since)}"
    window = "1" if since is None else _hour_window(since)
    traces, workflows, stages = o.local(TRACES), o.local(WORKFLOWS), o.local(STAGE_SPANS)

    written: dict[str, set[str]] = {}
    rows = 0
    went_monthly: set[str] = set()
    with ExitStack() as stack:  # the staging tables of a month-by-month pass: made once, for every rollup reading them

        @functools.cache
        def whole_in(month: date) -> tuple[str, str | None]:
            """The month's workflows merged whole (`_whole_workflows`), for its workflow and cohort hours."""
            starts = rollups.starts_between(_instant(month), _instant(_next_month(month)))
            return stack.enter_context(_whole_workflows(client, o, _around(month), starts, settings))

        @functools.cache
        def groups_in(month: date) -> list[tuple[str, ...]] | None:
            return _tenant_groups(client, o, _around(month), memory_bytes)

        def by_groups(groups: list[tuple[str, ...]] | None, select: Callable[[tuple[str, ...] | None], str]) -> Selects:
            return select(None) if groups is None else [(g, select(g)) for g in groups]

        @functools.cache
        def every_rework() -> str:
            """Every rework record by workflow (not each month's from its own on: that read grew with months²)."""
            rework = rework_by_workflow_sql("", None, traces=o.name(TRACES))
            return stack.enter_context(
                _staging(client, o, f"ENGINE = MergeTree ORDER BY tuple() AS {rework}", settings)
            )

        def workflow_month(m: date, u: date) -> Selects:
            source, also = whole_in(m)
            return by_groups(
                groups_in(m),
                lambda g: rollups.refresh_select(
                    workflows, traces, o.name(TRACES), _instant(m), source, _instant(u), also, every_rework(), g
                ),
            )

        def cohort_month(m: date, u: date) -> Selects:
            source, also = whole_in(m)
            return by_groups(
                groups_in(m),
                lambda g: rollups.cohort_refresh_select(workflows, _instant(m), source, _instant(u), also, g),
            )

        def signal_month(m: date, u: date) -> str:
            return rollups.signal_refresh_select(traces, _instant(m), _instant(u))

        def stage_month(m: date, u: date) -> str:
            return rollups.stage_refresh_select(stages, _instant(m), _instant(u))

        # each: the table its months are read from, a partition's month, a month's rows
        monthly: dict[str, tuple[str, str, Callable[[date, date], Selects]]] = {
            WORKFLOW_HOURS: (workflows, _WORKFLOW_MONTH, workflow_month),
            SIGNAL_HOURS: (traces, _SPAN_MONTH, signal_month),
            COHORT_HOURS: (workflows, _WORKFLOW_MONTH, cohort_month),
            STAGE_HOURS: (stages, _SPAN_MONTH, stage_month),
        }

        def month_at_a_time(table: str, remember: bool = True) -> tuple[set[str], int]:
            if remember:
                went_monthly.add(table)
            source_table, partition_month, month_select = monthly[table]
            months = _months(client, source_table, partition_month)
            return _per_month(client, o, table, months, month_select, settings)

        # a window's workflows with rows before it too (truth on a workflow that started earlier)
        # are merged whole, so none is counted again in the window without its start
        also = None
        groups = _tenant_groups(client, o, source, memory_bytes)
        if since is not None:
            starts = rollups.starts_between(first, None)
            source, also = stack.enter_context(_whole_workflows(client, o, source, starts, settings))
        selects: tuple[tuple[str, Selects], ...] = (
            # first: the annotations it feeds stay current when a heavier rollup fails (16-42 ms)
            (CHANGES, changes.refresh_select(traces, first)),
            (
                WORKFLOW_HOURS,
                by_groups(
                    groups,
                    lambda g: rollups.refresh_select(
                        workflows, traces, o.name(TRACES), first, source, also=also, tenants=g
                    ),
                ),
            ),
            (SIGNAL_HOURS, rollups.signal_refresh_select(traces, first)),
            (
                COHORT_HOURS,
                by_groups(
                    groups, lambda g: rollups.cohort_refresh_select(workflows, first, source, also=also, tenants=g)
                ),
            ),
            (STAGE_HOURS, rollups.stage_refresh_select(stages, first)),
            (SERVICE_HOURS, rollups.service_refresh_select(traces, first)),
            (TRUTH_HOURS, by_groups(groups, lambda g: rollups.truth_refresh_select(workflows, first, source, also, g))),
            # a report and the workflow it judged may be on two shards: the workflows are the cluster's
            (FEEDBACK_HOURS, rollups.feedback_refresh_select(traces, o.name(WORKFLOWS), first)),
        )
        for table, select in selects:
            if since is None and table in monthly and table in month_by_month:
                written[table], r = month_at_a_time(table)
            else:
                try:
                    written[table], r = _swap(
                        client, o, table, select, window, settings, isolate=since is not None, kept_groups=kept_groups
                    )
                except Exception as e:
                    if since is not None or table not in monthly or not memory_limit_exceeded(e):
                        raise
                    logger.info(
                        "the whole of %s does not fit in the refresh's memory at once: recomputing it a month at a "
                        "time (the same figures, more slowly; --memory-mb gives the engine more)",
                        table,
                    )
                    # a full engine says nothing of the rollup's size: not remembered for the next
                    written[table], r = month_at_a_time(table, remember=not engine_full(e))
            rows += r
    return written, rows, frozenset(went_monthly)


def refresh(
    client: Any,
    o: SchemaOptions,
    since: date | None = None,
    *,
    max_memory_bytes: int | None = None,
    month_by_month: Collection[str] = (),
    spill_memory_bytes: int | None = None,
) -> Refreshed:
    """Recompute the rollups from the first day of `since`'s month (UTC; None: all of them) from
    the workflows view and the spans of this node (`o.local`: on a cluster, run it against every
    shard); a whole refresh recomputes the rollups named in `month_by_month` (a last whole
    refresh's `Refreshed.month_by_month`) a month at a time without trying them at once first.
    Each query holds at most `max_memory_bytes`; its groupings and joins spill to disk past a
    quarter of `spill_memory_bytes` (by default the same)."""
    if since is not None and not FIRST_DAY <= since <= LAST_DAY:
        raise ValueError(f"a refresh starts on a day from {FIRST_DAY} to {LAST_DAY}, not {since}")
    started = time.perf_counter()
    # a refresh writes a partition per tenant and month in one INSERT: a store's tenants may be many
    # one thread: a background job, off the writer's core, and half the memory of two streams;
    # small blocks: a FINAL merge holds a block of every part it merges
    settings: dict[str, Any] = {
        "insert_deduplicate": 0,
        "throw_on_max_partitions_per_insert_block": 0,
        "max_threads": 1,
        "max_block_size": 8192,
        # behind the writer's inserts, as the readers are: a refresh holding a core lengthened
        # ingest freshness under a full read load from 2 s to 7 s (benchmarks/collector_ingest.py)
        "os_thread_priority": REFRESH_NICE,
    }
    if max_memory_bytes is not None:
        # past a quarter of its share a grouping or a join spills to disk instead of failing
        spill = spill_memory_bytes or max_memory_bytes
        settings |= {
            "max_memory_usage": max_memory_bytes,
            "max_bytes_before_external_group_by": spill // 4,
            "join_algorithm": "grace_hash",
            "max_bytes_in_join": spill // 4,
        }
    _drop_orphans(client, o)
    if since is not None:
        since = since.replace(day=1)  # the rollups' partitions are a tenant's month: swapped whole
    kept: list[tuple[str, ...]] = []
    written, rows, monthly = _refresh_from(client, o, since, settings, month_by_month, max_memory_bytes, kept)
    seconds = time.perf_counter() - started
    return Refreshed(
        since, sum(map(len, written.values())), rows, seconds, month_by_month=monthly, tenant_groups_kept=len(kept)
    )


class RollupRefresher:
    """Refreshes the rollups in a thread: the whole of them at start and every `full_every_s`, the
    months from `window_days` ago every `interval_s`, or nine times as long as the last refresh
    took when that is longer (a tenth of one core at most). A window past its share is done again
    within a whole refresh's (`_refresh`). A failed refresh is logged and tried again (a whole one
    when next due, the recent months meanwhile): the rollups are then behind, never wrong, and
    ingest is not touched."""

    def __init__(
        self,
        client: Any,
        options: SchemaOptions,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        window_days: int = DEFAULT_WINDOW_DAYS,
        full_every_s: float = FULL_EVERY_S,
        max_memory_bytes: int | None = None,
        whole_memory_bytes: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_refresh: Callable[[Refreshed], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.interval_s = interval_s
        self.window_days = window_days
        self.full_every_s = full_every_s
        self.max_memory_bytes = max_memory_bytes
        self.whole_memory_bytes = whole_memory_bytes or max_memory_bytes
        """A whole refresh's share (it merges every workflow: 10M spans need more than a quarter of 768 MB)."""
        self.clock = clock
        self.on_refresh = on_refresh
        """Hears each refresh the thread makes (not the skipped ones)."""
        self.on_error = on_error
        """Hears each failed refresh, after it is logged."""
        self.last: Refreshed | None = None
        self.last_ended_s = 0.0
        """When the last refresh that did not fail ended (Unix seconds), 0 before the first."""
        self.tenant_groups_kept = 0
        """Groups of tenants windowed refreshes kept as they were, in all."""
        self.failures = 0
        self.failed_seconds = 0.0
        """How long the last failed refresh ran."""
        self._full_at: float | None = None
        self._month_by_month: frozenset[str] = frozenset()
        self._window_in_whole_share = False
        """Set when the window did not fit in its share: windowed refreshes take a whole one's
        until the next whole refresh, which tries the window's share again."""
        self.window_share_misses = 0
        """Windowed refreshes that did not fit in their share and were done in a whole one's."""
        self._refreshed_sources: tuple[Any, ...] = ()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sources(self) -> tuple[Any, ...]:
        """What identifies the workflows' and spans' data as it stands: their active parts."""
        tables = ", ".join(literal(self.options.local_name(t)) for t in (WORKFLOWS, TRACES))
        rows = self.client.query(
            "SELECT count(), max(modification_time), sum(rows) FROM system.parts "
            f"WHERE database = {literal(self.options.database)} AND table IN ({tables}) AND active"
        ).result_rows
        return tuple(rows[0]) if rows else ()

    def refresh_once(self, *, full: bool = False) -> Refreshed | None:
        """One refresh now: whole when `full` or due, else windowed, or nothing when no part of the
        workflows or spans changed since the last one; None when it failed (logged)."""
        with self._lock:
            full = full or self._full_at is None or time.monotonic() - self._full_at >= self.full_every_s
            since = None if full else (self.clock() - timedelta(days=self.window_days)).date()
            started = time.perf_counter()
            try:
                sources = self._sources()
                if not full and self.last is not None and sources == self._refreshed_sources:
                    self.last_ended_s = time.time()
                    return Refreshed(since and since.replace(day=1), 0, 0, 0.0, unchanged=True)
                done = self._refresh(full, since)
            except Exception as e:  # noqa: BLE001 - the rollup is a cache: ingest carries on
                self.failures += 1
                self.failed_seconds = time.perf_counter() - started
                if engine_failed(e):
                    logger.error("could not refresh the hourly rollups: the engine failed (%s)", first_line(e))
                elif full:
                    # the recent months keep being refreshed meanwhile; the whole is tried again
                    # when it is next due (sooner when the disk was full), not at every interval
                    disk_full = out_of_space(e)
                    retry_s = min(self.full_every_s, FULL_RETRY_WHEN_DISK_FULL_S) if disk_full else self.full_every_s
                    self._full_at = time.monotonic() - (self.full_every_s - retry_s)
                    advice = (
                        "Free space on the store's disk"
                        if disk_full
                        else "Give the engine more memory (--memory-mb) or run `clinotel schema refresh-rollups` "
                        "with the collector stopped"
                    )
                    logger.error(
                        "could not refresh the whole of the hourly rollups (tried again in %.0f h; the recent "
                        "months are refreshed meanwhile): %s. %s",
                        retry_s / 3600, first_line(e), advice,
                    )  # fmt: skip
                else:
                    logger.warning("could not refresh the hourly rollups (the dashboards show them as before): %s", e)
                failed = e
            else:
                if full:
                    self._full_at = time.monotonic()
                    self._month_by_month = done.month_by_month
                self.last, self._refreshed_sources = done, sources
                self.last_ended_s = time.time()
                self.tenant_groups_kept += done.tenant_groups_kept
                return done
        if self.on_error is not None:  # outside the lock: the listener may stop the collector
            self.on_error(failed)
        return None

    def _refresh(self, full: bool, since: date | None) -> Refreshed:
        """A whole refresh in its share, month by month where the last one had to go so; a windowed
        one in its own share, or with a whole refresh's memory when the window did not fit there.
        One tenant's window grows with its monthly volume and cannot be split by tenant: at 10M
        spans of one tenant (180,000 workflows a month) it needed 160-192 MB, the share of a 768 MB
        engine. The memory a whole refresh may hold, by one refresh at a time; its groupings and
        joins still spill past a quarter of the window's share."""
        started = time.perf_counter()
        if full:
            # what did not fit at once last time is not tried at once again: a try that fails
            # holds the refresh's memory share beside the writer for up to a minute (30M spans)
            done = refresh(
                self.client, self.options, max_memory_bytes=self.whole_memory_bytes, month_by_month=self._month_by_month
            )
            self._window_in_whole_share = False  # tried in its own share again: the window's size varies
            return done
        small, whole = self.max_memory_bytes, self.whole_memory_bytes
        larger = whole is not None and small is not None and whole > small
        if self._window_in_whole_share or not larger:
            done = refresh(self.client, self.options, since, max_memory_bytes=whole, spill_memory_bytes=small)
            return replace(done, seconds=time.perf_counter() - started)
        try:
            tried = refresh(self.client, self.options, since, max_memory_bytes=small)
        except Exception as e:
            # a full engine (the writer's and readers' memory) says nothing of the window's size
            if not memory_limit_exceeded(e) or engine_full(e):
                raise
            reason = first_line(e)
        else:
            if not tried.tenant_groups_kept:
                return tried
            reason = f"{tried.tenant_groups_kept} groups of tenants kept as they were"
        self._window_in_whole_share = True
        self.window_share_misses += 1
        logger.warning(
            "the recent months of the hourly rollups did not fit in a windowed refresh's memory (%d MB: %s); "
            "they are refreshed with a whole refresh's (%d MB) until the next whole refresh (--memory-mb gives "
            "the engine more)",
            (small or 0) >> 20, reason, (whole or 0) >> 20,
        )  # fmt: skip
        done = refresh(self.client, self.options, since, max_memory_bytes=whole, spill_memory_bytes=small)
        # the failed try counts in the time the next refresh waits for (a tenth of a core)
        return replace(done, seconds=time.perf_counter() - started)

    def figures(self) -> RollupFigures:
        """What it did, for `/metrics` (`clinotel_rollups_*`)."""
        return RollupFigures(self.failures, self.tenant_groups_kept, self.last_ended_s, self.window_share_misses)

    def _on_a_cluster(self) -> bool:
        """Whether the rollups here are a cluster's `Distributed` tables (each shard's own rollup
        is refreshed on the shard: `clinotel schema refresh-rollups --cluster`)."""
        engine = self.client.command(
            "SELECT any(engine) FROM system.tables "
            f"WHERE database = {literal(self.options.database)} AND name = {literal(WORKFLOW_HOURS)}"
        )
        return str(engine) == "Distributed"

    def _run(self) -> None:
        try:
            # options naming the cluster refresh this node's own `_local` tables (refresh-rollups)
            clustered = self.options.cluster is None and self._on_a_cluster()
        except Exception as e:  # noqa: BLE001 - decided again at the next start
            logger.warning("could not tell whether the store is a cluster; refreshing the rollups anyway: %s", e)
            clustered = False
        if clustered:
            logger.info(
                "the store is a cluster: the collector does not refresh its rollups; run "
                "`clinotel schema refresh-rollups --cluster NAME` against every shard"
            )
            return
        while not self._stop.is_set():
            done = self.refresh_once()
            if done is not None and not done.unchanged and self.on_refresh is not None:
                self.on_refresh(done)
            # never more than a tenth of the time refreshing: a slow (or failed) refresh waits longer
            took = done.seconds if done is not None else self.failed_seconds
            self._stop.wait(max(self.interval_s, 9 * took))

    def start(self, on_failure: Callable[[str], None] | None = None) -> None:
        """Refresh in a thread until `stop`; `on_failure` hears if that thread ever dies."""
        self._thread = guarded(self._run, "clinotel-rollups", on_failure or (lambda reason: None))
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the thread still refreshes (it ends on `stop`, on a cluster, or if it dies)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, wait: bool = True) -> None:
        """Stop refreshing; `wait` for a refresh in flight to end (up to 30 s)."""
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=30)
