"""`clinotel semconv`: the attribute registry as documentation, and the PHI scrubber by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from clinotel.semconv import REGISTRY, render_markdown, scrub
from clinotel.semconv.attributes import GROUPS

__all__ = ["semconv"]


@click.group()
def semconv() -> None:
    """The semantic conventions: attribute registry and PHI rules."""


@semconv.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
def docs(out: Path | None) -> None:
    """Render the attribute registry as Markdown (docs/semantic-conventions.md)."""
    text = render_markdown(REGISTRY, GROUPS)
    if out is None:
        click.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out} ({len(REGISTRY)} attributes)", err=True)


@semconv.command("scrub")
@click.argument("text", required=False)
def scrub_command(text: str | None) -> None:
    """Show what the PHI scrubber leaves of TEXT (or of each line of standard input)."""
    lines = [text] if text is not None else sys.stdin.read().splitlines()
    for line in lines:
        click.echo(scrub(line))
