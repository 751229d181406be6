"""CI's benchmark step: every benchmark's `--quick` run keeps the interface the README promises
(`--quick`, `--json`, a table whose last line is the headline figure, a ratio to a same-run
reference in the JSON, or a `calibration` saying why there is none: a count, not a speed). Figures
are not judged here:
speed targets are read off full runs, on a machine whose speed that day is measured beside them.

    python scripts/bench_smoke.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
WORKERS = 2
"""Two runs at a time, as the suite runs on two workers: a smoke run's figures are not read, so
sharing the cores costs nothing but halves the step (106 -> 59 s on 2026-12-07)."""
ALONE = frozenset({"instrumentation_overhead"})
"""Run after the others, by itself: a few seconds, and its headline says whether its ratio meets the
target, which a run beside another benchmark would get wrong."""


def _smoke(script: Path, tmp: Path) -> str | None:
    """Run `script --quick`; its headline, or None after printing what is wrong."""
    out = tmp / f"{script.stem}.json"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    problem = None
    if done.returncode != 0:
        problem = f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"
    elif not lines or not lines[-1].startswith("headline:"):
        problem = "the table does not end with its headline"
    elif (figures := json.loads(out.read_text())).get("benchmark") != script.stem:
        problem = "the JSON does not name the benchmark"
    elif not any("ratio" in key for key in figures) and not str(figures.get("calibration", "")).startswith("none: "):
        problem = "no ratio to a same-run reference in the JSON (every benchmark calibrates itself)"
    if problem:
        print(f"bench-smoke: {script.stem}: {problem}", file=sys.stderr)
        return None
    return f"bench-smoke: {script.stem} ({time.monotonic() - started:.0f} s): {lines[-1]}"


def main() -> int:
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))  # `_name.py`: a helper
    if not scripts:
        print("bench-smoke: no benchmarks found", file=sys.stderr)
        return 1
    shared = [p for p in scripts if p.stem not in ALONE]
    alone = ", ".join(sorted(ALONE))
    print(f"bench-smoke: --quick runs, {WORKERS} at a time ({alone} alone): the interface is checked, not the figures")
    with tempfile.TemporaryDirectory() as tmp:
        with ThreadPoolExecutor(WORKERS) as pool:
            results = list(pool.map(lambda script: _smoke(script, Path(tmp)), shared))
        results += [_smoke(p, Path(tmp)) for p in scripts if p.stem in ALONE]
    for line in results:
        if line is not None:
            print(line)
    return 1 if None in results else 0


if __name__ == "__main__":
    sys.exit(main())
