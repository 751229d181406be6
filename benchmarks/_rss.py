"""Resident memory of a process, sampled by phase (for the benchmarks; not a benchmark itself)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

__all__ = ["RssSampler", "rss_mb"]


def rss_mb(pid: int | None = None, field: str = "VmRSS") -> float:
    """A process's resident memory (`VmRSS`) or its peak (`VmHWM`) in MB, from /proc; 0 if gone."""
    try:
        status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Samples a process's RSS every `interval` seconds in a thread; peaks are kept per phase and
    the whole series with its phase names, so growth within a phase can be judged."""

    def __init__(self, pid: int | None = None, interval: float = 0.1) -> None:
        self.pid = pid or os.getpid()
        self.interval = interval
        self.phase = "start"
        self.peaks: dict[str, float] = {}
        self.anon_peaks: dict[str, float] = {}
        """Peaks of the anonymous part (heap: interpreter and engine), without the engine's code."""
        self.series: list[tuple[float, str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def enter(self, phase: str) -> None:
        self.sample()
        self.phase = phase
        self.sample()

    def sample(self) -> None:
        value = rss_mb(self.pid)
        anon = rss_mb(self.pid, "RssAnon")
        self.series.append((time.monotonic(), self.phase, value))
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), value)
        self.anon_peaks[self.phase] = max(self.anon_peaks.get(self.phase, 0.0), anon)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def halves(self, phase: str) -> tuple[float, float]:
        """Peak RSS in the first and the second half of `phase` (by time): growth with duration."""
        points = [(t, v) for t, p, v in self.series if p == phase]
        if len(points) < 4:
            return (0.0, 0.0)
        middle = (points[0][0] + points[-1][0]) / 2
        first = max(v for t, v in points if t <= middle)
        second = max(v for t, v in points if t > middle)
        return first, second
