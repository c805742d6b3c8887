"""`pipeline report`."""

from __future__ import annotations

import typer


def report() -> None:
    """Not implemented yet."""
    typer.echo("pipeline report: not implemented yet", err=True)
    raise typer.Exit(2)
