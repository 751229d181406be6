"""`clinotel compose`: the generated half of the `compose/` stack."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["compose"]


@click.group()
def compose() -> None:
    """The docker compose stack in compose/ (ClickHouse server, collector, Grafana, Alertmanager)."""


@compose.command()
@click.option(
    "--dir",
    "compose_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("compose"),
    show_default=True,
    help="The compose directory of this repository.",
)
@click.option("--tenant", help="The tenant of the write token (and of the contrib collector) [default: default].")
def generate(compose_dir: Path, tenant: str | None) -> None:
    """Write compose/generated/: provisioning, configuration and secrets (kept across runs)."""
    from clinotel.compose.generate import generate as run

    if not (compose_dir / "compose.yaml").exists():
        raise click.UsageError(f"{compose_dir} has no compose.yaml: give --dir, the repository's compose directory")
    try:
        result = run(compose_dir, tenant)
    except ValueError as e:  # the tenant, or a URL in .env
        raise click.UsageError(str(e)) from None
    root = compose_dir / "generated"
    click.echo(f"wrote {len(result.files)} files under {root}")
    if result.kept_rules:
        click.echo(f"  kept your {root / 'clinotel' / 'rules.yaml'}")
    click.echo(f"  pages go to {result.receivers.pages()}")
    click.echo(f"  tickets go to {result.receivers.tickets()}")
    if not result.receivers.pagerduty or not result.receivers.ticket_url:
        click.echo("  (set PAGERDUTY_ROUTING_KEY or CLINOTEL_TICKET_WEBHOOK_URL in .env and generate again)")
    click.echo(
        f"next: docker compose -f {compose_dir / 'compose.yaml'} --env-file {root / '.env'} up -d --build\n"
        f"      services send OTLP to 127.0.0.1:4318 with 'Authorization: Bearer <CLINOTEL_WRITE_TOKEN from .env>'"
    )
