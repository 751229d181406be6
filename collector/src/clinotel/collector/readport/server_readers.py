"""Tenant readers on a ClickHouse server: one user per tenant, a read-only settings profile with
capped limits, and row policies on `TenantId`, rendered from the same tokens and tables the
embedded read port uses (`clinotel schema show --tenant-readers`).

On a server the isolation is ClickHouse's own: the row policy's condition is applied by the
engine before the reader's PREWHERE and WHERE, and the settings profile's constraints hold every
session to `readonly = 1`. The tenant-first partition key prunes the other tenants' parts there as
it does in the embedded engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

from clinotel.collector.readport import allowlist as read_allowlist
from clinotel.collector.readport.reader import NO_JIT, ReadLimits
from clinotel.collector.store.embedded import PLANNER_SETTINGS
from clinotel.collector.store.schema import TENANT_COLUMN, SchemaOptions, tenant_tables
from clinotel.collector.tokens import Tokens
from clinotel.model.sql import identifier, literal

__all__ = ["PROFILE", "ServerReadersError", "reader_user", "render"]

PROFILE: Final = "clinotel_reader"
ROW_POLICY_PREFIX: Final = "clinotel_tenant_"
ALL_ROWS_POLICY: Final = "clinotel_all_rows"
"""The permissive policy under every user's rows; each tenant user's restrictive one narrows it."""
_OUTPUT_SETTINGS: Final = (
    "output_format_json_quote_64bit_integers",
    "output_format_json_quote_denormals",
    "date_time_output_format",
    "session_timezone",
)
"""Output options clients send on a read-only session (allowed to change within readonly = 1)."""


class ServerReadersError(ValueError):
    """Tenant readers that cannot be rendered (a tenant without a read token, say)."""


def reader_user(tenant: str) -> str:
    """The server user a tenant's readers log in as."""
    return f"clinotel_read_{tenant}"


def _profile(o: SchemaOptions, limits: ReadLimits) -> str:
    caps = limits.caps()
    lines = [
        "readonly = 1 CONST",
        *(f"{name} = {cap} MIN 1 MAX {cap} CHANGEABLE_IN_READONLY" for name, cap in caps.items()),
        f"max_concurrent_queries_for_user = {limits.max_concurrent_per_tenant} CONST",
        *(f"{name} = {value}" for name, value in (*NO_JIT.items(), *PLANNER_SETTINGS.items())),
        *(f"{name} CHANGEABLE_IN_READONLY" for name in _OUTPUT_SETTINGS if name in read_allowlist.SETTINGS),
    ]
    body = ",\n    ".join(lines)
    return f"CREATE SETTINGS PROFILE OR REPLACE {identifier(PROFILE)}{o.on_cluster} SETTINGS\n    {body}"


def _tables(o: SchemaOptions) -> list[str]:
    names = [o.name(t) for t in tenant_tables()]
    if o.cluster:
        names += [o.local(t) for t in tenant_tables()]
    return names


def statements(o: SchemaOptions, tenants: Sequence[str], tokens: Tokens, limits: ReadLimits) -> Iterator[str]:
    """The profile, then per tenant its user, grants and row policy, then the policy that keeps
    every other user (the writer, operators) seeing all rows."""
    yield _profile(o, limits)
    tables = _tables(o)
    on = ", ".join(tables)
    users = []
    for tenant in tenants:
        digests = tokens.digests(tenant, "read")
        if not digests:
            raise ServerReadersError(
                f"the tenant {tenant!r} has no read token in the tokens file: "
                f"`clinotel tokens add --file FILE --tenant {tenant} --role read`"
            )
        user = identifier(reader_user(tenant))
        users.append(user)
        auth = ", ".join(f"sha256_hash BY {literal(d)}" for d in digests)
        yield (
            f"CREATE USER OR REPLACE {user}{o.on_cluster} IDENTIFIED WITH {auth}\n"
            f"    DEFAULT DATABASE {identifier(o.database)} SETTINGS PROFILE {literal(PROFILE)}"
        )
        for table in [*tables, *(f"system.{t}" for t in sorted(read_allowlist.SYSTEM_TABLES))]:
            yield f"GRANT{o.on_cluster} SELECT ON {table} TO {user}"
        policy = identifier(f"{ROW_POLICY_PREFIX}{tenant}")
        yield (
            f"CREATE ROW POLICY OR REPLACE {policy}{o.on_cluster} ON {on}\n"
            f"    USING {identifier(TENANT_COLUMN)} = {literal(tenant)} AS RESTRICTIVE TO {user}"
        )
    everyone = identifier(ALL_ROWS_POLICY)
    yield (f"CREATE ROW POLICY OR REPLACE {everyone}{o.on_cluster} ON {on}\n    USING 1 AS PERMISSIVE TO ALL")


def render(o: SchemaOptions, tenants: Sequence[str], tokens: Tokens, limits: ReadLimits | None = None) -> str:
    """The statements as SQL text, with the server settings they assume."""
    header = (
        "-- Tenant readers on a ClickHouse server (clinotel schema show --tenant-readers).\n"
        "-- Each tenant's read token is its user's password (by digest). Also set, in the server's config:\n"
        "--   <access_control_improvements><select_from_system_db_requires_grant>true\n"
        "--   </select_from_system_db_requires_grant></access_control_improvements>\n"
        "-- so readers see only the system tables granted below (not system.processes, query_log, …).\n"
    )
    body = "\n\n".join(s + ";" for s in statements(o, tenants, tokens, limits or ReadLimits()))
    return header + "\n" + body + "\n"
