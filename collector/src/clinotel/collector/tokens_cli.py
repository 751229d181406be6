"""`clinotel tokens`: create tokens and check a tokens file, without ever writing a token down."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from clinotel.collector.tokens import ALL_TENANTS, ROLES, Role, TokenError, Tokens, add_token

__all__ = ["tokens"]


@click.group()
def tokens() -> None:
    """Collector tokens: who may write, read or scrape as which tenant (tokens.toml)."""


@tokens.command()
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), required=True, help="tokens.toml")
@click.option("--tenant", required=True, help="The tenant (clinical.tenant.id), or '*' for read and metrics tokens.")
@click.option("--role", type=click.Choice(ROLES), default="write", show_default=True)
def add(path: Path, tenant: str, role: str) -> None:
    """Create a token: its SHA-256 digest is appended to the file (created mode 0600); the token
    itself is printed once, on standard output, and stored nowhere."""
    try:
        token = add_token(path, tenant, cast(Role, role))
    except TokenError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"added a {role} token for {tenant} to {path}; it is shown only now:", err=True)
    click.echo(token)


@tokens.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def check(path: Path) -> None:
    """Check a tokens file as `clinotel serve --tokens` reads it (permissions, entries, duplicates)."""
    try:
        loaded = Tokens.load(path)
    except TokenError as e:
        raise click.ClickException(str(e)) from None
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{path}: {len(loaded)} token{'s' if len(loaded) != 1 else ''}, usable")
    summary = loaded.summary()
    width = max(len(tenant) for tenant in summary)
    for tenant, roles in summary.items():
        counts = ", ".join(f"{n} {role}" for role in ROLES if (n := roles.get(role, 0)))
        label = "(every tenant)" if tenant == ALL_TENANTS else ""
        click.echo(f"  {tenant:<{width}}  {counts} {label}".rstrip())
