"""The alerting options of every command that evaluates (`clinotel alerts evaluate`, `clinotel serve
--rules`): the same names, defaults and checks, turned into one `AlertingConfig`, and the sinks and
rules checked before the command opens or binds anything (a mistake: one line, exit 1 or 2).
Light to import (click alone): `clinotel --help` loads every command."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

from clinotel.model.files import MAX_CONFIG_BYTES

if TYPE_CHECKING:
    from clinotel.alerts.config import AlertingConfig
    from clinotel.alerts.paging import Outbox
    from clinotel.alerts.rules import RulePack

__all__ = [
    "FLAGD_DIR_ENV", "RUNBOOK_BASE_ENV", "TICKET_WEBHOOK_ENV", "alerting_config", "alerting_options",
    "checked_flagd_file", "checked_outbox", "checked_rules", "checked_runbook_base", "runbook_base_option",
    "sinks_given",
]  # fmt: skip

F = TypeVar("F", bound=Callable[..., object])
FLAGS: Final = {
    "rules": "--rules",
    "every": "--every",
    "alertmanager": "--alertmanager",
    "pagerduty_url": "--pagerduty-url",
    "webhook": "--webhook",
    "runbook_base": "--runbook-base",
    "sinks": "--sink",
    "flagd_file": "--flagd-file",
    "flag_webhook": "--flag-webhook",
}
"""Each configuration field as its option, for the errors."""
FLAGD_DIR_ENV: Final = "CLINOTEL_FLAGD_DIR"
"""The directory a `--flagd-file` must lie in [default: the working directory]."""
MAX_FLAGD_BYTES: Final = MAX_CONFIG_BYTES
RUNBOOK_BASE_ENV: Final = "CLINOTEL_RUNBOOK_BASE"
"""The environment variable `--runbook-base` is read from when not given."""
TICKET_WEBHOOK_ENV: Final = "CLINOTEL_TICKET_WEBHOOK_URL"
"""The environment variable `--webhook` is read from when not given (compose sets it from `.env`)."""


def _without_empty(context: click.Context, parameter: click.Parameter, urls: tuple[str, ...]) -> tuple[str, ...]:
    """The URLs given, an empty one left out: no webhook."""
    return tuple(url for url in urls if url)


runbook_base_option: Final = click.option(
    "--runbook-base", metavar="URL", envvar=RUNBOOK_BASE_ENV, show_envvar=True,
    help="Where your runbooks are published (a copy of clinotel's docs/runbooks/, edited for your site): a "
    "notification's runbook_url is this and docs/runbooks/RULE.md [default: clinotel's repository].",
)  # fmt: skip


def checked_runbook_base(url: str | None) -> str:
    """`--runbook-base` as the configuration keeps it (the default when not given); click.BadParameter."""
    from pydantic import ValidationError

    from clinotel.alerts.config import AlertingConfig

    try:
        return AlertingConfig.model_validate({"runbook_base": url} if url else {}).runbook_base
    except ValidationError as e:
        raise _refused(e) from None


def _refused(e: Any) -> click.BadParameter:
    """A configuration's ValidationError as the option at fault's error (exit 2)."""
    error = e.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    return click.BadParameter(message, param_hint=FLAGS.get(field, field))


def alerting_options(rules_help: str) -> Callable[[F], F]:
    """`--rules`, `--every` (also `--evaluate-every`), `--alertmanager`, `--pagerduty`, `--webhook`,
    `--sink` and the kill switch's `--flagd-file`, `--flag-webhook`, `--dry-run`; the command
    receives `rules, every, alertmanager, pagerduty, pagerduty_url, webhook, sinks, flagd_file,
    flag_webhook, dry_run`."""
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
            "--webhook", metavar="URL", multiple=True, callback=_without_empty, envvar=TICKET_WEBHOOK_ENV,
            show_envvar=True,
            help="Send tickets (and pages, when nothing else pages) here; repeatable (in the variable: "
            "separated by spaces); an empty URL is no webhook. A URL holding a token belongs in the variable: "
            "a command line is visible to every user of the host (`ps`).",
        ),
        runbook_base_option,
        click.option(
            "--sink", "sinks", metavar="NAME", multiple=True,
            help="Also notify through this sink, by its name in the clinotel.alert_sinks entry points.",
        ),
        click.option(
            "--flagd-file", type=click.Path(dir_okay=False, path_type=Path),
            help="Kill switch: a rule's disable_flag action rewrites this flagd flag-definition file (JSON, a "
            f"regular file, not a symlink, inside ${FLAGD_DIR_ENV} [default: the working directory]).",
        ),
        click.option(
            "--flag-webhook", metavar="URL",
            help="Kill switch for another flag system: post each disable_flag action here (not with --flagd-file).",
        ),
        click.option(
            "--dry-run", is_flag=True,
            help="Kill-switch actions say (audit trail, page) what they would switch off and change nothing.",
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


def checked_flagd_file(path: Path, allowed: Path) -> Path:
    """`path` (absolute) when it is a flagd flag-definition file the kill switch may rewrite: inside
    `allowed`, no symlink on the way, a regular file of at most MAX_FLAGD_BYTES holding JSON with a
    `flags` object of flag definitions; click.BadParameter (exit 2) saying why not."""
    import json
    import os
    import stat

    def bad(why: str) -> click.BadParameter:
        return click.BadParameter(why, param_hint="--flagd-file")

    absolute = Path(os.path.abspath(path))
    root = Path(os.path.abspath(allowed)).resolve()
    if absolute.resolve() != absolute:
        raise bad(f"{path} is or goes through a symlink: give the file's real path")
    if not absolute.is_relative_to(root):
        raise bad(f"{path} is outside {root} (set {FLAGD_DIR_ENV} to the directory the kill switch may write in)")
    try:
        st = absolute.lstat()
    except OSError as e:
        raise bad(f"cannot read {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise bad(f"{path} is not a regular file")
    if st.st_size > MAX_FLAGD_BYTES:
        raise bad(f"{path} is over {MAX_FLAGD_BYTES >> 20} MiB: not a flag-definition file")
    try:
        data = json.loads(absolute.read_bytes())
    except (OSError, ValueError, RecursionError) as e:
        raise bad(f"{path} is not JSON: {getattr(e, 'strerror', None) or str(e)[:120]}") from None
    flags = data.get("flags") if isinstance(data, dict) else None
    if not isinstance(flags, dict) or not all(
        isinstance(f, dict) and isinstance(f.get("variants"), dict) for f in flags.values()
    ):
        raise bad(f"{path} is not a flagd flag-definition file (a `flags` object of flags with `variants`)")
    return absolute


def alerting_config(
    rules: Path | None,
    every: str,
    alertmanager: tuple[str, ...],
    pagerduty: bool,
    pagerduty_url: str | None,
    webhook: tuple[str, ...],
    sinks: tuple[str, ...],
    flagd_file: Path | None = None,
    flag_webhook: str | None = None,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
    runbook_base: str | None = None,
) -> AlertingConfig:
    """The options as a configuration; click.BadParameter (exit 2) naming the option at fault.
    `env`: where `CLINOTEL_FLAGD_DIR` is read (default: the process environment)."""
    import os

    from pydantic import ValidationError

    from clinotel.alerts.config import AlertingConfig

    if flagd_file is not None and flag_webhook is not None:
        raise click.UsageError("--flagd-file and --flag-webhook are two kill switches: give one")
    if flagd_file is not None:
        allowed = (os.environ if env is None else env).get(FLAGD_DIR_ENV) or os.getcwd()
        flagd_file = checked_flagd_file(flagd_file, Path(allowed))
    fields: dict[str, Any] = {
        "rules": rules, "every": every, "alertmanager": alertmanager, "pagerduty": pagerduty, "webhook": webhook,
        "sinks": sinks, "flagd_file": flagd_file, "flag_webhook": flag_webhook, "dry_run": dry_run,
    }  # fmt: skip
    if pagerduty_url is not None:
        fields["pagerduty_url"] = pagerduty_url
    if runbook_base:
        fields["runbook_base"] = runbook_base
    try:
        return AlertingConfig.model_validate(fields)
    except ValidationError as e:
        raise _refused(e) from None


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
