"""`clinotel alerts evaluate | check | export`."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Final

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clinotel.alerts.options import (
    alerting_config,
    alerting_options,
    checked_outbox,
    checked_rules,
    checked_runbook_base,
    runbook_base_option,
)
from clinotel.model.store import open_reading_store, reading_store
from clinotel.model.tables import DEFAULT_DATABASE
from clinotel.model.terminal import printable

__all__ = ["alerts"]

WIDE: Final = 10_000
"""A console this wide never folds a table: the whole table when the output is not a terminal."""


def _console(err: bool = False) -> Console:
    stream = sys.stderr if err else sys.stdout
    return Console(stderr=err) if stream.isatty() else Console(stderr=err, width=WIDE, no_color=True)


@click.group()
def alerts() -> None:
    """Alert rules as code: check them, evaluate them and page."""


@alerts.command("check")
@click.option("--rules", type=click.Path(dir_okay=False, path_type=Path), help="Rules file [default: the pack].")
def check_rules(rules: Path | None) -> None:
    """Load a rules file and list its rules; every mistake is reported with its file and line."""
    pack = checked_rules(rules)
    table = Table("rule", "kind", "metric", "condition", "window", "for", "min n", "severity")
    for r in pack.rules:
        condition = (
            f"outside {r.band[0]}–{r.band[1]}" if r.kind == "disparity" else f"{r.comparison.symbol} {r.threshold:g}"
        )
        table.add_row(r.name, r.kind, r.metric, condition, f"{r.window}s", f"{r.for_}s", str(r.min_sample), r.severity)
    _console().print(table)


class _EventsOnly:
    """The embedded store's audit trail, for the evaluator's records: inserts into
    clinotel_alert_events and nothing else (its reads go through the read-only path)."""

    def __init__(self, data_dir: Path, database: str) -> None:
        from clinotel.model import tables

        self.dsn = f"chdb://{data_dir.resolve()}"
        self.table = f"{database}.{tables.ALERT_EVENTS}"
        self._client: Any = None

    def insert(self, table: str, rows: list[tuple[Any, ...]], column_names: list[str]) -> None:
        if table.replace("`", "") != self.table:
            raise PermissionError(f"the evaluator writes {self.table} only, not {table}")
        if self._client is None:
            import clickhouse_connect

            self._client = clickhouse_connect.get_client(dsn=self.dsn)
        self._client.insert(self.table, rows, column_names=column_names)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


READ_PORT_HINT: Final = (
    "the evaluator keeps its state in clinotel_alert_events, so it needs a store it may write there: "
    "--data-dir (no collector running on it), a ClickHouse server user allowed to INSERT into that table, or the "
    "collector itself (`clinotel serve --rules`): a collector's read port is read-only"
)


HELD_ADVICE: Final = (
    "the evaluator keeps its state in that store (clinotel_alert_events), which the collector's read port "
    "cannot write: run the rules in the collector (`clinotel serve --rules FILE --webhook URL ...`: serve takes "
    "this command's alerting options), or stop it and evaluate with --data-dir"
)


def _report(summary: Any, console: Console, server: str | None) -> bool:
    """Print one pass; True when it went wrong (a rule failed, a notification was not delivered)."""
    from clinotel.alerts.evaluator import STORE

    err = _console(err=True)
    if summary.skipped:
        err.print(printable(f"skipped: {summary.skipped}"), markup=False, highlight=False)
        return False
    for rule, labels, state in summary.transitions:
        # labels are a tenant's stored text: neither Rich markup (`[/x]` ended the evaluator) nor
        # terminal control
        console.print(f"{escape(printable(f'{rule} {labels}'))} -> [bold]{state}[/]")
    for rule, error in summary.errors:
        err.print(printable(f"error: {rule}: {error}"), markup=False, highlight=False)
        if rule == STORE and server is not None:
            err.print(f"  {READ_PORT_HINT}", markup=False, highlight=False)
    for a in summary.undelivered:
        n = a.notification
        what = "resolution" if not n.firing else "page" if n.severity == "page" else "ticket"
        err.print(
            printable(
                f"not delivered: {n.rule} {n.labels} ({what}) to {a.sink} after {a.attempt} attempt(s): {a.detail}; "
                "owed: the next evaluation tries again"
            ),
            markup=False,
            highlight=False,
        )
    failed = [a for a in summary.attempts if not a.ok]
    console.print(
        f"{summary.rules} rules, {summary.instances} instances, {len(summary.transitions)} transitions, "
        f"{len(summary.attempts) - len(failed)} deliveries, {len(failed)} failed attempts"
    )
    return bool(summary.errors or summary.undelivered)


class _Terminated(BaseException):
    """SIGTERM (docker stop, systemd): the pass is abandoned as on Ctrl-C, and the lease released.
    A BaseException, as KeyboardInterrupt, so no `except Exception` on the way holds it."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one must not cut the cleanup short
    raise _Terminated


