"""The `clinotel` command. Each installed component registers its subcommands in the
`clinotel.commands` entry-point group, so a machine lists only what it has installed.

A user's mistake (a bad flag, a missing file, a store that cannot be opened) ends the command with
one line on stderr, `Error: …`, and exit code 2 (usage) or 1; never a Python traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points, version

import click

__all__ = ["ENTRY_POINT_GROUP", "cli", "main"]

ENTRY_POINT_GROUP = "clinotel.commands"


class _PluginGroup(click.Group):
    """A click group whose subcommands come from entry points, loaded on first use."""

    def _plugins(self) -> dict[str, object]:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        ep = self._plugins().get(cmd_name)
        if ep is None:
            return None
        try:
            command = ep.load()  # type: ignore[attr-defined]
        except ImportError as e:
            return _unavailable(cmd_name, f"installed but cannot load: {e}")
        if not isinstance(command, click.Command):
            return _unavailable(cmd_name, "its entry point is not a click command")
        return command


def _unavailable(name: str, why: str) -> click.Command:
    """A stand-in for a broken plugin: `--help` still lists everything, using it says why."""

    def fail() -> None:
        raise click.ClickException(f"the '{name}' command is {why}")

    return click.Command(name, callback=fail, help=f"(unavailable: {why})")


def _version() -> str:
    return version("clinotel")


@click.group(cls=_PluginGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="clinotel", prog_name="clinotel")
def cli() -> None:
    """clinotel: end-to-end telemetry for clinical workflow automation.

    Instrument services with clinotel.instrumentation, receive OTLP into ClickHouse, and turn it
    into dashboards and alerts that page a person.
    """


def _logging() -> None:
    """Warnings and errors of clinotel's own loggers on stderr, one line each; the database
    driver's own chatter stays out (its errors reach the user as clinotel's messages)."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    logging.getLogger("clickhouse_connect").setLevel(logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `clinotel` console script."""
    _logging()
    try:
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="clinotel", standalone_mode=False)
    except click.UsageError as e:
        where = f" (`{e.ctx.command_path} --help` for usage)" if e.ctx is not None else ""
        click.echo(f"Error: {e.format_message()}{where}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"Error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except OSError as e:  # a path the user gave that cannot be read or written
        where = f": {e.filename}" if e.filename else ""
        click.echo(f"Error: {e.strerror or e}{where}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
