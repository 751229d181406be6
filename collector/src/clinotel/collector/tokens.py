"""Tokens: who may write (or read) as which tenant.

    # tokens.toml
    [[token]]
    tenant = "st-marys"
    role = "write"                       # or "read"
    sha256 = "9f86d081884c7d65…"         # of the token; or `token = "…"` in plain text

    [[token]]
    tenant = "*"                         # every tenant: read tokens only (operators, Grafana)
    role = "read"
    sha256 = "…"

The tenant a span is stored under is always its token's: `clinical.tenant.id` in the payload is
overwritten, so one tenant cannot write into another's data.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

__all__ = ["ALL_TENANTS", "Grant", "TokenError", "Tokens"]

Role = Literal["write", "read"]
ROLES: Final = ("write", "read")
ALL_TENANTS: Final = "*"


class TokenError(ValueError):
    """The tokens file cannot be used."""


@dataclass(frozen=True)
class Grant:
    tenant: str
    role: Role

    def __repr__(self) -> str:
        return f"Grant(tenant={self.tenant!r}, role={self.role!r})"


def _entry_lines(path: Path) -> list[int]:
    """The line of each `[[token]]` header, in order (tomllib keeps no positions)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    return [n for n, line in enumerate(text.splitlines(), start=1) if re.match(r"^\s*\[\[\s*token\s*\]\]", line)]


class Tokens:
    """Token digests mapped to grants; lookups compare digests in constant time."""

    def __init__(self, grants: dict[bytes, Grant]) -> None:
        self._grants = grants

    def __repr__(self) -> str:
        return f"Tokens({len(self._grants)} tokens)"

    @classmethod
    def load(cls, path: Path) -> Tokens:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise TokenError(f"{path}: {e}") from None
        grants: dict[bytes, Grant] = {}
        seen: dict[bytes, str] = {}
        lines = _entry_lines(path)
        for i, entry in enumerate(data.get("token", []), start=1):
            entry_name = f"token {i}" + (f" (line {lines[i - 1]})" if i <= len(lines) else "")
            where = f"{path}: {entry_name}"
            tenant, role = entry.get("tenant"), entry.get("role", "write")
            if not isinstance(tenant, str) or not tenant:
                raise TokenError(f"{where}: needs a tenant")
            if role not in ROLES:
                raise TokenError(f"{where}: role must be 'write' or 'read', not {role!r}")
            if tenant == ALL_TENANTS and role != "read":
                raise TokenError(f"{where}: tenant '*' (every tenant) is for read tokens only")
            if "sha256" in entry:
                try:
                    digest = bytes.fromhex(entry["sha256"])
                except (TypeError, ValueError):
                    raise TokenError(f"{where}: sha256 must be 64 hex digits") from None
                if len(digest) != 32:
                    raise TokenError(f"{where}: sha256 must be 64 hex digits")
            elif isinstance(entry.get("token"), str) and len(entry["token"]) >= 16:
                digest = hashlib.sha256(entry["token"].encode()).digest()
            else:
                raise TokenError(f"{where}: needs `sha256` or a `token` of 16 characters or more")
            if digest in seen:  # one token, two grants: which tenant it writes as would be a guess
                raise TokenError(
                    f"{path}: {seen[digest]} and {entry_name} are the same token ({grants[digest].tenant!r} "
                    f"{grants[digest].role}, {tenant!r} {role}): give each grant a token of its own"
                )
            seen[digest] = entry_name
            grants[digest] = Grant(tenant, role)
        if not grants:
            raise TokenError(f"{path}: no [[token]] entries")
        return cls(grants)

    def grant(self, token: str | None) -> Grant | None:
        """The grant of a presented token, or None."""
        if not token:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for known, grant in self._grants.items():
            if hmac.compare_digest(known, digest):
                found = grant
        return found
