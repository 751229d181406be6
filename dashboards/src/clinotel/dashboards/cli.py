"""`clinotel dashboards build | check`."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clinotel.model.store import first_line, open_reading_store, reading_store
from clinotel.model.tables import DEFAULT_DATABASE
from clinotel.model.terminal import printable

__all__ = ["dashboards", "report"]

_RELATIVE = re.compile(r"now(?:-(\d+)([smhd]))?")


def _when(text: str) -> datetime:
    """ISO 8601 (UTC if no zone) or Grafana's `now`, `now-6h`."""
    match = _RELATIVE.fullmatch(text.strip())
    if match:
        now = datetime.now(UTC)
        if match.group(1) is None:
            return now
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return now - timedelta(**{unit: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"expected ISO 8601 or now-6h, not {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _range(client: object, database: str, from_: str | None, to: str | None) -> tuple[datetime, datetime]:
    """The range asked for, or the data's own (`check.data_range`: the first workflow's start to
    the end of the last span, so the last workflows' later stages are in). Each panel's interval
    comes from the panel, as Grafana computes it (`interval.panel_interval`)."""
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from clinotel.dashboards.check import data_range
    from clinotel.model import clinical

    if from_ is None or to is None:
        try:
            found = data_range(client, database)
        except ClickHouseError as e:
            raise click.ClickException(
                f"cannot read {database}.{clinical.WORKFLOWS} ({first_line(e, 200)}); "
                "no clinotel store here yet? `clinotel serve` or `clinotel schema apply` creates it"
            ) from None
        if found is None:
            raise click.ClickException(f"{database} holds no workflows yet: give --from and --to")
        start = _when(from_) if from_ else found[0]
        end = _when(to) if to else found[1]
    else:
        start, end = _when(from_), _when(to)
    if end <= start:
        raise click.BadParameter("--to must be after --from")
    return start, end


_FLAGS_HELP = "The flag inventory (flags.yaml), for the rollout dashboard's expired and stale flags."


def _flags(path: Path | None) -> tuple[tuple[str, date], ...]:
    """(key, expiry) of each flag of the inventory at `path` (none: ()); a usage error (exit 2) when
    it cannot be read."""
    if path is None:
        return ()
    try:
        from clinotel.rollout.inventory import InventoryError, load
    except ImportError:
        raise click.UsageError("--flags needs the clinotel package (the flag inventory's reader)") from None
    try:
        return tuple((f.key, f.expiry) for f in load(path).flags)
    except InventoryError as e:
        raise click.UsageError(str(e).splitlines()[0]) from None


@click.group()
def dashboards() -> None:
    """Grafana dashboards: build them, or run every panel against a store."""


@dashboards.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output directory.")
@click.option("--database", default=DEFAULT_DATABASE, show_default=True)
@click.option("--clickhouse-url", default="http://clickhouse:8123", show_default=True,
              help="Where Grafana reaches ClickHouse or a collector's --http port.")  # fmt: skip
@click.option("--flags", "flags_file", type=click.Path(dir_okay=False, path_type=Path), help=_FLAGS_HELP)
def build(out: Path, database: str, clickhouse_url: str, flags_file: Path | None) -> None:
    """Write the dashboards' JSON and Grafana's provisioning files (datasource, dashboard provider).
    With --flags, the rollout dashboard's flags panel knows the inventory: rebuild when it changes."""
    from clinotel.dashboards.provisioning import DatasourceOptions, write

    for path in write(out, DatasourceOptions(url=clickhouse_url, database=database), _flags(flags_file)):
        click.echo(path)


@dashboards.command()
@reading_store
@click.option("--database", default=DEFAULT_DATABASE, show_default=True)
@click.option("--from", "from_", help="Range start (ISO 8601 or now-6h) [default: the data's first workflow].")
@click.option("--to", help="Range end [default: the data's last workflow].")
@click.option("--require-rows", is_flag=True, help="Fail on a panel that returns no rows.")
@click.option("--flags", "flags_file", type=click.Path(dir_okay=False, path_type=Path), help=_FLAGS_HELP)
def check(
    server: str | None, data_dir: Path | None, database: str, from_: str | None, to: str | None, require_rows: bool,
    flags_file: Path | None,
) -> None:  # fmt: skip
    """Run every panel's SQL as Grafana would (macros and variables expanded); fail on any error."""
    from clinotel.dashboards import build_all
    from clinotel.dashboards.check import panel_queries, run
    from clinotel.dashboards.macros import TimeRange

    flags = _flags(flags_file)
    client = open_reading_store(server, data_dir, database)
    start, end = _range(client, database, from_, to)
    queries = list(panel_queries(build_all(database, flags)))
    table = Table("dashboard", "panel", "rows", "ms", "error", title=f"{start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC")
    failed = empty = 0
    for r in run(client, queries, TimeRange(start, end)):
        failed += r.error is not None
        empty += r.error is None and r.rows == 0
        style = "red" if r.error else ("yellow" if r.rows == 0 else "")
        error = escape(printable(r.error or ""))  # the engine's text (it quotes the query): not markup
        table.add_row(r.query.dashboard, r.query.panel, str(r.rows), f"{r.ms:.0f}", error, style=style)
    Console().print(table)
    click.echo(f"{len(queries)} queries: {failed} failed, {empty} empty")
    if failed or (require_rows and empty):
        raise SystemExit(1)


@click.command()
@reading_store
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("clinotel-report.html"),
              show_default=True, help="The HTML file to write.")  # fmt: skip
@click.option("--database", default=DEFAULT_DATABASE, show_default=True)
@click.option("--from", "from_", help="Range start (ISO 8601 or now-6h) [default: the data's first workflow].")
@click.option("--to", help="Range end [default: the data's last workflow].")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The alert rules the evaluator runs [default: clinotel's default pack, when clinotel-alerts "
                   "is installed].")  # fmt: skip
@click.option("--flags", "flags_file", type=click.Path(dir_okay=False, path_type=Path), help=_FLAGS_HELP)
def report(
    server: str | None, data_dir: Path | None, out: Path, database: str, from_: str | None, to: str | None,
    rules_file: Path | None, flags_file: Path | None,
) -> None:  # fmt: skip
    """Write one self-contained HTML file: the findings (alerts, kill criteria, disparities,
    incidents) on its first page, then every dashboard panel drawn; readable offline and printable."""
    from clinotel.dashboards import build_all
    from clinotel.dashboards.macros import TimeRange
    from clinotel.dashboards.report import render

    rules = _rules(rules_file)
    flags = _flags(flags_file)
    client = open_reading_store(server, data_dir, database)
    start, end = _range(client, database, from_, to)
    result = render(client, build_all(database, flags), TimeRange(start, end), database=database, rules=rules)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.html, encoding="utf-8")
    click.echo(f"wrote {out} ({result.panels} panels, {result.failed} failed, {len(result.html) // 1024} KiB)")
    if result.failed:
        raise SystemExit(1)


def _rules(path: Path | None) -> tuple[Any, ...]:
    """The alert rules to read the audit trail with: `path`, or the default pack; none when
    clinotel-alerts is not installed (the dashboards do not depend on it)."""
    try:
        from clinotel.alerts import default_rules_path
        from clinotel.alerts.rules import RuleError, load
    except ImportError:
        if path is not None:
            raise click.BadParameter("reading rules needs clinotel-alerts installed", param_hint="--rules") from None
        return ()
    try:
        return tuple(load(path or default_rules_path()).rules)
    except RuleError as e:
        raise click.BadParameter(str(e), param_hint="--rules") from None
