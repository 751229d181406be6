"""The alerting options of every command that evaluates (`clinotel alerts evaluate`, `clinotel serve
--rules`): the same names, defaults and checks, turned into one `AlertingConfig`, and the sinks and
rules checked before the command opens or binds anything (a mistake: one line, exit 1 or 2).
Light to import (click alone): `clinotel --help` loads every command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

if TYPE_CHECKING:
    from clinotel.alerts.config import AlertingConfig
    from clinotel.alerts.paging import Outbox
    from clinotel.alerts.rules import RulePack

__all__ = ["alerting_config", "alerting_options", "checked_outbox", "checked_rules", "sinks_given"]

F = TypeVar("F", bound=Callable[..., object])
FLAGS: Final = {
    "rules": "--rules",
    "every": "--every",
    "alertmanager": "--alertmanager",
    "pagerduty_url": "--pagerduty-url",
    "webhook": "--webhook",
    "sinks": "--sink",
}
"""Each configuration field as its option, for the errors."""


def alerting_options(rules_help: str) -> Callable[[F], F]:
    """`--rules`, `--every` (also `--evaluate-every`), `--alertmanager`, `--pagerduty`, `--webhook`
    and `--sink`; the command receives `rules, every, alertmanager, pagerduty, pagerduty_url,
    webhook, sinks`."""
    options = [
        click.option("--rules", type=click.Path(dir_okay=False, path_type=Path), help=rules_help),
        click.option(
            "--every", "--evaluate-every", "every", default="30s", show_default=True, help="Alert evaluation interval."
        ),
        click.option(
            "--alertmanager", metavar="URL", multiple=True,
            help="Page through this Alertmanager (API v2); repeat for each replica of a cluster.",
        ),
        click.option("--pagerduty", is_flag=True, help="Page through PagerDuty Events v2 (PAGERDUTY_ROUTING_KEY)."),
        click.option("--pagerduty-url", hidden=True, help="Events API URL [default: PagerDuty's]."),
        click.option(
            "--webhook", metavar="URL", multiple=True,
            help="Send tickets (and pages, when nothing else pages) here; repeatable.",
        ),
        click.option(
            "--sink", "sinks", metavar="NAME", multiple=True,
            help="Also notify through this sink, by its name in the clinotel.alert_sinks entry points.",
        ),
    ]  # fmt: skip

    def decorate(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def sinks_given(
    alertmanager: tuple[str, ...], pagerduty: bool, webhook: tuple[str, ...], sinks: tuple[str, ...]
) -> bool:
    """Whether any option chose where notifications go."""
    return bool(alertmanager or pagerduty or webhook or sinks)


def alerting_config(
    rules: Path | None,
    every: str,
    alertmanager: tuple[str, ...],
    pagerduty: bool,
    pagerduty_url: str | None,
    webhook: tuple[str, ...],
    sinks: tuple[str, ...],
) -> AlertingConfig:
    """The options as a configuration; click.BadParameter (exit 2) naming the option at fault."""
    from pydantic import ValidationError

    from clinotel.alerts.config import AlertingConfig

    fields: dict[str, Any] = {
        "rules": rules, "every": every, "alertmanager": alertmanager, "pagerduty": pagerduty, "webhook": webhook,
        "sinks": sinks,
    }  # fmt: skip
    if pagerduty_url is not None:
        fields["pagerduty_url"] = pagerduty_url
    try:
        return AlertingConfig.model_validate(fields)
    except ValidationError as e:
        error = e.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        raise click.BadParameter(message, param_hint=FLAGS.get(field, field)) from None


def checked_outbox(config: AlertingConfig) -> Outbox:
    """The configured sinks, built; click.UsageError (exit 2) for an unknown sink or a sink
    without its settings (a missing routing key)."""
    from clinotel.alerts.sinks import SinkConfigError
    from clinotel.alerts.wiring import build_outbox

    try:
        return build_outbox(config)
    except SinkConfigError as e:
        raise click.UsageError(str(e)) from None


def checked_rules(rules: Path | None) -> RulePack:
    """The rules of `rules` (None: the default pack); click.ClickException (exit 1) with every
    mistake, file and line."""
    from clinotel.alerts import default_rules_path
    from clinotel.alerts.rules import RuleError, load

    try:
        return load(rules or default_rules_path())
    except RuleError as e:
        raise click.ClickException(str(e)) from None
