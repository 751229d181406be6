"""`clinotel serve --rules`: the evaluator runs inside the collector process, on its own store,
and its audit trail is readable through the collector's read port."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from clinotel.alerts import default_rules_path
from clinotel.alerts.rules import load
from clinotel.model.collector_metrics import AlertFigures
from tests.net import free_port


def _query(port: int, sql: str) -> str:
    url = f"http://127.0.0.1:{port}/?{urllib.parse.urlencode({'query': sql})}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def test_serve_evaluates_rules_and_records_them(tmp_path: Path) -> None:
    http = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clinotel.cli", "serve", "--data-dir", str(tmp_path / "data"),
         "--otlp-http", f"127.0.0.1:{free_port()}", "--otlp-grpc", f"127.0.0.1:{free_port()}",
         "--http", f"127.0.0.1:{http}", "--insecure-no-auth", "--rules", str(default_rules_path()),
         "--evaluate-every", "1s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline, events = time.monotonic() + 60, ""
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                events = _query(http, "SELECT Rule, Event FROM clinotel.clinotel_alert_events ORDER BY Timestamp")
            except OSError:
                events = ""
            if "ingestion_stalled\tpending" in events:
                break
            time.sleep(0.5)
        assert "ingestion_stalled\tpending" in events, "no spans at all: ingestion counts as stalled"
        # what the evaluator did is on /metrics, for a Prometheus that watches the collector
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=10) as r:
            figures = r.read().decode()
        evaluations = re.search(r"^clinotel_alert_evaluations_total (\d+)", figures, re.M)
        assert evaluations is not None, figures[-1500:]
        assert int(evaluations.group(1)) >= 1
        assert re.search(r"^clinotel_alert_last_evaluation_timestamp_seconds \d", figures, re.M)
        assert "# TYPE clinotel_alert_notifications_failed_total counter" in figures
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    rules = len(load(default_rules_path()).rules)
    assert f"evaluating {rules} alert rules".encode() in err


def test_a_collector_killed_while_evaluating_resumes_its_own_lease_at_once(tmp_path: Path) -> None:
    from collector.tests.test_crash import wait_serving

    http = free_port()

    def serve() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clinotel.cli", "serve", "--data-dir", str(tmp_path / "data"),
             "--otlp-http", f"127.0.0.1:{free_port()}", "--otlp-grpc", f"127.0.0.1:{free_port()}",
             "--http", f"127.0.0.1:{http}", "--insecure-no-auth", "--rules", str(default_rules_path()),
             "--evaluate-every", "1s"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        return wait_serving(proc, http)

    def passes() -> int:
        return int(_query(http, "SELECT count() FROM clinotel.clinotel_alert_events WHERE Event = 'lease'"))

    proc = serve()
    deadline = time.monotonic() + 30
    while passes() < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # its lease (60 s) is left behind
    proc.wait(timeout=30)
    if proc.stderr is not None:
        proc.stderr.close()
    proc = serve()
    try:
        before = passes()
        deadline = time.monotonic() + 15
        while passes() <= before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert passes() > before, "the restarted collector evaluates now, not once its old lease expires"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]


def _two_passes(evaluator: object) -> AlertFigures:
    """The figures of an evaluator thread running `evaluator` (a stand-in) for two passes at least."""
    from typing import cast

    from clinotel.alerts.evaluator import Evaluator
    from clinotel.alerts.runner import EvaluatorThread

    thread = EvaluatorThread(cast(Evaluator, evaluator), interval_s=0.05)
    thread.start()
    deadline = time.monotonic() + 10
    while thread.figures.evaluations < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    thread.stop()
    return thread.figures


def test_the_evaluators_figures_count_what_no_receiver_took() -> None:
    """A page no receiver took was only logged: a Prometheus watching the collector could not
    tell (operator review). The thread counts passes, errors and notifications not delivered."""
    from types import SimpleNamespace
    from typing import cast

    from clinotel.alerts.evaluator import Summary
    from clinotel.alerts.paging import Attempt, Notification

    class Stub:
        def evaluate(self) -> Summary:
            notification = cast(Notification, SimpleNamespace(rule="rule_x"))
            summary = Summary(errors=[("rule_x", "query failed")])
            summary.attempts = [Attempt("alertmanager", notification, 1, False, "refused"),
                                Attempt("webhook", notification, 1, True)]  # fmt: skip
            return summary

        def close(self) -> None:
            pass

    figures = _two_passes(Stub())
    assert figures.evaluations >= 2
    assert figures.errors == figures.evaluations
    assert dict(figures.undelivered) == {"alertmanager": figures.evaluations}
    assert figures.last_evaluation_s > time.time() - 60


def test_a_pass_that_could_not_keep_the_alert_state_is_not_the_last_evaluation() -> None:
    """On a full disk every pass failed at its first write and paged nobody, while
    `clinotel_alert_last_evaluation_timestamp_seconds` stayed seconds old: the watch the docs
    recommend saw nothing wrong (an operator's review). Such a pass counts as an error only."""

    from clinotel.alerts.evaluator import STORE, Summary

    class Full:
        def evaluate(self) -> Summary:
            return Summary(errors=[(STORE, "cannot keep the alert state: NOT_ENOUGH_SPACE")])

        def close(self) -> None:
            pass

    figures = _two_passes(Full())
    assert figures.errors >= 2
    assert figures.last_evaluation_s == 0.0
