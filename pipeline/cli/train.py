"""`pipeline train`: stage two, an interface and a task head trained from cached stores."""

from __future__ import annotations

from pathlib import Path

import typer


def train(
    interface: str = typer.Option(..., help="Fusion interface: ws, hconv, chconv or gumd."),
    models: str = typer.Option(
        ..., help="Upstreams, comma-separated (their stores are CACHE/<name>.zarr)."
    ),
    task: str = typer.Option(..., help="Task: er, asr (asr_en), ml_asr or sv."),
    data: Path = typer.Option(..., help="Task data dir holding train/dev/test.jsonl."),
    cache: Path = typer.Option(..., help="CACHE_DIR holding <upstream>.zarr stores for DATA."),
    out: Path = typer.Option(..., help="RUN_DIR: config, checkpoints, log and metrics go here."),
    config: Path | None = typer.Option(
        None, help="A YAML config (train:, interface_args:, task_args:)."
    ),
    set: list[str] = typer.Option(
        [], "--set", help="Override a config key: --set train.lr=3e-4 (repeatable)."
    ),
    store: list[str] = typer.Option(
        [], "--store", help="An explicit store path, one per model (or NAME=PATH)."
    ),
    force: bool = typer.Option(
        False, help="Discard a run in RUN_DIR with another config or changed inputs; retrain."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
) -> None:
    """Train (or resume) a run; writes RUN_DIR/metrics.json."""
    from stages.config import resolve_config
    from stages.train import train as run_train

    cfg = resolve_config(
        interface=interface,
        models=models,
        task=task,
        data=data,
        cache=cache,
        out=out,
        config=config,
        sets=set,
        stores=store,
        device=device,
    )
    run_dir = run_train(cfg, force=force)
    typer.echo(str(run_dir / "metrics.json"))
