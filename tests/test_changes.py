"""Change events end to end: `clinotel changes add` over OTLP into a running collector, stored per
tenant in otel_traces, read back by `changes list`, and drawn by every dashboard's annotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clinotel.cli import main
from clinotel.collector.service import Collector
from clinotel.collector.store.rollups import refresh
from clinotel.dashboards import build_all
from clinotel.dashboards.check import panel_queries, run
from clinotel.dashboards.macros import TimeRange
from clinotel.model.changes import recent_changes
from clinotel.semconv import attributes as A
from collector.tests.fixtures import OPERATOR_TOKEN, OTHER_READ_TOKEN, READ_TOKEN, WRITE_TOKEN


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


def _add(collector: Collector, *args: str) -> list[str]:
    assert collector.http is not None
    return ["changes", "add", *args, "--endpoint", f"http://127.0.0.1:{collector.http.port}"]


def _stored(collector: Collector) -> list[tuple[Any, ...]]:
    assert collector.writer is not None
    collector.writer.drain()
    db = collector.options.database
    return collector.client.query(
        f"SELECT TenantId, ServiceName, SpanAttributes FROM {db}.otel_traces WHERE SpanName = %(n)s",
        parameters={"n": A.CHANGE_SPAN_NAME},
    ).result_rows


def test_a_pipeline_records_a_change_and_every_reader_of_its_tenant_sees_it(
    collector: Collector, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLINOTEL_WRITE_TOKEN", WRITE_TOKEN)
    argv = _add(collector, "flag", "triage-model-v4", "--version", "on", "--actor", "pipeline:flag-rollout",
                "--site", "north", "--workflow-kind", "triage", "--tenant", "someone-else")  # fmt: skip
    code, out, err = _cli(argv, capsys)
    assert code == 0, err
    assert "recorded flag triage-model-v4 -> on" in out
    [(tenant, service, attrs)] = _stored(collector)
    assert tenant == "st-marys"  # the write token's tenant, not the one claimed
    assert service == "clinotel-changes"
    assert attrs[A.CHANGE_KIND.key] == "flag"
    assert attrs[A.CHANGE_ACTOR.key] == "pipeline:flag-rollout"
    assert attrs[A.SITE.key] == "north"
    assert attrs[A.CHANGE_WORKFLOW_KIND.key] == "triage"

    assert collector.admin is not None
    server = f"http://127.0.0.1:{collector.admin.port}"
    db = collector.options.database
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", READ_TOKEN)
    code, out, err = _cli(["changes", "list", "--server", server, "--database", db, "--site", "north"], capsys)
    assert code == 0, err
    assert "flag triage-model-v4 -> on by pipeline:flag-rollout (site=north, workflow_kind=triage)" in out
    # a change scoped to north does not apply to south
    code, out, _ = _cli(["changes", "list", "--server", server, "--database", db, "--site", "south"], capsys)
    assert "nothing recorded" in out
    # another tenant's reader sees nothing
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", OTHER_READ_TOKEN)
    code, out, _ = _cli(["changes", "list", "--server", server, "--database", db], capsys)
    assert code == 0
    assert "nothing recorded" in out

    # every dashboard draws it once the rollups are refreshed (as the collector does every 30 s),
    # as Grafana would run the annotation
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", OPERATOR_TOKEN)
    refresh(collector.client, collector.options)
    end = datetime.now(UTC) + timedelta(minutes=1)
    boards = build_all(db)
    annotations = [q for q in panel_queries(boards) if q.panel == "annotation Changes"]
    assert len(annotations) == len(boards)
    results = list(run(collector.client, annotations, TimeRange(end - timedelta(hours=1), end)))
    assert [r.error for r in results] == [None] * len(boards)
    assert all(r.rows == 1 for r in results)
    site_south = TimeRange(end - timedelta(hours=1), end, variables={"site": ["south"]})
    [south] = run(collector.client, annotations[:1], site_south)
    assert (south.error, south.rows) == (None, 0)


def test_a_change_at_a_past_time_and_a_person_refused(
    collector: Collector, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLINOTEL_WRITE_TOKEN", WRITE_TOKEN)
    code, _, err = _cli(_add(collector, "deploy", "ed-triage", "--actor", "dr.jones"), capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert "clinical.change.actor" in err
    assert "Traceback" not in err
    code, _, err = _cli(_add(collector, "deploy", "ed-triage", "--version", "2.3.0", "--at", "now-2h"), capsys)
    assert code == 0, err
    assert len(_stored(collector)) == 1  # the refused one sent nothing
    now = datetime.now(UTC)
    [change] = recent_changes(collector.client, collector.options.database, now - timedelta(hours=3), now)
    assert timedelta(minutes=119) < now - change.timestamp < timedelta(minutes=121)
    assert (change.tenant, change.kind, change.version) == ("st-marys", "deploy", "2.3.0")


def test_without_a_write_token_the_collector_refuses_and_the_command_says_so(
    collector: Collector, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CLINOTEL_WRITE_TOKEN", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_HEADERS", raising=False)
    code, _, err = _cli(_add(collector, "config", "triage-thresholds"), capsys)
    assert code == 1
    assert [line for line in err.splitlines() if line.startswith("Error: ")] == [
        f"Error: the collector at http://127.0.0.1:{collector.http.port} did not accept the change events: "  # type: ignore[union-attr]
        "it answered HTTP 401 (the tenant's write token goes in CLINOTEL_WRITE_TOKEN, which is not set)"
    ]
    assert _stored(collector) == []


@pytest.mark.parametrize("where", ["CLINOTEL_WRITE_TOKEN", "OTEL_EXPORTER_OTLP_HEADERS"])
def test_a_refused_write_token_is_said_to_be_refused_not_missing(
    collector: Collector, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    monkeypatch.delenv("CLINOTEL_WRITE_TOKEN", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_HEADERS", raising=False)
    monkeypatch.setenv(where, "not-a-token" if where == "CLINOTEL_WRITE_TOKEN" else "authorization=Bearer not-a-token")
    code, _, err = _cli(_add(collector, "config", "triage-thresholds"), capsys)
    assert code == 1
    assert "it answered HTTP 401 (the collector refused the write token given)" in err
    assert "not-a-token" not in err


@pytest.mark.parametrize(
    "scope",
    [{"site": "north') OR 1=1 --"}, {"patient": "x"}],
)
def test_the_changes_query_quotes_or_refuses_what_it_is_given(collector: Collector, scope: dict[str, str]) -> None:
    now = datetime.now(UTC)
    db = collector.options.database
    if "patient" in scope:
        with pytest.raises(ValueError, match="unknown change scope"):
            recent_changes(collector.client, db, now - timedelta(hours=1), now, scope=scope)
    else:
        assert recent_changes(collector.client, db, now - timedelta(hours=1), now, scope=scope) == []
