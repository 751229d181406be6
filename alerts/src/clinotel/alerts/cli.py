"""`clinotel alerts evaluate | check`."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from clinotel.collector.cli import open_reading_store, reading_store

__all__ = ["alerts"]


def _pack(rules: Path | None) -> object:
    from clinotel.alerts import default_rules_path
    from clinotel.alerts.rules import RuleError, load

    try:
        return load(rules or default_rules_path())
    except RuleError as e:
        raise click.ClickException(str(e)) from None


@click.group()
def alerts() -> None:
    """Alert rules as code: check them, evaluate them and page."""


@alerts.command("check")
@click.option("--rules", type=click.Path(dir_okay=False, path_type=Path), help="Rules file [default: the pack].")
def check_rules(rules: Path | None) -> None:
    """Load a rules file and list its rules; a mistake is reported with its file and line."""
    pack = _pack(rules)
    table = Table("rule", "kind", "metric", "condition", "window", "for", "min n", "severity")
    for r in pack.rules:  # type: ignore[attr-defined]
        condition = (
            f"outside {r.band[0]}–{r.band[1]}" if r.kind == "disparity" else f"{r.comparison.symbol} {r.threshold:g}"
        )
        table.add_row(r.name, r.kind, r.metric, condition, f"{r.window}s", f"{r.for_}s", str(r.min_sample), r.severity)
    Console().print(table)


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
    clinotel_alert_events; page `page` rules and ticket `ticket` rules."""
    from clinotel.alerts.evaluator import Evaluator
    from clinotel.alerts.paging import AlertmanagerSink, Outbox, PagerDutySink, Sink, WebhookSink
    from clinotel.alerts.rules import parse_duration

    pack = _pack(rules)
    page: list[Sink] = []
    if alertmanager:
        page.append(AlertmanagerSink(alertmanager))
    if pagerduty:
        page.append(PagerDutySink(pagerduty_url) if pagerduty_url else PagerDutySink())
    ticket: list[Sink] = [WebhookSink(webhook)] if webhook else []
    if not page and ticket:
        page = list(ticket)
    client = open_reading_store(server, data_dir, database)
    evaluator = Evaluator(client, pack, Outbox(page, ticket), database)  # type: ignore[arg-type]
    interval = parse_duration(every)
    console = Console()
    while True:
        started = time.monotonic()
        summary = evaluator.evaluate()
        for rule, labels, state in summary.transitions:
            console.print(f"{rule} {labels} -> [bold]{state}[/]")
        for rule, error in summary.errors:
            console.print(f"[red]{rule}: {error}[/]")
        failed = [a for a in summary.attempts if not a.ok]
        console.print(
            f"{summary.rules} rules, {summary.instances} instances, {len(summary.transitions)} transitions, "
            f"{len(summary.attempts) - len(failed)} deliveries, {len(failed)} failed attempts"
        )
        if once:
            raise SystemExit(1 if summary.errors else 0)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


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
        written = write(out, _pack(rules), receivers, database)  # type: ignore[arg-type]
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    for path in written:
        click.echo(path)
    click.echo(f"pages go to {receivers.pages()}")
    click.echo(f"tickets go to {tickets}")
