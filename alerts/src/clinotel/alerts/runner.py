"""The evaluator on a timer in a background thread (inside `clinotel serve --rules`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

from clinotel.alerts.evaluator import Evaluator
from clinotel.model.threads import guarded

__all__ = ["EvaluatorThread"]

logger: Final = logging.getLogger("clinotel.alerts")


class EvaluatorThread:
    """Runs `evaluator.evaluate()` every `interval_s` until stopped; a failed pass is logged and
    the next one runs on time. Should the thread itself die, `on_failure` hears why (the
    collector then stops: nothing would watch its alerts)."""

    def __init__(
        self, evaluator: Evaluator, interval_s: float, on_failure: Callable[[str], None] | None = None
    ) -> None:
        self.evaluator = evaluator
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = guarded(self._run, "clinotel-alerts", on_failure or (lambda reason: None))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                summary = self.evaluator.evaluate()
                for rule, labels, state in summary.transitions:
                    logger.warning("alert %s %s -> %s", rule, labels, state)
                for rule, error in summary.errors:
                    logger.error("alert evaluation: %s: %s", rule, error)
                for a in summary.undelivered:
                    logger.error("alert %s not delivered to %s: %s", a.notification.rule, a.sink, a.detail)
                if summary.skipped:
                    logger.info("alert evaluation skipped: %s", summary.skipped)
            except Exception:
                logger.exception("alert evaluation failed")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.evaluator.close()
