"""The migrations are frozen and complete: what the model says the tables hold is what a freshly
migrated store holds, so a column added to the model fails here until a migration adds it."""

from __future__ import annotations

from typing import Any

import pytest

from clinotel.collector.store import schema
from clinotel.collector.store.migrations import frozen
from clinotel.model import clinical, tables
from clinotel.model.sql import literal


def _columns(client: Any, database: str, table: str) -> dict[str, str]:
    rows = client.query(
        f"SELECT name, type FROM system.columns WHERE database = '{database}' AND table = '{table}'"
    ).result_rows
    return dict(rows)


def _formatted(client: Any, expr: str) -> str:
    """`expr` in the engine's own format (how it prints an ALIAS expression)."""
    return str(client.query(f"SELECT formatQuerySingleLine({literal('SELECT ' + expr)})").result_rows[0][0])


def test_the_model_is_what_a_migrated_store_holds(client: Any, options: schema.SchemaOptions) -> None:
    stage = _columns(client, options.database, clinical.STAGE_SPANS)
    for column in (*clinical.STAGE_COLUMNS, *clinical.COHORT_COLUMNS):
        assert stage.get(column.name) == column.type, (
            f"{clinical.STAGE_SPANS}.{column.name} {column.type}: the model has it, no migration creates it"
        )
    workflows = _columns(client, options.database, clinical.WORKFLOWS)
    aliases = dict(
        client.query(
            f"SELECT name, default_expression FROM system.columns WHERE database = '{options.database}' "
            f"AND table = '{clinical.WORKFLOWS}' AND default_kind = 'ALIAS'"
        ).result_rows
    )
    for wf in clinical.workflow_columns():
        expected = wf.type if wf.alias else f"SimpleAggregateFunction({wf.function}, {wf.type})"
        assert workflows.get(wf.name) == expected, f"{clinical.WORKFLOWS}.{wf.name}: no migration creates {expected}"
        if wf.alias:
            stored = _formatted(client, aliases.get(wf.name, "''"))
            assert stored == _formatted(client, wf.alias), f"{wf.name}: ALIAS {stored}"
    assert set(aliases) == {wf.name for wf in clinical.workflow_columns() if wf.alias}
    unjoined = _columns(client, options.database, clinical.UNJOINED_OUTCOMES)
    assert set(clinical.UNJOINED_OUTCOME_COLUMNS) <= set(unjoined), "no migration creates clinical_unjoined_outcomes"
    traces = _columns(client, options.database, schema.TRACES)
    assert set(schema.TRACES_INSERT_COLUMNS) <= set(traces)
    assert {traces.get(c) for c in tables.TRACES_DROP_COLUMNS} == {"UInt32"}
    assert set(schema.ALERT_EVENT_COLUMNS) <= set(_columns(client, options.database, schema.ALERT_EVENTS))
    telemetry = _columns(client, options.database, schema.SDK_TELEMETRY)
    assert set(schema.SDK_TELEMETRY_COLUMNS.values()) <= set(telemetry)
    for table in schema.tenant_tables():
        assert schema.TENANT_COLUMN in _columns(client, options.database, table), table


def test_migrations_are_numbered_without_gaps_and_render_for_every_mode() -> None:
    versions = [m.version for m in frozen()]
    assert versions == list(range(1, len(versions) + 1))
    for o in (schema.SchemaOptions(), schema.SchemaOptions(cluster="obs", ttl_days=30)):
        for m in schema.migrations(o):
            for statement in m.statements:
                assert "{{" not in statement, statement[:200]


def test_the_baseline_is_the_migrations_in_one_pass(client: Any, options: schema.SchemaOptions) -> None:
    """A new store starts from the frozen baseline; replaying every migration from an empty
    database, one at a time, gives the same store."""
    import uuid

    from collector.tests.test_schema import _layout

    replayed = schema.SchemaOptions(database=f"replay_{uuid.uuid4().hex[:10]}")
    try:
        for version in range(1, schema.SCHEMA_VERSION + 1):
            assert schema.apply(client, replayed, until=version) == [version]
        assert _layout(client, replayed.database) == _layout(client, options.database)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {replayed.database}")


def test_a_migration_interrupted_before_it_was_recorded_runs_again(client: Any) -> None:
    """A crash (or an ON CLUSTER statement that timed out on one host) after some of a migration's
    statements ran, before its version was recorded: the next start runs all of them again. Each
    migration run twice over the store it migrated (its statements, then its code) leaves it as it
    was."""
    import uuid

    from collector.tests.test_schema import _layout

    o = schema.SchemaOptions(database=f"twice_{uuid.uuid4().hex[:10]}")
    try:
        for m in schema.migrations(o):
            schema.apply(client, o, until=m.version)
            before = _layout(client, o.database)
            try:
                for statement in m.statements:
                    client.command(statement)
                if m.run is not None:
                    m.run(client, o)
            except Exception as e:  # named with the migration that cannot run again
                raise AssertionError(f"migration {m.version} cannot run again: {str(e)[:300]}") from None
            assert _layout(client, o.database) == before, f"migration {m.version} run again changed the store"
    finally:
        client.command(f"DROP DATABASE IF EXISTS {o.database}")


