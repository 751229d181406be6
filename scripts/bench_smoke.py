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
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def main() -> int:
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
    if not scripts:
        print("bench-smoke: no benchmarks found", file=sys.stderr)
        return 1
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for script in scripts:  # `_name.py`: a helper module, not a benchmark
            out = Path(tmp) / f"{script.stem}.json"
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
            elif not any("ratio" in key for key in figures) and not str(figures.get("calibration", "")).startswith(
                "none: "
            ):
                problem = "no ratio to a same-run reference in the JSON (every benchmark calibrates itself)"
            took = time.monotonic() - started
            if problem:
                failed += 1
                print(f"bench-smoke: {script.stem}: {problem}", file=sys.stderr)
            else:
                print(f"bench-smoke: {script.stem} ({took:.0f} s): {lines[-1]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
