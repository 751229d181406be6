"""Resident memory of a process, sampled by phase (for the benchmarks; not a benchmark itself)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["PROBE_EVERY", "RssSampler", "rss_mb"]

PROBE_EVERY = 5
"""An `RssSampler`'s probe runs at every fifth sample (0.5 s at the default interval)."""


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
        self.probe: Callable[[], dict[str, float]] | None = None
        """Set to sample more figures (MB) every `PROBE_EVERY` samples; their peaks go in
        `probe_peaks` per phase, each with the process's RSS at that moment (`rss`)."""
        self.probe_peaks: dict[str, dict[str, float]] = {}
        self.probe_errors = 0
        self._probing = threading.Lock()
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
        self.stop_probe()
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
        n = 0
        while not self._stop.wait(self.interval):
            self.sample()
            n += 1
            if n % PROBE_EVERY == 0:
                with self._probing:
                    probe = self.probe
                    if probe is not None:
                        self._probe(probe)

    def stop_probe(self) -> None:
        """No probe after this returns (one under way is waited for): what it reads can be closed."""
        self.probe = None
        with self._probing:
            pass

    def _probe(self, probe: Callable[[], dict[str, float]]) -> None:
        phase = self.phase
        try:
            figures = {**probe(), "rss": rss_mb(self.pid)}
        except Exception:  # noqa: BLE001 - a probe that fails (the engine closing) skips a sample
            self.probe_errors += 1
            return
        peaks = self.probe_peaks.setdefault(phase, {})
        for key, value in figures.items():
            peaks[key] = max(peaks.get(key, 0.0), value)

    def halves(self, phase: str) -> tuple[float, float]:
        """Peak RSS in the first and the second half of `phase` (by time): growth with duration."""
        points = [(t, v) for t, p, v in self.series if p == phase]
        if len(points) < 4:
            return (0.0, 0.0)
        middle = (points[0][0] + points[-1][0]) / 2
        first = max(v for t, v in points if t <= middle)
        second = max(v for t, v in points if t > middle)
        return first, second
