"""`clinotel compose generate`: everything under `compose/generated/`, from the same code that
serves the embedded default, so the stack can never drift from it.

Secrets are made once (random, URL-safe) and kept on every later run: regenerating after an
upgrade refreshes dashboards and configuration without logging anyone out. `rules.yaml` is the
operators' copy of the default rule pack and is kept once it exists.

Receivers follow `.env`: Grafana refuses to start on a contact point with an empty PagerDuty key
or webhook URL, so PagerDuty is written only when PAGERDUTY_ROUTING_KEY is set and the ticket
webhook only when CLINOTEL_TICKET_WEBHOOK_URL is; otherwise pages and tickets go to the stack's
Alertmanager alone. Changing either in `.env` takes a new `generate`."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml

from clinotel.model.tables import DEFAULT_DATABASE
from clinotel.semconv import attributes as A

if TYPE_CHECKING:
    from clinotel.alerts.export import Receivers

__all__ = ["GENERATED", "Generated", "generate"]

GENERATED: Final = "generated"
_SECRETS: Final = ("CLINOTEL_WRITER_PASSWORD", "CLINOTEL_GRAFANA_READ_TOKEN", "CLINOTEL_WRITE_TOKEN",
                   "GF_SECURITY_ADMIN_PASSWORD")  # fmt: skip
_SETTINGS: Final = {
    "CLINOTEL_TENANT": "default",
    "CLINOTEL_TTL_DAYS": "400",
    "CLINOTEL_TICKET_WEBHOOK_URL": "",
    "PAGERDUTY_ROUTING_KEY": "",
}
_OLD_TICKET_DEFAULT: Final = "http://ticket-bridge:8080/clinotel"
"""The ticket URL earlier versions wrote by default, for a service the stack never had."""
CLICKHOUSE_URL: Final = "http://clickhouse:8123"
ALERTMANAGER_URL: Final = "http://alertmanager:9093"
DATABASE: Final = DEFAULT_DATABASE


@dataclass(frozen=True)
class Generated:
    """What one run wrote, and the settings it used."""

    files: list[Path]
    env: dict[str, str]
    kept_rules: bool
    receivers: Receivers


def _read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    return values


def _env(existing: dict[str, str], tenant: str | None) -> dict[str, str]:
    env = dict(existing)
    for key in _SECRETS:
        env.setdefault(key, secrets.token_urlsafe(32))
    if env.get("CLINOTEL_TICKET_WEBHOOK_URL") == _OLD_TICKET_DEFAULT:
        env["CLINOTEL_TICKET_WEBHOOK_URL"] = ""
    for key, default in _SETTINGS.items():
        env.setdefault(key, os.environ.get(key, default))
    if tenant is not None:
        env["CLINOTEL_TENANT"] = tenant
    A.TENANT_ID.validator()(env["CLINOTEL_TENANT"])  # the registry's check: it goes into tokens.toml
    return env


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text, encoding="utf-8")


def _tokens(env: dict[str, str]) -> str:
    digest = hashlib.sha256(env["CLINOTEL_WRITE_TOKEN"].encode()).hexdigest()
    return (
        "# clinotel collector tokens: the write token's digest only (the token is in .env).\n"
        "# More tenants: add [[token]] entries (docs/operations.md).\n"
        f'[[token]]\ntenant = "{env["CLINOTEL_TENANT"]}"\nrole = "write"\nsha256 = "{digest}"\n'
    )


def otelcol_config() -> dict[str, Any]:
    """The contrib collector's configuration: OTLP in, the allowlist and PHI rules as OTTL, the
    ClickHouse exporter into clinotel's tables (which it must not create)."""
    from clinotel.collector.store.ottl import transform_processor
    from clinotel.model.tables import TRACES

    return {
        "receivers": {
            "otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}, "http": {"endpoint": "0.0.0.0:4318"}}}
        },
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 75, "spike_limit_percentage": 20},
            "transform/clinotel": transform_processor(),
        },
        "exporters": {
            "clickhouse": {
                "endpoint": "tcp://clickhouse:9000?dial_timeout=10s",
                "database": DATABASE,
                "username": "clinotel_writer",
                "password": "${env:CLICKHOUSE_PASSWORD}",
                "create_schema": False,
                "traces_table_name": TRACES,
                "timeout": "10s",
                "sending_queue": {"batch": {"min_size": 5000, "flush_timeout": "5s"}},
                "retry_on_failure": {"enabled": True, "initial_interval": "5s", "max_interval": "30s"},
            }
        },
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "transform/clinotel"],
                    "exporters": ["clickhouse"],
                }
            }
        },
    }


def generate(compose_dir: Path, tenant: str | None = None) -> Generated:
    """Write `compose_dir/generated/`; returns what was written."""
    from clinotel.alerts import default_rules_path
    from clinotel.alerts.export import Receivers
    from clinotel.alerts.export import write as write_alerting
    from clinotel.alerts.rules import load
    from clinotel.dashboards.provisioning import DatasourceOptions
    from clinotel.dashboards.provisioning import write as write_dashboards

    out = compose_dir / GENERATED
    env_path = out / ".env"
    env = _env(_read_env(env_path), tenant)
    receivers = Receivers.from_env(env, ALERTMANAGER_URL)  # a bad URL is refused before anything is written
    files: list[Path] = []

    _write_private(env_path, "# Secrets and settings of the compose stack; keep out of version control.\n"
                   + "".join(f"{k}={v}\n" for k, v in sorted(env.items())))  # fmt: skip
    files.append(env_path)

    clinotel = out / "clinotel"
    clinotel.mkdir(parents=True, exist_ok=True)
    tokens = clinotel / "tokens.toml"
    _write_private(tokens, _tokens(env))  # the collector refuses a tokens file others can read
    rules = clinotel / "rules.yaml"
    kept = rules.exists()
    if not kept:
        shutil.copyfile(default_rules_path(), rules)
    files += [tokens, rules]

    files += write_dashboards(out / "grafana", DatasourceOptions(url=CLICKHOUSE_URL, database=DATABASE))
    # Grafana shows the rules paused: the clinotel evaluator pages, and one incident pages once.
    files += write_alerting(out, load(rules), receivers, DATABASE, paused=True)

    key = out / "secrets" / "pagerduty-routing-key"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(env["PAGERDUTY_ROUTING_KEY"], encoding="utf-8")
    key.chmod(0o644)  # Alertmanager's unprivileged user reads it through the bind mount
    files.append(key)

    otelcol = out / "otelcol" / "config.yaml"
    otelcol.parent.mkdir(parents=True, exist_ok=True)
    otelcol.write_text(
        "# Generated by `clinotel compose generate` from clinotel.semconv; edit the generator, not this file.\n"
        + yaml.safe_dump(otelcol_config(), sort_keys=False, width=1_000_000),
        encoding="utf-8",
    )
    files.append(otelcol)
    return Generated(files, env, kept, receivers)
