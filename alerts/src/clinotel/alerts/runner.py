"""The evaluator on a timer in a background thread, beside a running collector (`clinotel serve
--rules`: the umbrella CLI starts it through the collector's companion hook)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from clinotel.alerts.config import AlertingConfig
from clinotel.alerts.evaluator import STORE, Evaluator
from clinotel.alerts.paging import Outbox
from clinotel.alerts.rules import RulePack
from clinotel.alerts.wiring import build_evaluator, receiver_recorder
from clinotel.model.collector_metrics import AlertFigures
from clinotel.model.threads import guarded

__all__ = ["EvaluatorThread", "beside_collector"]

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
        self.figures = AlertFigures()
        """What the passes did, for the collector's /metrics."""
        self._stop = threading.Event()
        self._thread = guarded(self._run, "clinotel-alerts", on_failure or (lambda reason: None))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                summary = self.evaluator.evaluate()
                with self.figures.lock:
                    self.figures.evaluations += 1
                    self.figures.errors += len(summary.errors)
                    self.figures.undelivered.update(a.sink for a in summary.undelivered)
                    # a pass that could not keep the alert state paged nobody: not an evaluation a
                    # watcher of this figure should count (on a full disk every pass failed so, and
                    # the figure stayed seconds old: an operator's review)
                    if not any(rule == STORE for rule, _ in summary.errors):
                        self.figures.last_evaluation_s = time.time()
                for rule, labels, state in summary.transitions:
                    logger.warning("alert %s %s -> %s", rule, labels, state)
                for rule, error in summary.errors:
                    logger.error("alert evaluation: %s: %s", rule, error)
                for a in summary.undelivered:
                    logger.error("alert %s not delivered to %s: %s", a.notification.rule, a.sink, a.detail)
                if summary.skipped:
                    logger.info("alert evaluation skipped: %s", summary.skipped)
            except Exception:
                with self.figures.lock:
                    self.figures.errors += 1
                logger.exception("alert evaluation failed")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.evaluator.close()


def beside_collector(collector: Any, config: AlertingConfig, pack: RulePack, outbox: Outbox) -> EvaluatorThread:
    """The evaluator on a started collector's own store, running every `config.every` in a
    background thread; should the thread die, the collector stops (nothing would watch its alerts).
    The lease holder is named after the collector's log (one collector per log): restarted after a
    crash, it resumes its own lease at once."""
    holder = f"serve:{socket.gethostname()}:{collector.config.resolved_wal_dir}"
    evaluator = build_evaluator(
        config, collector.client, collector.config.database, pack=pack, outbox=outbox, holder=holder,
        on_change=receiver_recorder(collector.receiver, collector.config.insecure_tenant),
    )  # fmt: skip
    thread = EvaluatorThread(evaluator, config.every, on_failure=collector.fail)
    collector.alert_figures = thread.figures
    thread.start()
    return thread
