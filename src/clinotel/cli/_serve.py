"""`clinotel serve`: the collector, and with `--rules` the alert evaluator in the same process.

The umbrella owns this command because it installs both halves: the collector's options and run
(`clinotel.collector.cli`) and the alerting options and evaluator (`clinotel.alerts`), joined
through the collector's companion hook, so clinotel-collector never imports clinotel-alerts. The
rules, the interval and the sinks are checked before the collector binds or creates anything."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from clinotel.alerts.options import alerting_config, alerting_options, checked_outbox, checked_rules, sinks_given
from clinotel.collector.cli import run_serve, serve_options

__all__ = ["serve"]


@click.command()
@serve_options
@alerting_options(rules_help="Evaluate these alert rules in this process, on the collector's own store.")
def serve(
    rules: Path | None, every: str, alertmanager: tuple[str, ...], pagerduty: bool, pagerduty_url: str | None,
    webhook: tuple[str, ...], sinks: tuple[str, ...], flagd_file: Path | None, flag_webhook: str | None,
    dry_run: bool, runbook_base: str | None, **collector: Any,
) -> None:  # fmt: skip
    """Receive OTLP and store traces in ClickHouse, durably, one tenant per token; with --rules,
    evaluate alert rules on the same store, page, and run the rules' kill-switch actions
    (--flagd-file or --flag-webhook; --dry-run)."""
    if rules is None:
        source = click.get_current_context().get_parameter_source
        if source("webhook") is click.core.ParameterSource.ENVIRONMENT:
            webhook = ()  # CLINOTEL_TICKET_WEBHOOK_URL is for an evaluator: a plain collector ignores it
        if runbook_base and source("runbook_base") is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--runbook-base links the pages of --rules: give --rules FILE too")
        if sinks_given(alertmanager, pagerduty, webhook, sinks):
            raise click.UsageError(
                "--alertmanager, --pagerduty, --webhook and --sink page for --rules: give --rules FILE too"
            )
        if flagd_file is not None or flag_webhook is not None or dry_run:
            raise click.UsageError("--flagd-file, --flag-webhook and --dry-run act for --rules: give --rules FILE too")
        run_serve(**collector)
        return
    from clinotel.alerts.runner import beside_collector

    config = alerting_config(
        rules, every, alertmanager, pagerduty, pagerduty_url, webhook, sinks, flagd_file, flag_webhook, dry_run,
        runbook_base=runbook_base,
    )  # fmt: skip
    outbox = checked_outbox(config)
    try:
        pack = checked_rules(config.rules)

        def evaluator(started: Any) -> Callable[[], None]:
            thread = beside_collector(started, config, pack, outbox)
            click.echo(f"  evaluating {len(pack.rules)} alert rules from {rules} every {every}", err=True)
            return thread.stop

        run_serve(**collector, companion=evaluator)
    finally:
        outbox.close()  # the evaluator closed it already when it ran
