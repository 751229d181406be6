"""`clinotel alerts evaluate | check | export`."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Final

import click
from rich.console import Console
from rich.table import Table

from clinotel.model.store import open_reading_store, reading_store

__all__ = ["alerts"]

WIDE: Final = 10_000
"""A console this wide never folds a table: the whole table when the output is not a terminal."""


def _pack(rules: Path | None) -> Any:
    from clinotel.alerts import default_rules_path
    from clinotel.alerts.rules import RuleError, load

    try:
        return load(rules or default_rules_path())
    except RuleError as e:
        raise click.ClickException(str(e)) from None


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
    pack = _pack(rules)
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


def _interval(every: str) -> int:
    from clinotel.alerts.rules import parse_duration

    try:
        seconds = parse_duration(every)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--every") from None
    if seconds <= 0:
        raise click.BadParameter(f"an interval above zero, such as 30s, not {every!r}", param_hint="--every")
    return seconds


def _sinks(
    alertmanager: str | None, pagerduty: bool, pagerduty_url: str | None, webhook: str | None
) -> tuple[list[Any], list[Any]]:
    from clinotel.alerts.paging import ROUTING_KEY_ENV, AlertmanagerSink, PagerDutySink, Sink, WebhookSink, check_url

    for name, url in (("--alertmanager", alertmanager), ("--pagerduty-url", pagerduty_url), ("--webhook", webhook)):
        if url is not None:
            try:
                check_url(url)
            except ValueError as e:
                raise click.BadParameter(str(e), param_hint=name) from None
    if pagerduty and not os.environ.get(ROUTING_KEY_ENV):
        raise click.UsageError(f"--pagerduty needs the routing key in {ROUTING_KEY_ENV}")
    page: list[Sink] = []
    if alertmanager:
        page.append(AlertmanagerSink(alertmanager))
    if pagerduty:
        page.append(PagerDutySink(pagerduty_url) if pagerduty_url else PagerDutySink())
    ticket: list[Sink] = [WebhookSink(webhook)] if webhook else []
    return page or list(ticket), ticket


READ_PORT_HINT: Final = (
    "the evaluator keeps its state in clinotel_alert_events, so it needs a store it may write there: "
    "--data-dir (no collector running on it), a ClickHouse server user allowed to INSERT into that table, or the "
    "collector itself (`clinotel serve --rules`): a collector's read port is read-only"
)


def _report(summary: Any, console: Console, server: str | None) -> bool:
    """Print one pass; True when it went wrong (a rule failed, a notification was not delivered)."""
    from clinotel.alerts.evaluator import STORE

    err = _console(err=True)
    if summary.skipped:
        err.print(f"skipped: {summary.skipped}")
        return False
    for rule, labels, state in summary.transitions:
        console.print(f"{rule} {labels} -> [bold]{state}[/]")
    for rule, error in summary.errors:
        err.print(f"error: {rule}: {error}", markup=False, highlight=False)
        if rule == STORE and server is not None:
            err.print(f"  {READ_PORT_HINT}", markup=False, highlight=False)
    for a in summary.undelivered:
        n = a.notification
        what = "resolution" if not n.firing else "page" if n.severity == "page" else "ticket"
        err.print(
            f"not delivered: {n.rule} {n.labels} ({what}) to {a.sink} after {a.attempt} attempt(s): {a.detail}; "
            "owed: the next evaluation tries again",
            markup=False,
            highlight=False,
        )
    failed = [a for a in summary.attempts if not a.ok]
    console.print(
        f"{summary.rules} rules, {summary.instances} instances, {len(summary.transitions)} transitions, "
        f"{len(summary.attempts) - len(failed)} deliveries, {len(failed)} failed attempts"
    )
    return bool(summary.errors or summary.undelivered)


@alerts.command()
@reading_store
@click.option("--rules", type=click.Path(dir_okay=False, path_type=Path), help="Rules file [default: the pack].")
@click.option("--database", default="clinotel", show_default=True)
@click.option("--once", is_flag=True, help="Evaluate once and exit (the default is every --every).")
@click.option("--every", default="30s", show_default=True, help="Evaluation interval.")
@click.option("--alertmanager", metavar="URL", help="Page through this Alertmanager (API v2).")
@click.option("--pagerduty", is_flag=True, help="Page through PagerDuty Events v2 (PAGERDUTY_ROUTING_KEY).")
@click.option("--pagerduty-url", default=None, help="Events API URL [default: PagerDuty's].", hidden=True)
@click.option("--webhook", metavar="URL", help="Send tickets (and pages, when nothing else pages) here.")
def evaluate(
    server: str | None, data_dir: Path | None, rules: Path | None, database: str, once: bool, every: str,
    alertmanager: str | None, pagerduty: bool, pagerduty_url: str | None, webhook: str | None,
) -> None:  # fmt: skip
    """Evaluate every rule against the store; record transitions and deliveries in
    clinotel_alert_events; page `page` rules and ticket `ticket` rules.

    The state of every alert lives in the store (the audit trail), so runs from cron (--once)
    and a long-running --every behave alike: `for` holds across runs, a firing alert pages once,
    and a delivery that failed is retried by the next run. Two evaluators on one store take turns
    (a lease in the same table): one incident pages once. Exits 1 when a rule failed or a
    notification could not be delivered (the reason on stderr)."""
    from clinotel.alerts.evaluator import DEFAULT_LEASE_S, Evaluator
    from clinotel.alerts.paging import Outbox
    from clinotel.model.store import DEFAULT_DATA_DIR

    interval = _interval(every)
    page, ticket = _sinks(alertmanager, pagerduty, pagerduty_url, webhook)
    pack = _pack(rules)
    client = open_reading_store(server, data_dir, database)
    recorder: Any = client if server is not None else _EventsOnly(data_dir or DEFAULT_DATA_DIR, database)
    lease_s = DEFAULT_LEASE_S if once else max(3.0 * interval, 60.0)
    evaluator = Evaluator(client, pack, Outbox(page, ticket), database, recorder=recorder, lease_s=lease_s)
    console = _console()
    try:
        while True:
            started = time.monotonic()
            failed = _report(evaluator.evaluate(), console, server)
            if once:
                raise SystemExit(1 if failed else 0)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    finally:
        evaluator.close()
        if isinstance(recorder, _EventsOnly):
            recorder.close()
        client.close()


@alerts.command("export")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output directory.")
@click.option("--rules", type=click.Path(dir_okay=False, path_type=Path), help="Rules file [default: the pack].")
@click.option("--database", default="clinotel", show_default=True)
@click.option("--alertmanager", metavar="URL",
              help="An Alertmanager for pages without PagerDuty and tickets without a webhook.")  # fmt: skip
def export_command(out: Path, rules: Path | None, database: str, alertmanager: str | None) -> None:
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
        written = write(out, _pack(rules), receivers, database)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    for path in written:
        click.echo(path)
    click.echo(f"pages go to {receivers.pages()}")
    click.echo(f"tickets go to {tickets}")
