"""`pipeline report`: run directories -> results/ (table, findings, per-language CERs, metrics, curves, figures)."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    runs: Path = typer.Option(
        Path("runs"), "--runs", help="Folder of run directories (pipeline train --out)."
    ),
    out: Path = typer.Option(
        Path("results"),
        "--out",
        help="Where table.md, findings.md, languages.md, metrics.json, curves/ and figures/ go.",
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="The experiment (params.yaml or configs/*.yaml): rows, order and labels. Without it, rows are inferred from the runs.",
    ),
    importance: bool = typer.Option(
        True,
        "--importance/--no-importance",
        help="HConv figure: zero each input state and measure the output change (reads each "
        "HConv/CHConv run's best checkpoint and stores); --no-importance draws the weight-only proxy.",
    ),
) -> None:
    """Collect run directories into results/: table.md (mean ± sd over seeds), findings.md (the
    paper's findings tested), languages.md, metrics.json, curves and PNG figures."""
    from pipeline.plan import PlanError
    from pipeline.report import write_report

    if not runs.is_dir():
        typer.echo(
            f"error: {runs} is not a folder of run directories; train some runs first (`dvc repro`)",
            err=True,
        )
        raise typer.Exit(1)
    if config is not None and not config.is_file():
        typer.echo(f"error: config {config} does not exist", err=True)
        raise typer.Exit(1)
    try:
        paths = write_report(runs, out, config, importance=importance)
    except PlanError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    for name, path in paths.items():
        typer.echo(f"{name:22s} {path}")
