"""The evaluator on a timer in a background thread (inside `clinotel serve --rules`)."""

from __future__ import annotations

import logging
import threading
from typing import Final

from clinotel.alerts.evaluator import Evaluator

__all__ = ["EvaluatorThread"]

logger: Final = logging.getLogger("clinotel.alerts")


class EvaluatorThread:
    """Runs `evaluator.evaluate()` every `interval_s` until stopped; a failed pass is logged and
    the next one runs on time."""

    def __init__(self, evaluator: Evaluator, interval_s: float) -> None:
        self.evaluator = evaluator
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clinotel-alerts", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                summary = self.evaluator.evaluate()
                for rule, labels, state in summary.transitions:
                    logger.warning("alert %s %s -> %s", rule, labels, state)
            except Exception:
                logger.exception("alert evaluation failed")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
