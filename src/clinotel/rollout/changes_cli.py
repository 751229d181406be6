"""`clinotel changes`: record a change event from a CI/CD pipeline (no Python service needed), and
list what changed in a scope."""

from __future__ import annotations

import json
import math
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import click

from clinotel.model.digits import ascii_digits
from clinotel.model.store import error_line, open_reading_store, reading_store
from clinotel.model.tables import DEFAULT_DATABASE
from clinotel.semconv import LABEL_PATTERN
from clinotel.semconv import attributes as A

__all__ = ["ENV_WRITE_TOKEN", "changes", "parse_time"]

ENV_WRITE_TOKEN: Final = "CLINOTEL_WRITE_TOKEN"
"""The collector's write token for the tenant (sent as `authorization: Bearer …`)."""
_SCOPE_OPTIONS: Final = ("site", "department", "workflow_kind", "stage")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(text: str) -> datetime:
    """ISO 8601 (UTC unless it says otherwise) or `now-6h`, `now-30m`, `now`; from 1970 (OTLP's
    epoch) to a day from now."""
    text = text.strip()
    bad = f"a time such as 2026-03-01T12:00:00Z or now-6h, not {text[:60]!r}"
    now = datetime.now(UTC)
    if text.startswith("now"):
        rest = text[3:]
        if not rest:
            return now
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        if not (rest[0] == "-" and rest[-1:] in units and ascii_digits(rest[1:-1]) and len(rest) < 14):
            raise click.BadParameter(bad)
        when = now - timedelta(seconds=int(rest[1:-1]) * units[rest[-1]])
    else:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter(bad) from None
        when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    if not _EPOCH <= when <= now + timedelta(days=1):
        raise click.BadParameter(f"a time from 1970 to a day from now, not {text[:60]!r}")
    return when


def _label(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A label as the registry's LABEL_PATTERN has it: what pages and evidence print stays one line."""
    if not re.fullmatch(LABEL_PATTERN, value):
        raise click.BadParameter(f"a label (letters, digits and _.:/+ -, up to 64), not {value[:60]!r}")
    return value


def scope_options(f: click.decorators.FC) -> click.decorators.FC:
    for name in reversed(_SCOPE_OPTIONS):
        f = click.option(f"--{name.replace('_', '-')}", name, help=f"Scope: the {name.replace('_', ' ')}.")(f)
    return f


@click.group()
def changes() -> None:
    """Change events: deploys, model versions, flag, rule and configuration changes."""


@changes.command()
@click.argument("kind", type=click.Choice(A.CHANGE_KINDS))
@click.argument("name")
@click.option("--version", "version", help="What it is now: a version, or a flag state such as off.")
@click.option("--actor", help="Who changed it: role:NAME, pipeline:NAME, service:NAME or rule:NAME (never a person).")
@scope_options
@click.option("--at", "at", help="When (ISO 8601, or now-10m) [default: now].")
@click.option("--endpoint", envvar="OTEL_EXPORTER_OTLP_ENDPOINT", show_envvar=True, required=True,
              help="The collector's OTLP/HTTP address, such as http://127.0.0.1:4318.")  # fmt: skip
@click.option("--tenant", envvar="CLINOTEL_TENANT", show_envvar=True,
              help="The tenant (the collector stamps the write token's tenant over it).")  # fmt: skip
@click.option("--service", default="clinotel-changes", show_default=True, callback=_label,
              help="service.name of the event (a label: letters, digits and _.:/+ -, up to 64).")  # fmt: skip
def add(
    kind: str, name: str, version: str | None, actor: str | None, site: str | None, department: str | None,
    workflow_kind: str | None, stage: str | None, at: str | None, endpoint: str, tenant: str | None, service: str,
) -> None:  # fmt: skip
    """Record that NAME (of KIND) changed; sent over OTLP to the collector, stored per tenant.

    The write token is read from CLINOTEL_WRITE_TOKEN (or OTEL_EXPORTER_OTLP_HEADERS)."""
    from clinotel.instrumentation import TelemetryValidationError
    from clinotel.instrumentation.changes import ChangeSpec, SendError, send_changes

    values = {"site": site, "department": department, "workflow_kind": workflow_kind, "stage": stage}
    scope = {k: v for k, v in values.items() if v is not None}
    token = os.environ.get(ENV_WRITE_TOKEN)
    headers = {"authorization": f"Bearer {token}"} if token else None
    spec = ChangeSpec(kind, name, version, actor, scope, at=parse_time(at) if at else None)
    try:
        send_changes([spec], endpoint=endpoint, headers=headers, tenant=tenant, service=service)
    except TelemetryValidationError as e:
        raise click.UsageError(str(e)) from None
    except SendError as e:
        hint = ""
        if e.status in (401, 403):
            given = token or "authorization" in os.environ.get("OTEL_EXPORTER_OTLP_HEADERS", "").lower()
            hint = (
                " (the collector refused the write token given)"
                if given
                else f" (the tenant's write token goes in {ENV_WRITE_TOKEN}, which is not set)"
            )
        raise click.ClickException(f"{e}{hint}") from None
    click.echo(f"recorded {kind} {name}" + (f" -> {version}" if version else ""))


@changes.command("list")
@reading_store
@click.option("--database", default=DEFAULT_DATABASE, show_default=True)
@click.option("--hours", type=click.FloatRange(min=0, min_open=True, max=24 * 366), default=24.0, show_default=True,
              help="How far back.")  # fmt: skip
@click.option("--tenant", help="Only this tenant (an operator token sees every tenant).")
@scope_options
@click.option("--json", "as_json", is_flag=True, help="JSON, one object per change.")
def list_(
    server: str | None, data_dir: Path | None, database: str, hours: float, tenant: str | None, site: str | None,
    department: str | None, workflow_kind: str | None, stage: str | None, as_json: bool,
) -> None:  # fmt: skip
    """What changed in the last N hours that applies to a scope."""
    from clinotel.model.changes import describe, recent_changes

    if not math.isfinite(hours):
        raise click.BadParameter(f"a number of hours, not {hours}", param_hint="--hours")
    values = {"site": site, "department": department, "workflow_kind": workflow_kind, "stage": stage}
    scope = {k: v for k, v in values.items() if v is not None}
    client = open_reading_store(server, data_dir, database)
    until = datetime.now(UTC) + timedelta(minutes=1)
    try:
        found = recent_changes(client, database, until - timedelta(hours=hours), until, tenant=tenant, scope=scope)
    except Exception as e:  # noqa: BLE001 - one line, not a traceback
        raise click.ClickException(f"cannot read the changes: {error_line(e)}") from None
    if as_json:
        for c in found:
            click.echo(json.dumps(c.to_json()))
    else:
        click.echo(describe(found, hours))
