"""What a reader of the report must never see, checked on its HTML: "None" or "nan" for a missing
figure, a SQL name (a view column, a table, a panel query's alias, an indicator's code name), or
a chart drawn with axes and nothing on them. Shared by the report's tests and the demo's."""

from __future__ import annotations

import re
from functools import cache
from html.parser import HTMLParser

from clinotel.dashboards import build_all
from clinotel.model import clinical, tables
from clinotel.model.indicators import INDICATORS

_ALIAS = re.compile(r"\bAS\s+`?([A-Za-z_][A-Za-z0-9_]*)`?")
_MISSING = re.compile(r"\b(None|nan|NaN|inf|null|NULL)\b")


class _Text(HTMLParser):
    """The text a reader sees (tooltips of the charts included), without the style sheet."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return " ".join(parser.parts)


def _sql_like(name: str) -> bool:
    """A name only SQL would use: with an underscore, or camel case."""
    return "_" in name.strip("_") or re.search(r"[a-z][A-Z]", name) is not None


@cache
def sql_names() -> frozenset[str]:
    """Every column of the clinical views, every table, every alias the panels' SQL gives, and
    every indicator's code name, where it could not pass for a word."""
    names = {c.name for c in clinical.STAGE_COLUMNS} | {c.name for c in clinical.COHORT_COLUMNS}
    names |= set(clinical.WORKFLOW_COLUMNS) | set(tables.tenant_tables()) | set(INDICATORS)
    for data in build_all().values():
        for panel in data["panels"]:
            for target in panel.get("targets", []):
                names |= set(_ALIAS.findall(target.get("rawSql", "")))
    return frozenset(n for n in names if _sql_like(n))


def sql_names_shown(page: str) -> list[str]:
    text = visible_text(page)
    return sorted(n for n in sql_names() if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text))


def missing_shown(page: str) -> list[str]:
    """Each "None"-like word with some context."""
    text = visible_text(page)
    return [text[max(0, m.start() - 60) : m.end() + 20] for m in _MISSING.finditer(text)]


def empty_charts(page: str) -> list[str]:
    """The label of every chart with no line and no point on it."""
    found = []
    for m in re.finditer(r'<svg class="chart"[^>]*aria-label="([^"]*)"[^>]*>(.*?)</svg>', page, re.S):
        if "<polyline" not in m.group(2) and "<circle" not in m.group(2):
            found.append(m.group(1))
    return found


def charts(page: str) -> int:
    return len(re.findall(r'<svg class="chart"', page))
