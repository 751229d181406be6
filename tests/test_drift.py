"""Drift figures computed in ClickHouse against numpy and scipy on known distributions, span by
span and from the hourly signal rollup the dashboards read, and `clinotel drift check` as a CI
gate against a real collector's read port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from clinotel.collector.service import Collector
from clinotel.collector.store import schema
from clinotel.collector.store.rollups import refresh
from clinotel.model import rollups
from clinotel.model.drift import FEATURES, OUTPUT_PRIORITY, SMOOTHING, Reference, drift_sql
from clinotel.semconv import attributes as A
from collector.tests.fixtures import OTHER_READ_TOKEN, READ_TOKEN

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ARRIVAL = "input.arrival_mode"
# reference (the 24 h before the window) and window (the last 6 h): a new arrival mode appears
REF = {"walk_in": 600, "ambulance": 300, "transfer": 100}
WIN = {"walk_in": 400, "ambulance": 300, "transfer": 100, "telehealth": 200}
SHADOW_PRIORITY = {"ESI-2": 200, "ESI-3": 500, "ESI-4": 300}
LIVE_PRIORITY = {"ESI-2": 100, "ESI-3": 450, "ESI-4": 400, "ESI-5": 50}


def _rows(tenant: str) -> Iterator[tuple[Any, ...]]:
    n = 0

    def row(at: datetime, attrs: dict[str, str]) -> tuple[Any, ...]:
        nonlocal n
        n += 1
        attrs = {A.WORKFLOW_KIND.key: "triage", A.WORKFLOW_STAGE.key: "decide", **attrs}
        return (at, f"{n:032x}", f"{n:016x}", "decide", "ed-triage", {A.TENANT_ID.key: tenant}, attrs)

    for counts, at in ((REF, NOW - timedelta(hours=12)), (WIN, NOW - timedelta(hours=1))):
        for mode, c in counts.items():
            for _ in range(c):
                yield row(at, {A.INPUT_ARRIVAL_MODE.key: mode, A.INPUT_HAS_ALLERGIES.key: "true"})
    for counts, mode, at in (
        (SHADOW_PRIORITY, "shadow", NOW - timedelta(days=5)),
        (LIVE_PRIORITY, "recommend", NOW - timedelta(hours=2)),
    ):
        for value, c in counts.items():
            for i in range(c):
                yield row(at, {
                    A.DECISION_SOURCE.key: "model", A.DECISION_VALUE.key: value, A.ROLLOUT_MODE.key: mode,
                    A.DECISION_CONFIDENCE.key: str(0.55 + (i % 4) / 10),
                })  # fmt: skip


def _insert(client: Any, o: schema.SchemaOptions, tenant: str) -> None:
    columns = ["Timestamp", "TraceId", "SpanId", "SpanName", "ServiceName", "ResourceAttributes", "SpanAttributes"]
    client.insert(o.name(schema.TRACES), list(_rows(tenant)), column_names=columns)


def _expected(ref: dict[str, int], win: dict[str, int]) -> tuple[float, float]:
    bins = sorted(set(ref) | set(win))
    r = np.array([ref.get(b, 0) for b in bins], dtype=float)
    w = np.array([win.get(b, 0) for b in bins], dtype=float)
    pr = (r + SMOOTHING) / (r.sum() + SMOOTHING * len(bins))
    pw = (w + SMOOTHING) / (w.sum() + SMOOTHING * len(bins))
    psi_numpy = float(np.sum((pw - pr) * np.log(pw / pr)))
    psi_scipy = float(entropy(pw, pr) + entropy(pr, pw))  # PSI is the symmetrised KL divergence
    assert psi_numpy == pytest.approx(psi_scipy, rel=1e-12)
    return psi_numpy, float(jensenshannon(w / w.sum(), r / r.sum(), base=2) ** 2)


@pytest.fixture(params=["spans", "hourly rollup"])
def rollup(request: pytest.FixtureRequest, client: Any, options: schema.SchemaOptions) -> str | None:
    """The spans planted; where the drift is read from: the spans (None) or the refreshed rollup."""
    _insert(client, options, "st-marys")
    if request.param == "spans":
        return None
    refresh(client, options)
    return options.name(rollups.SIGNAL_HOURS)


@pytest.fixture
def figures(client: Any, options: schema.SchemaOptions, rollup: str | None) -> dict[str, tuple[Any, ...]]:
    window = (NOW - timedelta(hours=6), NOW)
    rows = client.query(
        drift_sql(options.database, Reference.period(NOW - timedelta(days=1), window[0]), window, rollup=rollup)
    ).result_rows
    return {r[2]: r for r in rows}


def test_psi_and_js_match_numpy_and_scipy(figures: dict[str, tuple[Any, ...]]) -> None:
    _, _, _, n_ref, n_win, psi, js, moved = figures[ARRIVAL]
    want_psi, want_js = _expected(REF, WIN)
    assert (n_ref, n_win) == (1000, 1000)
    assert psi == pytest.approx(want_psi, rel=1e-9)
    assert js == pytest.approx(want_js, rel=1e-9)
    assert moved == "telehealth"
    assert psi > 0.25, "a new arrival mode at a fifth of arrivals is a shift"


def test_an_unchanged_distribution_scores_zero(figures: dict[str, tuple[Any, ...]]) -> None:
    row = figures["input.has_allergies"]
    assert row[5] == pytest.approx(0.0, abs=1e-12)
    assert row[6] == pytest.approx(0.0, abs=1e-12)


def test_output_drift_against_the_shadow_phase(client: Any, options: schema.SchemaOptions, rollup: str | None) -> None:
    window = (NOW - timedelta(hours=6), NOW)
    sql = drift_sql(options.database, Reference(shadow=True), window, (OUTPUT_PRIORITY,), rollup=rollup)
    rows = client.query(sql).result_rows
    (row,) = rows
    want_psi, want_js = _expected(SHADOW_PRIORITY, LIVE_PRIORITY)
    assert row[3:5] == (1000, 1000)
    assert row[5] == pytest.approx(want_psi, rel=1e-9)
    assert row[6] == pytest.approx(want_js, rel=1e-9)


def test_a_side_without_rows_gives_no_figure(client: Any, options: schema.SchemaOptions, rollup: str | None) -> None:
    far = (NOW + timedelta(days=30), NOW + timedelta(days=31))
    sql = drift_sql(options.database, Reference.period(NOW - timedelta(days=1), NOW), far, rollup=rollup)
    rows = client.query(sql).result_rows
    assert rows
    assert all(r[4] == 0 and r[5] is None and r[6] is None for r in rows)


def _check(port: int, *args: str, token: str = READ_TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLICKHOUSE_PASSWORD": token, "CLICKHOUSE_USER": "reader"}
    return subprocess.run(
        [sys.executable, "-m", "clinotel.cli", "drift", "check", "--server", f"http://127.0.0.1:{port}", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def test_drift_check_fails_the_gate_through_the_read_port(client: Any, collector: Collector) -> None:
    o = schema.SchemaOptions(database=collector.config.database)
    _insert(client, o, "st-marys")
    _insert(client, o, "general")  # another tenant's rows are not this reader's
    assert collector.admin is not None
    port = collector.admin.port
    base = ["--database", o.database, "--baseline", "1d", "--window", "6h", "--now", NOW.isoformat()]

    done = _check(port, *base, "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    by = {f["feature"]: f for f in report["features"]}
    assert {f["tenant"] for f in report["features"]} == {"st-marys"}
    assert by[ARRIVAL]["verdict"] == "drifted"
    assert by[ARRIVAL]["psi"] == pytest.approx(_expected(REF, WIN)[0], rel=1e-9)
    assert by[ARRIVAL]["n_ref"] == 1000, "the other tenant's rows were never counted"
    assert by["input.has_allergies"]["verdict"] == "ok"

    passing = _check(port, *base, "--feature", "input.has_allergies")
    assert passing.returncode == 0, passing.stderr
    assert "0 of 1 feature(s) moved" in passing.stdout

    at = ["--database", o.database, "--window", "6h", "--now", NOW.isoformat()]
    shadow = _check(port, *at, "--baseline", "shadow", "--feature", "output.priority", "--measure", "js",
                    "--threshold", "0.01")  # fmt: skip
    assert shadow.returncode == 1
    assert "output.priority" in shadow.stdout

    too_few = _check(port, *base, "--min-sample", "5000")
    assert too_few.returncode == 0
    assert "too few" in too_few.stdout

    other = _check(port, *base, "--json", token=OTHER_READ_TOKEN)
    assert {f["tenant"] for f in json.loads(other.stdout)["features"]} == {"general"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline", "1d", "--window", "6h; DROP TABLE x"], "--window"),
        (["--baseline", "yesterday", "--window", "6h"], "--baseline"),
        (["--baseline", "2026-03-02/2026-03-01", "--window", "6h"], "--baseline"),
        (["--baseline", "1d", "--window", "0s"], "--window"),
        (["--baseline", "1d", "--window", "6h", "--feature", "input.x' OR 1=1"], "--feature"),
        (["--baseline", "1d", "--window", "6h", "--kind", "Triage; --"], "--kind"),
        (["--baseline", "1d", "--window", "6h", "--now", "soon"], "--now"),
        (["--baseline", "1d", "--window", "6h", "--threshold", "-1"], "--threshold"),
        (["--baseline", "1d", "--window", "6h", "--database", "x`; DROP"], "--database"),
    ],
)
def test_bad_flags_are_one_line_usage_errors(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clinotel.cli", "drift", "check", "--server", "http://127.0.0.1:9", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_unreachable_store_is_one_line_and_exit_1() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clinotel.cli", "drift", "check", "--server", "http://127.0.0.1:9",
         "--baseline", "1d", "--window", "6h"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("Error:")
    assert "Traceback" not in done.stderr


def test_every_feature_is_named_once() -> None:
    names = [f.name for f in FEATURES]
    assert len(names) == len(set(names))
    assert {d.key.removeprefix("clinical.") for d in A.INPUTS} <= set(names)
