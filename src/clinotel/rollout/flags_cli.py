"""`clinotel flags check`: the flag inventory for CI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from clinotel.model.store import error_line, open_reading_store
from clinotel.model.tables import DEFAULT_DATABASE

__all__ = ["evaluated_flags", "flags"]


def evaluated_flags(client: object, database: str, since: datetime) -> dict[str, datetime]:
    """Flag key -> the last evaluation recorded on a decide stage since `since`."""
    from clinotel.model import clinical
    from clinotel.model.sql import identifier

    table = f"{identifier(database)}.{identifier(clinical.STAGE_SPANS)}"
    rows = client.query(  # type: ignore[attr-defined]
        f"SELECT FlagKey, max(Timestamp) FROM {table} WHERE FlagKey != '' "
        f"AND Timestamp >= fromUnixTimestamp64Milli({int(since.timestamp() * 1000)}) GROUP BY FlagKey"
    ).result_rows
    return {str(k): (t if t.tzinfo else t.replace(tzinfo=UTC)) for k, t in rows}


@click.group()
def flags() -> None:
    """The flag inventory (flags.yaml): owners, expiries, exposure, kill criteria."""


@flags.command("check")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), default=Path("flags.yaml"),
              show_default=True, help="The inventory.")  # fmt: skip
@click.option("--rules", type=click.Path(dir_okay=False, path_type=Path),
              help="The alert rules the kill criteria must name [default: the default pack].")  # fmt: skip
@click.option("--server", metavar="URL", help="Also compare with the flags evaluated in telemetry (read port; "
              "the read token in CLICKHOUSE_PASSWORD).")  # fmt: skip
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Or read an embedded store.")
@click.option("--database", default=DEFAULT_DATABASE, show_default=True)
@click.option("--stale-days", type=click.IntRange(1, 3650), default=14, show_default=True,
              help="A listed flag not evaluated for this long should retire.")  # fmt: skip
def check_(
    path: Path, rules: Path | None, server: str | None, data_dir: Path | None, database: str, stale_days: int
) -> None:
    """Fail (exit 1) on an expired flag, one without owner or kill criteria, a kill criterion that
    is not a rule; with --server, a flag evaluated but not listed, or listed but not evaluated."""
    from clinotel.alerts.options import checked_rules
    from clinotel.rollout.inventory import InventoryError, check, load

    try:
        inventory = load(path)
    except InventoryError as e:
        raise click.ClickException(str(e)) from None
    pack = checked_rules(rules)
    now = datetime.now(UTC)
    evaluated = None
    if server is not None or data_dir is not None:
        client = open_reading_store(server, data_dir, database)
        try:
            evaluated = evaluated_flags(client, database, now - timedelta(days=max(stale_days, 30)))
        except Exception as e:  # noqa: BLE001 - one line, not a traceback
            raise click.ClickException(f"cannot read the flag evaluations: {error_line(e)}") from None
    problems = check(inventory, now.date(), [r.name for r in pack.rules], evaluated, stale_days, now)
    for p in problems:
        click.echo(f"FAIL {p}")
    click.echo(f"{len(inventory.flags)} flags: {len(problems)} problem(s)")
    if problems:
        raise SystemExit(1)
