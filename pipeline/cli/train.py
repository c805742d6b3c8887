"""`pipeline train`."""

from __future__ import annotations

import typer


def train() -> None:
    """Not implemented yet."""
    typer.echo("pipeline train: not implemented yet", err=True)
    raise typer.Exit(2)
