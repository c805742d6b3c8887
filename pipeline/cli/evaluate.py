"""`pipeline evaluate`: re-score a run from its best checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer


def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory written by `pipeline train`."),
    split: str = typer.Option("test", help="Split to score: train, dev or test."),
    data: Path | None = typer.Option(
        None, help="Score another dataset's split (its task data dir)."
    ),
    cache: Path | None = typer.Option(
        None, help="CACHE_DIR with that dataset's stores (with --data)."
    ),
    store: list[str] = typer.Option(
        [], "--store", help="An explicit store path, one per model (or NAME=PATH)."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda ..."),
) -> None:
    """Write RUN_DIR/eval_<split>[_<dataset>].json (and hypotheses for ASR tasks)."""
    from pipeline.train.evaluate import evaluate as run_evaluate

    out = run_evaluate(
        run_dir, split=split, data=data, cache=cache, stores=store or None, device=device
    )
    typer.echo(str(out))
