"""Tokens: who may write (or read) as which tenant.

    # tokens.toml (mode 0600: a file others can read is refused, as ssh refuses a readable key)
    [[token]]
    tenant = "st-marys"
    role = "write"                       # "write", "read" or "metrics"
    sha256 = "9f86d081884c7d65…"         # of the token (`clinotel tokens add` writes these)

    [[token]]
    tenant = "*"                         # every tenant: read tokens only (operators, Grafana)
    role = "read"
    sha256 = "…"

    [[token]]
    tenant = "*"                         # a scrape token: /metrics only (Prometheus)
    role = "metrics"
    sha256 = "…"

A plain `token = "…"` instead of `sha256` still works and is warned about. The tenant a span is
stored under is always its token's: `clinical.tenant.id` in the payload is overwritten, so one
tenant cannot write into another's data. `/metrics` needs a `metrics` token or an operator (`*`)
read token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from clinotel.semconv import attributes as A

__all__ = ["ALL_TENANTS", "ROLES", "Grant", "TokenError", "Tokens", "add_token", "new_token"]

Role = Literal["write", "read", "metrics"]
ROLES: Final = ("write", "read", "metrics")
ALL_TENANTS: Final = "*"
MIN_TOKEN_CHARS: Final = 16
_HEADER: Final = re.compile(r"^\s*\[\[\s*token\s*\]\]", re.MULTILINE)


class TokenError(ValueError):
    """The tokens file cannot be used."""


@dataclass(frozen=True)
class Grant:
    tenant: str
    role: Role

    def __repr__(self) -> str:
        return f"Grant(tenant={self.tenant!r}, role={self.role!r})"

    @property
    def operator(self) -> bool:
        """A read token for every tenant."""
        return self.role == "read" and self.tenant == ALL_TENANTS

    @property
    def may_scrape(self) -> bool:
        """May read /metrics (collector-wide figures): a metrics token or an operator."""
        return self.role == "metrics" or self.operator


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _check_private(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise TokenError(f"{path}: {e.strerror or e}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(
            f"{path}: permissions {stat.filemode(mode)[1:]} are too open (others can read the tokens): chmod 600 {path}"
        )


@dataclass
class Tokens:
    """Token digests mapped to grants; lookups compare digests in constant time."""

    _grants: dict[bytes, Grant]
    warnings: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Tokens({len(self._grants)} tokens)"

    def __len__(self) -> int:
        return len(self._grants)

    def summary(self) -> dict[str, dict[Role, int]]:
        """How many tokens each tenant has per role (`*` for every tenant), tenants sorted with
        `*` last: what an operator checks a file against, with no token or digest in it."""
        out: dict[str, dict[Role, int]] = {}
        for grant in self._grants.values():
            roles = out.setdefault(grant.tenant, {})
            roles[grant.role] = roles.get(grant.role, 0) + 1
        return dict(sorted(out.items(), key=lambda item: (item[0] == ALL_TENANTS, item[0])))

    @classmethod
    def load(cls, path: Path) -> Tokens:
        """Read and check a tokens file; TokenError says which entry (by line) is wrong."""
        _check_private(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise TokenError(f"{path}: {e}") from None
        lines = [text.count("\n", 0, m.start()) + 1 for m in _HEADER.finditer(text)]
        entries = data.get("token", [])
        if not isinstance(entries, list):
            raise TokenError(f"{path}: `token` must be a list of [[token]] tables")
        if len(lines) != len(entries):
            lines = []  # a header inside a multi-line string, or another style: entries by number, not a wrong line
        grants: dict[bytes, Grant] = {}
        first_line: dict[bytes, int] = {}
        warnings = []
        for i, entry in enumerate(entries):
            line = lines[i] if i < len(lines) else 0
            where = f"{path}:{line}" if line else f"{path}: token {i + 1}"
            if not isinstance(entry, dict):
                raise TokenError(f"{where}: a [[token]] entry is a table")
            tenant, role = entry.get("tenant"), entry.get("role", "write")
            if not isinstance(tenant, str) or not tenant:
                raise TokenError(f"{where}: needs a tenant")
            _check_tenant(tenant, where)
            if "role" not in entry:  # files from before roles: their tokens wrote, and still do
                warnings.append(f'{where}: no role given, so a write token; say role = "write" (or "read") outright')
            if role not in ROLES:
                raise TokenError(f"{where}: role must be one of {', '.join(ROLES)}, not {role!r}")
            _check_grant(tenant, role, where)
            if "sha256" in entry:
                try:
                    digest = bytes.fromhex(entry["sha256"])
                except (TypeError, ValueError):
                    raise TokenError(f"{where}: sha256 must be 64 hex digits") from None
                if len(digest) != 32:
                    raise TokenError(f"{where}: sha256 must be 64 hex digits")
            elif isinstance(entry.get("token"), str) and len(entry["token"]) >= MIN_TOKEN_CHARS:
                digest = _digest(entry["token"])
                warnings.append(
                    f"{where}: a plain token is stored in the file; keep only its digest "
                    f"(sha256 = {digest.hex()!r}, or `clinotel tokens add`)"
                )
            else:
                raise TokenError(f"{where}: needs `sha256` or a `token` of {MIN_TOKEN_CHARS} characters or more")
            if digest in grants:
                earlier = first_line[digest]
                raise TokenError(
                    f"{where}: the same token as line {earlier} ({grants[digest].tenant}, {grants[digest].role}); "
                    "one token, one grant"
                )
            grants[digest] = Grant(tenant, role)
            first_line[digest] = line
        if not grants:
            raise TokenError(f"{path}: no [[token]] entries")
        return cls(grants, warnings)

    def grant(self, token: str | None) -> Grant | None:
        """The grant of a presented token, or None."""
        if not token:
            return None
        digest = _digest(token)
        found = None
        for known, grant in self._grants.items():
            if hmac.compare_digest(known, digest):
                found = grant
        return found

    def digests(self, tenant: str, role: Role) -> list[str]:
        """The hex digests of the tokens granting `role` on `tenant` (server users' passwords)."""
        return [d.hex() for d, g in self._grants.items() if g.tenant == tenant and g.role == role]


def _check_grant(tenant: str, role: str, where: str | None = None) -> None:
    """`role` may be granted on `tenant`: every tenant (`*`) reads or scrapes, never writes; a
    metrics token is every tenant's."""
    prefix = "" if where is None else f"{where}: "
    if tenant == ALL_TENANTS and role == "write":
        raise TokenError(f"{prefix}tenant '*' (every tenant) is for read and metrics tokens only")
    if role == "metrics" and tenant != ALL_TENANTS:
        raise TokenError(f"{prefix}a metrics token reads collector-wide figures: its tenant is '*'")


def _check_tenant(tenant: str, where: str | None = None) -> None:
    """`tenant` is `*` or a tenant name by the registry's rule (`clinical.tenant.id`): it names
    server users and row policies, labels metrics and goes into generated files, so a name from a
    hand-edited tokens file is held to the rule `clinotel tokens add` applies."""
    if tenant == ALL_TENANTS:
        return
    try:
        A.TENANT_ID.validator()(tenant)
    except ValueError as e:
        prefix = "" if where is None else f"{where}: "
        raise TokenError(f"{prefix}{tenant!r} is not a tenant name: {e}") from None


def add_token(path: Path, tenant: str, role: Role) -> str:
    """Append a new token's digest to `path` (created 0600 if missing) and return the token,
    which is stored nowhere else: the caller shows it once."""
    if role not in ROLES:
        raise TokenError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    _check_tenant(tenant)
    _check_grant(tenant, role)  # before anything is written: a refused grant left a file serve refused
    if path.exists():
        Tokens.load(path)  # refuse to append to a file that would not load
    token = new_token()
    entry = f'\n[[token]]\ntenant = "{tenant}"\nrole = "{role}"\nsha256 = "{_digest(token).hex()}"\n'
    if not path.exists():
        path.touch(mode=0o600)
        path.chmod(0o600)
    with path.open("a", encoding="utf-8") as f:
        f.write(entry)
    Tokens.load(path)
    return token