def test_a_migration_that_fails_says_which_in_one_line_and_keeps_the_store(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object of the operator's own in a migration's way (a projection of theirs over the column
    migration 15 replaces): the start fails with one line naming the migration and the versions
    the store is between, and the store and its rows are as they were. The migration is recorded
    as started before its first statement, so the release before refuses the store (a kill -9
    within migration 21 let an older collector write decisions nowhere: an upgrade review), and
    this release runs it again once the cause is gone."""
    import uuid

    from clinotel.model.store import StoreError

    o = schema.SchemaOptions(database=f"blocked_{uuid.uuid4().hex[:10]}")
    try:
        schema.apply(client, o, until=14)
        stage_hours = o.local("clinical_stage_hours")
        mine = "SELECT Stage, quantileMerge(0.95)(Duration) GROUP BY Stage"
        client.command(f"ALTER TABLE {stage_hours} ADD PROJECTION mine ({mine})")
        with pytest.raises(StoreError) as failed:
            schema.apply(client, o)
        message = str(failed.value)
        assert message.startswith("schema migration 15 failed: "), message
        assert "between schema versions 14 and 15, and a release that knows only 14 refuses it" in message
        assert "\n" not in message
        versions = client.query(
            f"SELECT Version, Description FROM {o.name(schema.VERSIONS)} FINAL ORDER BY Version"
        ).result_rows
        assert [v for v, _ in versions] == list(range(1, 16))
        assert versions[-1][1].startswith(schema.STARTED)
        known = schema.migrations(o)[:14]
        with monkeypatch.context() as m:  # the release before, which knows 14: a half-migrated store is not its own
            m.setattr(schema, "migrations", lambda _o: known)
            with pytest.raises(StoreError, match="schema version 15, newer than this clinotel knows \\(14\\)"):
                schema.check_not_newer(client, o)
        client.command(f"ALTER TABLE {stage_hours} DROP PROJECTION mine")
        assert schema.apply(client, o) == list(range(15, schema.SCHEMA_VERSION + 1))
        versions = client.query(
            f"SELECT Version, Description FROM {o.name(schema.VERSIONS)} FINAL ORDER BY Version"
        ).result_rows
        assert not any(d.startswith(schema.STARTED) for _, d in versions)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {o.database}")


def test_a_store_a_newer_release_migrated_is_refused_in_one_line(client: Any) -> None:
    """A rollback: the previous release started on a store the next one had migrated, wrote through
    views that no longer matched the tables and failed its refreshes every 30 s, saying nothing of
    why (an upgrade review). The start is refused, naming both versions, and nothing is changed."""
    import uuid

    from clinotel.model.store import StoreError

    o = schema.SchemaOptions(database=f"newer_{uuid.uuid4().hex[:10]}")
    try:
        schema.apply(client, o)
        newer = schema.SCHEMA_VERSION + 1
        client.command(f"INSERT INTO {o.name(schema.VERSIONS)} (Version, Description) VALUES ({newer}, 'next')")
        with pytest.raises(StoreError) as refused:
            schema.apply(client, o)
        message = str(refused.value)
        assert f"schema version {newer}, newer than this clinotel knows ({schema.SCHEMA_VERSION})" in message
        assert "\n" not in message
        with pytest.raises(StoreError, match="newer than this clinotel knows"):
            schema.check_not_newer(client, o)  # the rollups' refresh, which does not migrate (a review)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {o.database}")


RELEASED: dict[str, str] = {
    "0001_trace_tables.sql": "2cf4228022c59943",
    "0002_clinical_views.sql": "895628f85fad1db3",
    "0003_collector_metrics.sql": "d331d933870d8864",
    "0004_alert_events.sql": "81bece1ed9f99dea",
    "0005_codecs.sql": "bf4c8c2469e4c253",
    "0006_sdk_telemetry.sql": "659277ad7c3a170c",
    "0009_workflow_hours.sql": "c07da7c153c8c349",
    "0010_signal_cohort_hours.sql": "286d7408221a51c9",
    "0011_stage_feedback_hours.sql": "a7e9f9d2db0a9682",
    "0012_flag_schedule_truth_hours.sql": "1f3b3e28802823a5",
    "0013_codecs_timestamp_scope.sql": "d29d6e56cc150b9f",
    "0014_drop_map_bloom_filters.sql": "0bcdbaf57fa65729",
    "0015_stage_duration_sketch.sql": "36e80ed8d86a0ab4",
    "0016_outcome_join_cheaper.sql": "e6fe160af27cf4e8",
    "0017_rollup_quantile_values.sql": "e55f321f0954e923",
    "baseline_0007.sql": "83b506e24def6294",
    "m0007_tenant_partitions.py": "01d4f6570159b6ee",
    "m0008_outcome_join.py": "1cfd506661dcf341",
    "m0018_latest_truth.py": "258dd877fe82c12e",
    "0019_change_events.sql": "807b52db275015f1",
    "0020_views_deduplicate.sql": "7b1bc1fd3713233b",
    "m0021_latest_decision.py": "f882061adfd23434",
    "0022_collector_attribute_drops.sql": "fac9428ca61d40e1",
    "0023_workflows_compact_parts.sql": "56f6cb88fa09dffa",
}
"""The first 16 hex digits of each released migration file's SHA-256."""


def _digests() -> dict[str, str]:
    import hashlib
    from importlib import resources

    folder = resources.files("clinotel.collector.store.migrations")
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        for p in folder.iterdir()
        if p.name.endswith((".sql", ".py")) and p.name != "__init__.py"
    }


def test_a_released_migration_is_never_edited() -> None:
    """A store records a migration's version once it applied it, so an edit to its file never
    reaches the stores that ran it: they keep the old tables while the code expects the new ones
    (found in review, December: a migration amended after a build had applied it left that build's
    stores with the old columns and a rollup refresh that failed at every run). Each released file's
    digest is pinned here: a change to one fails, and needs a migration of its own instead. A new
    migration adds its line here as it is released."""
    digests = _digests()
    changed = sorted(name for name, digest in RELEASED.items() if digests.get(name) != digest)
    assert not changed, f"released migrations edited or removed: {changed}; add a new migration instead"
    assert set(digests) <= set(RELEASED), f"pin the new migrations' digests: {sorted(set(digests) - set(RELEASED))}"
