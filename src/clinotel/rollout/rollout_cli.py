"""`clinotel rollout`: the release gate (may a canary be promoted, with the evidence) and the
kill-switch rehearsal (how long until services follow a switched flag)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import click

from clinotel.model.store import error_line, open_reading_store, reading_store
from clinotel.model.tables import DEFAULT_DATABASE
from clinotel.model.terminal import printable

__all__ = ["rollout"]

_KEY: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/+-]{0,63}$")
STAGES: Final = ("shadow", "recommend", "canary", "full")
"""The stages a flagged rollout goes through."""
GATED: Final = (("canary", "full"),)
"""The transitions `rollout gate` decides."""
_MIN_WINDOW: Final = 60
_MAX_WINDOW: Final = 90 * 86400


def _flag_key(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not _KEY.fullmatch(value):
        raise click.BadParameter(f"a flag key (letters, digits and _.:/+-, up to 64), not {value[:80]!r}")
    return value


def _window(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from clinotel.alerts.rules import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if not _MIN_WINDOW <= seconds <= _MAX_WINDOW:
        raise click.BadParameter(f"between 1m and 90d, not {value!r}")
    return seconds


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"a number, not {value}")
    return value


def _until(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime:
    from clinotel.rollout.changes_cli import parse_time

    return parse_time(value) if value is not None else datetime.now(UTC)


@click.group()
def rollout() -> None:
    """Promotion and rollback of flagged rollouts: the release gate and the kill-switch rehearsal."""


@rollout.command()
@click.option("--flag", "key", required=True, callback=_flag_key, help="The flag (a key of flags.yaml).")
@click.option("--from", "stage_from", type=click.Choice(STAGES), default="canary", show_default=True,
              help="The stage the flag is at (only canary is gated).")  # fmt: skip
@click.option("--to", "stage_to", type=click.Choice(STAGES), default="full", show_default=True,
              help="The stage it would be promoted to (only full is gated).")  # fmt: skip
@click.option("--flags", "flags_file", type=click.Path(dir_okay=False, path_type=Path), default=Path("flags.yaml"),
              show_default=True, help="The flag inventory.")  # fmt: skip
@click.option("--rules", type=click.Path(dir_okay=False, path_type=Path),
              help="The alert rules (kill criteria, fairness) [default: the default pack].")  # fmt: skip
@reading_store
@click.option("--database", default=DEFAULT_DATABASE, show_default=True)
@click.option(
    "--tenant",
    help="Only this tenant [default: the flag's exposure tenant, else the one tenant whose services evaluated the "
    "flag; refused when several did].",
)
@click.option("--window", "window_s", default="24h", show_default=True, callback=_window,
              help="The data window (1m to 90d), ending at --until.")  # fmt: skip
@click.option("--until", callback=_until, help="The end of the window (ISO 8601, or now-1h) [default: now].")
@click.option("--metric", "metrics", multiple=True,
              help="A safety metric (a rate indicator); repeat [default: under_triage_rate, final_under_triage_rate, "
                   "high_risk_miss_rate].")  # fmt: skip
@click.option("--margin", type=click.FloatRange(1, 10, min_open=True), default=1.5, show_default=True,
              callback=_finite, help="Non-inferiority margin: the ratio's interval stays under it.")  # fmt: skip
@click.option("--confidence", type=click.FloatRange(0.5, 0.9999, max_open=False), default=0.95, show_default=True,
              callback=_finite, help="Two-sided coverage of the non-inferiority intervals.")  # fmt: skip
@click.option("--min-samples", type=click.IntRange(1, 10_000_000), default=100, show_default=True,
              help="Rows each cohort needs of every safety metric.")  # fmt: skip
@click.option("--evidence", "evidence_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("rollout-evidence"), show_default=True,
              help="Where the evidence (Markdown and JSON) is written.")  # fmt: skip
def gate(
    key: str, stage_from: str, stage_to: str, flags_file: Path, rules: Path | None, server: str | None,
    data_dir: Path | None, database: str, tenant: str | None, window_s: int, until: datetime,
    metrics: tuple[str, ...], margin: float, confidence: float, min_samples: int, evidence_dir: Path,
) -> None:  # fmt: skip
    """Promote (exit 0) or refuse (exit 1) FLAG's canary: enough samples per cohort, no kill
    criterion breached, the canary non-inferior to the baseline on each safety metric, fairness
    within the band where samples suffice. Writes the evidence either way.

    One transition is gated: canary -> full (the canary cohort against the baseline cohort). Any
    other (shadow -> recommend, recommend -> canary, ...) is refused with exit 2: those stages
    have no canary cohort to compare."""
    from clinotel.alerts import default_rules_path
    from clinotel.alerts.rules import RuleError, load
    from clinotel.model.changes import recent_changes
    from clinotel.rollout import evidence as ev
    from clinotel.rollout import gate as g
    from clinotel.rollout.inventory import InventoryError
    from clinotel.rollout.inventory import load as load_flags

    if (stage_from, stage_to) not in GATED:
        raise click.UsageError(
            f"the gate decides {' and '.join(f'{a} -> {b}' for a, b in GATED)} only, not {stage_from} -> {stage_to}: "
            "it compares the canary cohort with the baseline cohort, which the earlier stages do not have "
            "(watch a shadow or recommend stage with the alert rules, such as shadow_disagreement)"
        )
    if evidence_dir.exists() and not evidence_dir.is_dir():
        raise click.BadParameter(f"{evidence_dir} is not a directory", param_hint="--evidence")
    if tenant is not None and not _KEY.fullmatch(tenant):
        raise click.BadParameter(f"a tenant label, not {tenant[:80]!r}", param_hint="--tenant")
    try:
        chosen = g.safety_metrics(metrics or g.SAFETY_METRICS)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--metric") from None
    try:
        inventory = load_flags(flags_file)
    except InventoryError as e:
        raise click.UsageError(str(e).splitlines()[0]) from None
    flag = next((f for f in inventory.flags if f.key == key), None)
    if flag is None:
        raise click.UsageError(f"flag {key!r} is not in {flags_file}")
    rules_path = rules or default_rules_path()
    try:
        pack = load(rules_path)
    except RuleError as e:
        raise click.UsageError(str(e).splitlines()[0]) from None
    missing = [r for r in flag.kill_criteria if r not in {x.name for x in pack.rules}]
    if missing:
        raise click.UsageError(f"{key}'s kill criteria are not rules of {rules_path.name}: {', '.join(missing)}")
    tenant = tenant or flag.exposure.tenant
    window = g.window_of(until, window_s)
    client = open_reading_store(server, data_dir, database)
    try:
        if tenant is None:
            # a flag key any tenant's services may write: one tenant's rollout is not decided on another's data
            tenants = g.flag_tenants(client, database, flag.key, window)
            if len(tenants) > 1:
                raise click.UsageError(
                    f"{key} was evaluated by the services of {len(tenants)} tenants ({', '.join(tenants)}): give "
                    "--tenant, or the flag's exposure tenant in the inventory"
                )
            tenant = tenants[0] if tenants else None
        result = g.evaluate(client, database, flag, pack, window, tenant=tenant, metrics=chosen, margin=margin,
                            confidence=confidence, min_samples=min_samples)  # fmt: skip
        changes = recent_changes(client, database, window.since, window.until, tenant=tenant)
    except click.UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - one line, not a traceback
        raise click.ClickException(f"cannot read the store: {error_line(e)}") from None
    settings = {"margin": margin, "confidence": confidence, "min_samples": min_samples, "metrics": list(chosen)}
    files = {"rules": (rules_path, ev.content_hash(rules_path)), "flags": (flags_file, ev.content_hash(flags_file))}
    data = ev.evidence(result, (stage_from, stage_to), files, changes, settings)
    try:
        json_path, md_path = ev.write(evidence_dir, data, datetime.now(UTC))
    except OSError as e:
        raise click.ClickException(f"cannot write the evidence in {evidence_dir}: {e.strerror or e}") from None
    for c in result.criteria:
        click.echo(f"{'PASS' if c.passed else 'FAIL'} {c.name}")
        for reason in c.reasons:
            click.echo(f"     {printable(reason)}")  # quotes labels a tenant's spans carry
    click.echo(f"{len(changes)} change event(s) in the window; evidence: {md_path} and {json_path.name}")
    if not result.promote:
        click.echo(f"REFUSE {key} {stage_from} -> {stage_to}: failing {', '.join(c.name for c in result.failing)}")
        raise SystemExit(1)
    click.echo(f"PROMOTE {key} {stage_from} -> {stage_to}")


@rollout.command()
@click.option("--flags", "flagd_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The flagd flag-definition file (JSON) the services read; only a copy is changed.")  # fmt: skip
@click.option("--rule", "rule_name", required=True, help="The rule whose disable_flag action is rehearsed.")
@click.option("--rules", type=click.Path(dir_okay=False, path_type=Path),
              help="The alert rules [default: the default pack].")  # fmt: skip
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.1, 600), default=30.0, show_default=True,
              callback=_finite, help="Seconds to wait for evaluations to follow.")  # fmt: skip
def rehearse(flagd_file: Path, rule_name: str, rules: Path | None, timeout_s: float) -> None:
    """Fire RULE's kill switch on a copy of the flagd file, with the real flagd provider (file
    mode, configured by the FLAGD_* environment as a service's) watching the copy, and report how
    long until evaluations in its scope follow (exit 1 when they do not within --timeout)."""
    from clinotel.alerts import default_rules_path
    from clinotel.alerts.rules import RuleError, load
    from clinotel.rollout.rehearse import RehearsalError
    from clinotel.rollout.rehearse import rehearse as run

    if not flagd_file.is_file():
        raise click.BadParameter(f"no such file: {flagd_file}", param_hint="--flags")
    try:
        pack = load(rules or default_rules_path())
    except RuleError as e:
        raise click.UsageError(str(e).splitlines()[0]) from None
    rule = next((r for r in pack.rules if r.name == rule_name), None)
    if rule is None:
        raise click.BadParameter(f"no rule named {rule_name[:80]!r} in the pack", param_hint="--rule")
    if rule.action is None:
        raise click.BadParameter(f"rule {rule_name!r} has no disable_flag action", param_hint="--rule")
    action = rule.action.disable_flag
    try:
        r = run(flagd_file, action, rule.name, timeout_s=timeout_s)
    except RehearsalError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"rule {rule.name}: {action.describe()} on a copy of {flagd_file.name} ({r.outcome})")
    click.echo(f"  in scope: {r.before} -> {r.after}; without the scope: {r.outside_before} -> {r.outside_after}")
    if r.follow_ms is None:
        click.echo(
            f"NOT FOLLOWED: evaluations still {r.after} after {timeout_s:g} s (re-checks every {r.recheck_ms} ms)"
        )
        raise SystemExit(1)
    click.echo(f"FOLLOWED after {r.follow_ms:.0f} ms (the provider re-checks the file every {r.recheck_ms} ms)")