@alerts.command()
@reading_store
@click.option("--database", default=DEFAULT_DATABASE, show_default=True)
@click.option(
    "--once", is_flag=True,
    help="Evaluate once and exit (the default is every --every). With --once, --every is the time between the "
    "runs (cron's) [default: 15m]: Alertmanager is told a firing alert ends 4 intervals (at least 5 min) after "
    "each run, so runs further apart than that resolve an incident that goes on.",
)  # fmt: skip
@alerting_options(rules_help="Rules file [default: the pack].")
def evaluate(
    server: str | None, data_dir: Path | None, database: str, once: bool, rules: Path | None, every: str,
    alertmanager: tuple[str, ...], pagerduty: bool, pagerduty_url: str | None, webhook: tuple[str, ...],
    sinks: tuple[str, ...], flagd_file: Path | None, flag_webhook: str | None, dry_run: bool,
    runbook_base: str | None,
) -> None:  # fmt: skip
    """Evaluate every rule against the store; record transitions and deliveries in
    clinotel_alert_events; page `page` rules and ticket `ticket` rules; run the kill-switch
    actions of rules that start firing (--flagd-file or --flag-webhook; --dry-run).

    The state of every alert lives in the store (the audit trail), so runs from cron (--once)
    and a long-running --every behave alike: `for` holds across runs, a firing alert pages once
    (Alertmanager is re-sent it at every run, and told it ends 4 intervals ahead, at least 5 min),
    and a delivery that failed is retried by the next run. Two evaluators on one store take turns
    (a lease in the same table): one incident pages once. Exits 1 when a rule failed or a
    notification could not be delivered (the reason on stderr); SIGTERM ends it as Ctrl-C does,
    releasing its lease."""
    from clinotel.alerts.config import ONCE_EVERY_S
    from clinotel.alerts.wiring import build_evaluator
    from clinotel.model.store import DEFAULT_DATA_DIR

    if once and click.get_current_context().get_parameter_source("every") is click.core.ParameterSource.DEFAULT:
        every = f"{ONCE_EVERY_S}s"
    config = alerting_config(
        rules, every, alertmanager, pagerduty, pagerduty_url, webhook, sinks, flagd_file, flag_webhook, dry_run,
        runbook_base=runbook_base,
    )  # fmt: skip
    outbox = checked_outbox(config)
    try:
        pack = checked_rules(config.rules)
        client = open_reading_store(server, data_dir, database, held_advice=HELD_ADVICE)
    except BaseException:
        outbox.close()
        raise
    recorder: Any = client if server is not None else _EventsOnly(data_dir or DEFAULT_DATA_DIR, database)
    evaluator = build_evaluator(config, client, database, pack=pack, outbox=outbox, recorder=recorder, once=once)
    console = _console()
    main = threading.current_thread() is threading.main_thread()  # signal handlers are the main thread's
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        while True:
            started = time.monotonic()
            failed = _report(evaluator.evaluate(), console, server)
            if once:
                raise SystemExit(1 if failed else 0)
            time.sleep(max(0.0, config.every - (time.monotonic() - started)))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except _Terminated:
        raise SystemExit(143) from None
    finally:
        evaluator.close()
        if main:
            signal.signal(signal.SIGTERM, previous)
        if isinstance(recorder, _EventsOnly):
            recorder.close()
        client.close()


@alerts.command("export")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output directory.")
@click.option("--rules", type=click.Path(dir_okay=False, path_type=Path), help="Rules file [default: the pack].")
@click.option("--database", default=DEFAULT_DATABASE, show_default=True)
@click.option("--alertmanager", metavar="URL",
              help="An Alertmanager for pages without PagerDuty and tickets without a webhook.")  # fmt: skip
@runbook_base_option
def export_command(out: Path, rules: Path | None, database: str, alertmanager: str | None, runbook_base: str) -> None:
    """Write Grafana alert provisioning (rules, contact points, policies) and an Alertmanager
    configuration. A PagerDuty receiver is written only when PAGERDUTY_ROUTING_KEY is set, a ticket
    webhook only when CLINOTEL_TICKET_WEBHOOK_URL is (Grafana reads both from its environment and
    refuses to start on an empty one)."""
    import os

    from clinotel.alerts.export import Receivers, write

    try:
        receivers = Receivers.from_env(os.environ, alertmanager)
        tickets = receivers.tickets()
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        written = write(out, checked_rules(rules), receivers, database, runbook_base=checked_runbook_base(runbook_base))
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    for path in written:
        click.echo(path)
    click.echo(f"pages go to {receivers.pages()}")
    click.echo(f"tickets go to {tickets}")
