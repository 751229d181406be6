"""The release gate's evidence file, in JSON (for machines and audits) and Markdown (for people):
the decision, every criterion with its figures and intervals, the data window, the versions
(content hashes) of the rule pack and the flags file, and the change events in the window."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from clinotel.model.changes import Change
from clinotel.rollout.gate import GateResult

__all__ = ["content_hash", "evidence", "write"]


def content_hash(path: Path) -> str:
    """`sha256:<hex>` of a file's bytes: the version of a rule pack or flags file."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def evidence(
    result: GateResult, stage: tuple[str, str], files: dict[str, tuple[Path, str]], changes: list[Change],
    settings: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The evidence as one JSON object; `files`: role -> (path, content hash)."""
    return {
        **result.to_json(),
        "from": stage[0],
        "to": stage[1],
        "settings": settings,
        "files": {role: {"path": str(path), "version": digest} for role, (path, digest) in files.items()},
        "changes": [c.to_json() for c in changes],
    }


def _markdown(data: dict[str, Any]) -> str:
    decision = "PROMOTE" if data["decision"] == "promote" else "REFUSE"
    w = data["window"]
    lines = [
        f"# Release gate: {data['flag']} {data['from']} -> {data['to']}: {decision}",
        "",
        f"- Window: {w['since']} to {w['until']}" + (f", tenant {data['tenant']}" if data["tenant"] else ""),
        *(f"- {role}: `{f['path']}` ({f['version']})" for role, f in data["files"].items()),
        "- Settings: " + ", ".join(f"{k} {v}" for k, v in data["settings"].items()),
        "",
    ]
    for c in data["criteria"]:
        lines += [f"## {c['name']}: {'pass' if c['passed'] else 'FAIL'}", ""]
        lines += [f"- {r}" for r in c["reasons"]] + [""]
        if c["name"] == "non-inferiority" and c["figures"]:
            lines += ["| metric | canary | baseline | ratio | interval | margin |", "|---|---|---|---|---|---|"]
            for f in c["figures"]:
                iv = "n/a" if f["interval"] is None else f"{f['interval'][0]:.3g}–{f['interval'][1]:.3g}"
                ratio = "n/a" if f["ratio"] is None else f"{f['ratio']:.3g}"
                counts = f"{f['canary'][0]}/{f['canary'][1]} | {f['baseline'][0]}/{f['baseline'][1]}"
                lines.append(f"| {f['metric']} | {counts} | {ratio} | {iv} | {f['margin']:.3g} |")
            lines.append("")
        elif c["name"] in ("kill criteria", "fairness") and c["figures"]:
            lines += ["| rule | instance | value | interval | sample | judged |", "|---|---|---|---|---|---|"]
            for f in c["figures"]:
                where = ", ".join(f"{k}={v}" for k, v in f["labels"].items())
                value = "n/a" if f["value"] is None else f"{f['value']:.3g}"
                lo, hi = f["interval"]
                iv = "n/a" if lo is None or hi is None else f"{lo:.3g}–{hi:.3g}"
                lines.append(f"| {f['rule']} | {where} | {value} | {iv} | {f['sample']} | {f['judged']} |")
            lines.append("")
    lines += ["## Changes in the window", ""]
    if not data["changes"]:
        lines.append("- none recorded")
    for ch in data["changes"]:
        where = ", ".join(f"{k}={v}" for k, v in ch["scope"].items()) or "everywhere"
        to = f" -> {ch['version']}" if ch["version"] else ""
        done = f" [{ch['result']}]" if ch.get("result") not in (None, "", "applied") else ""
        lines.append(
            f"- {ch['timestamp']} {ch['kind']} {ch['name']}{to} by {ch['actor'] or ch['service']} ({where}){done}"
        )
    return "\n".join(lines) + "\n"


def _finite(value: Any) -> Any:
    """JSON has no infinity: an unbounded interval end (no baseline events) is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write(directory: Path, data: dict[str, Any], at: datetime) -> tuple[Path, Path]:
    """Write `gate-<flag>-<time>.json` and `.md` into `directory` (created if missing); the flag
    key is reduced to a safe file-name part, so it never names another directory. Evidence is
    never overwritten: a second run in the same second gets `-2`, and a name already taken (a
    file, or a link to one elsewhere) is passed over, never written through."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", data["flag"])[:64]
    base = f"gate-{safe}-{at:%Y%m%dT%H%M%SZ}"
    directory.mkdir(parents=True, exist_ok=True)
    texts = (json.dumps(_finite(data), indent=2, allow_nan=False) + "\n", _markdown(data))
    for n in range(1, _MAX_SAME_SECOND + 1):
        stem = base if n == 1 else f"{base}-{n}"
        json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
        if not _create(json_path, texts[0]):
            continue
        if _create(md_path, texts[1]):
            return json_path, md_path
        json_path.unlink()
    raise FileExistsError(f"{directory} already holds {_MAX_SAME_SECOND} evidence files named {base}")


_MAX_SAME_SECOND = 100


def _create(path: Path, text: str) -> bool:
    """Write `text` to a new file at `path`; False if the name is taken (even by a dangling link)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return True
