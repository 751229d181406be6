"""The schema's migrations, frozen: numbered files that never change once released.

`NNNN_name.sql` holds a migration's statements, separated by a line ending in `;` and a blank
line, with placeholders for what a deployment chooses (database, cluster, retention):

    {{db}} {{db_literal}} {{cluster_literal}} {{on_cluster}}
    {{name:TABLE}}            the qualified name readers and writers use
    {{local:TABLE}}           the table holding the rows on this node (`TABLE_local` on a cluster)
    {{engine:KIND:TABLE}}     KIND() or ReplicatedKIND(path, replica) on a cluster
    {{ttl:EXPR}}              TTL EXPR + toIntervalDay(N) when a retention is set

A statement headed `-- cluster only` or `-- single node only` is rendered in that mode alone.
`mNNNN_name.py` is a data migration: a module with `DESCRIPTION` and `run(client, options)`, for a
change that must read the store to know what to do (migration 7 rebuilds tables whose partition
key predates the tenant). Placeholders are rendered here, by code that is part of the freeze: a
change to how today's schema is rendered cannot change an applied migration.

`baseline_NNNN.sql` is what migrations 1 to NNNN create in an empty database, in one pass: a new
store starts there (quicker than replaying every migration), a store at an earlier version runs the
migrations; a test checks that both give the same store.

A new column in the model (`clinotel.collector.clinical`, the schema's tables) needs a new
migration: `tests/collector/test_migrations.py` compares the model with a freshly migrated store.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Protocol

from clinotel.model.sql import identifier, literal

__all__ = ["Baseline", "DataStep", "Frozen", "Options", "baseline", "frozen"]

_BASELINE: Final = re.compile(r"^baseline_(\d{4})\.sql$")
_FILE: Final = re.compile(r"^m?(\d{4})_([a-z0-9_]+)\.(sql|py)$")
_PLACEHOLDER: Final = re.compile(r"\{\{([a-z_]+)(?::([^}:]+))?(?::([^}]+))?\}\}")
_CLUSTER_ONLY: Final = "-- cluster only\n"
_SINGLE_ONLY: Final = "-- single node only\n"


class Options(Protocol):
    """What a rendering needs of the deployment (clinotel.collector.store.schema.SchemaOptions fits)."""

    @property
    def database(self) -> str: ...

    @property
    def cluster(self) -> str | None: ...

    @property
    def ttl_days(self) -> int | None: ...


DataStep = Callable[[Any, Any], None]


@dataclass(frozen=True)
class Frozen:
    """One migration: its number, description, statement templates and, for a data migration,
    the code it runs."""

    version: int
    description: str
    templates: tuple[str, ...] = ()
    run: DataStep | None = None

    def statements(self, o: Options) -> tuple[str, ...]:
        """The statements for `o`, in order (none for a data migration)."""
        out = []
        for template in self.templates:
            if template.startswith(_CLUSTER_ONLY):
                if o.cluster:
                    out.append(render(template.removeprefix(_CLUSTER_ONLY), o))
            elif template.startswith(_SINGLE_ONLY):
                if not o.cluster:
                    out.append(render(template.removeprefix(_SINGLE_ONLY), o))
            else:
                out.append(render(template, o))
        return tuple(out)


def _name(o: Options, table: str) -> str:
    return f"{identifier(o.database)}.{identifier(table)}"


def _engine(o: Options, kind: str, table: str) -> str:
    if not o.cluster:
        return f"{kind}()"
    path = literal(f"/clickhouse/tables/{{shard}}/{o.database}/{table}")
    return f"Replicated{kind}({path}, '{{replica}}')"


def render(template: str, o: Options) -> str:
    """A statement template with its placeholders filled for `o`."""

    def fill(m: re.Match[str]) -> str:
        key, a, b = m.group(1), m.group(2), m.group(3)
        if key == "db":
            return identifier(o.database)
        if key == "db_literal":
            return literal(o.database)
        if key == "cluster_literal":
            return literal(o.cluster or "")
        if key == "on_cluster":
            return f" ON CLUSTER {identifier(o.cluster)}" if o.cluster else ""
        if key == "name" and a:
            return _name(o, a)
        if key == "local" and a:
            return _name(o, f"{a}_local" if o.cluster else a)
        if key == "engine" and a and b:
            return _engine(o, a, b)
        if key == "ttl" and a:
            return f"\nTTL {a} + toIntervalDay({o.ttl_days})" if o.ttl_days else ""
        raise ValueError(f"unknown placeholder {m.group(0)}")

    return _PLACEHOLDER.sub(fill, template)


def _templates(text: str) -> tuple[str, tuple[str, ...]]:
    """(description, statements) of a migration file."""
    header, _, body = text.partition("\n\n")
    first = header.splitlines()[0]
    description = first.split(": ", 1)[1] if ": " in first else first
    statements = tuple(s.strip() for s in body.strip().removesuffix(";").split(";\n\n") if s.strip())
    return description, statements


def frozen() -> list[Frozen]:
    """Every migration, in order."""
    found: dict[int, Frozen] = {}
    for entry in resources.files(__name__).iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"two migrations numbered {version}")
        if match.group(3) == "sql":
            description, templates = _templates(entry.read_text(encoding="utf-8"))
            found[version] = Frozen(version, description, templates)
        else:
            module = importlib.import_module(f"{__name__}.{entry.name.removesuffix('.py')}")
            found[version] = Frozen(version, module.DESCRIPTION, run=module.run)
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 1, 2, 3… without gaps: {versions}")
    return [found[v] for v in versions]


@dataclass(frozen=True)
class Baseline:
    """What migrations 1 to `version` create in an empty database, as one frozen pass."""

    version: int
    templates: tuple[str, ...]

    def statements(self, o: Options) -> tuple[str, ...]:
        return Frozen(self.version, "baseline", self.templates).statements(o)


def baseline() -> Baseline | None:
    """The newest baseline, if there is one."""
    found = []
    for entry in resources.files(__name__).iterdir():
        match = _BASELINE.match(entry.name)
        if match is not None:
            found.append(Baseline(int(match.group(1)), _templates(entry.read_text(encoding="utf-8"))[1]))
    return max(found, key=lambda b: b.version, default=None)
