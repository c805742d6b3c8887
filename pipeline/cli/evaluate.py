"""`pipeline evaluate`."""

from __future__ import annotations

import typer


def evaluate() -> None:
    """Not implemented yet."""
    typer.echo("pipeline evaluate: not implemented yet", err=True)
    raise typer.Exit(2)
