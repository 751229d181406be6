"""The kill switch under attack and operator mistakes: two evaluators rewriting one flagd file at
once, a flagd file already malformed on disk, a dry run that must leave the directory alone."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from clinotel.alerts.actions import DisableFlag, FlagdFile

ROUNDS = 40
"""Flags each of two writers switches off; bounded (each rewrite is a small file and an fsync)."""


def _flag() -> dict[str, Any]:
    return {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}


def test_two_evaluators_switching_different_flags_at_once_lose_neither(tmp_path: Path) -> None:
    path = tmp_path / "flags.flagd.json"
    keys = {w: [f"{w}-flag-{i}" for i in range(ROUNDS)] for w in ("a", "b")}
    path.write_text(json.dumps({"flags": {k: _flag() for ks in keys.values() for k in ks}}), encoding="utf-8")
    start = threading.Barrier(2)
    results: dict[str, list[str]] = {"a": [], "b": []}

    def writer(w: str) -> None:
        switch = FlagdFile(path)  # each evaluator has its own switch on the same file
        start.wait()
        for k in keys[w]:
            results[w].append(switch.disable(DisableFlag(key=k), f"rule_{w}", dry_run=False).result)

    threads = [threading.Thread(target=writer, args=(w,)) for w in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {"a": ["applied"] * ROUNDS, "b": ["applied"] * ROUNDS}
    flags = json.loads(path.read_text(encoding="utf-8"))["flags"]
    lost = sorted(k for k, f in flags.items() if "targeting" not in f)
    assert lost == [], f"{len(lost)} acknowledged switches lost"


@pytest.mark.parametrize(
    "flag",
    [
        {"variants": {"off": False}, "targeting": {"if": 5}},
        {"variants": {"off": False}, "targeting": {"if": None}},
        {"variants": {"off": False}, "metadata": ["not", "an", "object"]},
        {"variants": {"off": False}, "metadata": "text"},
    ],
)
def test_a_malformed_flag_already_on_disk_fails_in_one_line_and_is_left_alone(
    tmp_path: Path, flag: dict[str, Any]
) -> None:
    path = tmp_path / "flags.flagd.json"
    path.write_text(json.dumps({"flags": {"k": flag}}), encoding="utf-8")
    before = path.read_bytes()
    outcome = FlagdFile(path).disable(DisableFlag(key="k"), "r", dry_run=False)
    assert outcome.result == "failed", outcome
    assert "\n" not in outcome.detail
    assert path.read_bytes() == before


def test_a_dry_run_leaves_the_directory_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "flags.flagd.json"
    path.write_text(json.dumps({"flags": {"k": _flag()}}), encoding="utf-8")
    listing = sorted(p.name for p in tmp_path.iterdir())
    assert FlagdFile(path).disable(DisableFlag(key="k"), "r", dry_run=True).result == "dry_run"
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


def test_a_flag_webhook_that_never_answers_fails_within_the_configured_timeout() -> None:
    import socket
    import time

    from clinotel.alerts.config import AlertingConfig
    from clinotel.alerts.wiring import build_switch

    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts (backlog), never answers
        url = f"http://127.0.0.1:{server.getsockname()[1]}/flags"
        switch = build_switch(AlertingConfig(flag_webhook=url, timeout_s=0.5))
        assert switch is not None
        started = time.monotonic()
        outcome = switch.disable(DisableFlag(key="k"), "r", dry_run=False)
        took = time.monotonic() - started
    assert outcome.result == "failed"
    assert took < 5, f"the switch waited {took:.1f} s, not the configured 0.5 s"
