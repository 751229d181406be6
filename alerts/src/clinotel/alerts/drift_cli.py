"""`clinotel drift check`: the fail-fast gate of a release pipeline. Compares the decision inputs'
and outputs' distributions over a window with a reference (`clinotel.model.drift`) and exits 1
when one moved past its threshold, printing the figures."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import click
from rich.table import Table

from clinotel.alerts.cli import _console
from clinotel.alerts.rules import parse_duration
from clinotel.model.drift import FEATURES, MIN_SAMPLE, Reference, drift_sql
from clinotel.model.store import error_line, open_reading_store, reading_store
from clinotel.model.tables import DEFAULT_DATABASE

__all__ = ["DRIFTED", "drift"]

DRIFTED: Final = 1
"""The exit code when a distribution moved past its threshold (errors: 1 with `Error:`, usage: 2)."""
DEFAULT_THRESHOLDS: Final = {"psi": 0.25, "js": 0.1}
_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,47}")
_MAX_SECONDS: Final = 10 * 366 * 86400


def _duration(value: str, what: str) -> int:
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=what) from None
    if not 0 < seconds <= _MAX_SECONDS:
        raise click.BadParameter(f"a duration above zero and at most 10 years, not {value[:40]!r}", param_hint=what)
    return seconds


def _instant(value: str, what: str) -> datetime:
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"an ISO 8601 time such as 2026-03-01T08:00:00Z, not {value[:40]!r}", param_hint=what
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _reference(value: str, window_start: datetime) -> Reference:
    if value == "shadow":
        return Reference(shadow=True)
    if "/" in value:
        start, _, end = value.partition("/")
        try:
            return Reference.period(_instant(start, "--baseline"), _instant(end, "--baseline"))
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--baseline") from None
    before = _duration(value, "--baseline")
    return Reference.period(window_start - timedelta(seconds=before), window_start)


@click.group()
def drift() -> None:
    """Drift of the decision's inputs and outputs against a reference."""


@drift.command("check")
@reading_store
@click.option("--database", default=DEFAULT_DATABASE, show_default=True, help="The clinotel database.")
@click.option(
    "--baseline",
    required=True,
    metavar="shadow|DURATION|START/END",
    help="The reference: the shadow-mode rows, the DURATION right before the window, or a period.",
)
@click.option("--window", required=True, metavar="DURATION", help="The window checked, ending now (6h, 1d).")
@click.option("--now", "now_text", metavar="TIME", help="Where the window ends (ISO 8601) [default: now].")
@click.option("--measure", type=click.Choice(("psi", "js")), default="psi", show_default=True)
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), help="[default: psi 0.25, js 0.1]")
@click.option("--min-sample", type=click.IntRange(min=1), default=MIN_SAMPLE, show_default=True,
              help="Rows each side needs before a feature can fail the check.")  # fmt: skip
@click.option("--feature", "only", multiple=True, metavar="NAME", help="Check only these features (repeatable).")
@click.option("--kind", metavar="KIND", help="Only this workflow kind.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def check(
    server: str | None, data_dir: Any, database: str, baseline: str, window: str, now_text: str | None,
    measure: str, threshold: float | None, min_sample: int, only: tuple[str, ...], kind: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Exit 1 when a feature's distribution moved past the threshold, with the figures; 0 otherwise.

    Features with fewer than --min-sample rows on either side are listed as too few and do not fail.
    """
    known = {f.name: f for f in FEATURES}
    unknown = [f for f in only if f not in known]
    if unknown:
        raise click.BadParameter(f"unknown {unknown[0][:60]!r}; known: {', '.join(known)}", param_hint="--feature")
    if kind is not None and not _NAME.fullmatch(kind):
        raise click.BadParameter("a workflow kind is a lower-case code", param_hint="--kind")
    if not _NAME.fullmatch(database.replace("-", "_")):
        raise click.BadParameter("a database name (letters, digits, _)", param_hint="--database")
    end = _instant(now_text, "--now") if now_text else datetime.now(UTC)
    start = end - timedelta(seconds=_duration(window, "--window"))
    reference = _reference(baseline, start)
    if threshold is not None and not math.isfinite(threshold):  # nan would pass every feature
        raise click.BadParameter(f"a number, not {threshold}", param_hint="--threshold")
    limit = threshold if threshold is not None else DEFAULT_THRESHOLDS[measure]
    features = tuple(known[f] for f in only) if only else FEATURES
    client = open_reading_store(server, data_dir, database)
    try:
        rows = client.query(drift_sql(database, reference, (start, end), features)).result_rows
    except Exception as e:  # noqa: BLE001 - one line for the user, never a traceback
        raise click.ClickException(f"the drift query failed: {error_line(e)}") from None
    results = []
    for tenant, k, feature, n_ref, n_win, psi, js, moved in rows:
        if kind is not None and k != kind:
            continue
        value = psi if measure == "psi" else js
        enough = min(n_ref, n_win) >= min_sample and value is not None
        verdict = ("drifted" if value > limit else "ok") if enough else "too few"
        results.append({
            "tenant": tenant, "kind": k, "feature": feature, "n_ref": n_ref, "n_win": n_win,
            "psi": psi, "js": js, "moved": moved, "verdict": verdict,
        })  # fmt: skip
    drifted = [r for r in results if r["verdict"] == "drifted"]
    if as_json:
        click.echo(json.dumps({"measure": measure, "threshold": limit, "reference": reference.describe(),
                               "window": [start.isoformat(), end.isoformat()], "features": results}))  # fmt: skip
    else:
        table = Table("tenant", "kind", "feature", "n ref", "n window", "PSI", "JS", "moved most", "verdict")
        for r in results:
            table.add_row(
                r["tenant"], r["kind"], r["feature"], str(r["n_ref"]), str(r["n_win"]), _fmt(r["psi"]),
                _fmt(r["js"]), r["moved"], r["verdict"],
            )  # fmt: skip
        console = _console()
        console.print(table)
        console.print(
            f"{len(drifted)} of {len(results)} feature(s) moved past {measure.upper()} {limit:g} "
            f"(window {start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC against {reference.describe()})"
        )
    if drifted:
        raise SystemExit(DRIFTED)


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"
