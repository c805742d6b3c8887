"""`pipeline extract`."""

from __future__ import annotations

import typer


def extract() -> None:
    """Not implemented yet."""
    typer.echo("pipeline extract: not implemented yet", err=True)
    raise typer.Exit(2)
