"""`clinotel schema`: create or show the ClickHouse schema."""

from __future__ import annotations

from pathlib import Path

import click

from clinotel.collector import schema as schema_module
from clinotel.collector.store import StoreError, connect

__all__ = ["schema"]


def _options(database: str, cluster: str | None, ttl_days: int | None) -> schema_module.SchemaOptions:
    try:
        return schema_module.SchemaOptions(database=database, cluster=cluster, ttl_days=ttl_days)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


_common = [
    click.option("--database", default="clinotel", show_default=True, help="Database to create the tables in."),
    click.option("--cluster", help="Render ON CLUSTER DDL with Replicated and Distributed tables."),
    click.option("--ttl-days", type=int, help="Drop data older than this many days (per table, whole parts)."),
]


def _with_common(f: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_common):
        f = option(f)
    return f


@click.group()
def schema() -> None:
    """The ClickHouse schema: contrib trace tables and clinotel's views."""


@schema.command()
@_with_common
def show(database: str, cluster: str | None, ttl_days: int | None) -> None:
    """Print the schema's DDL, in the order it is applied."""
    click.echo(schema_module.render(_options(database, cluster, ttl_days)), nl=False)


@schema.command("apply")
@_with_common
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The embedded engine's data directory [default: ./.clinotel/data].",
)
@click.option("--clickhouse-url", help="A ClickHouse server (http://host:8123); CLICKHOUSE_USER/PASSWORD.")
def apply_command(
    database: str, cluster: str | None, ttl_days: int | None, data_dir: Path | None, clickhouse_url: str | None
) -> None:
    """Create the schema, applying the migrations not yet recorded, in order."""
    if data_dir is not None and clickhouse_url is not None:
        raise click.UsageError("give --data-dir or --clickhouse-url, not both")
    options = _options(database, cluster, ttl_days)
    try:
        client = connect(data_dir, clickhouse_url)
        applied = schema_module.apply(client, options)
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    if applied:
        click.echo(f"applied migrations {', '.join(map(str, applied))} to {database}")
    else:
        click.echo(f"{database} is up to date (schema version {schema_module.SCHEMA_VERSION})")
