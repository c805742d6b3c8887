"""`pipeline train`: stage two, an interface and a task head trained from cached stores."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli.options import need_cache


def train(
    interface: str = typer.Option(..., help="Fusion interface: {interfaces}."),
    models: str = typer.Option(
        ...,
        help="Upstreams, comma-separated (their stores are CACHE/<name>.zarr); registered: {upstreams}.",
    ),
    task: str = typer.Option(..., help="Task: {tasks}."),
    data: Path = typer.Option(..., help="Task data dir holding train/dev/test.jsonl."),
    cache: Path | None = typer.Option(
        None,
        help="CACHE_DIR holding <upstream>.zarr stores for DATA (not needed when --store names "
        "a store for every model).",
    ),
    out: Path = typer.Option(..., help="RUN_DIR: config, checkpoints, log and metrics go here."),
    config: Path | None = typer.Option(
        None, help="A YAML config (train:, interface_args:, task_args:)."
    ),
    set: list[str] = typer.Option(
        [], "--set", help="Override a config key: --set train.lr=3e-4 (repeatable)."
    ),
    store: list[str] = typer.Option(
        [],
        "--store",
        help="An explicit store path, one per model in --models order, or NAME=PATH "
        "(repeatable); with one for every model, --cache is not needed.",
    ),
    force: bool = typer.Option(
        False, help="Discard a run in RUN_DIR with another config or changed inputs; retrain."
    ),
    device: str | None = typer.Option(
        None, help="auto, cpu, cuda, cuda:1 ... (default: the config's, else auto)."
    ),
) -> None:
    """Train (or resume) a run; writes RUN_DIR/metrics.json.

    Under `torchrun --nproc_per_node=N -m pipeline.cli train ...` the run is one DDP job over
    the N processes (train.batch_size is the global batch; see docs/TRAINING.md).
    """
    from pipeline.train.config import resolve_config
    from pipeline.train.ddp import train_ddp, world_size
    from pipeline.train.loop import train as run_train

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
    if not cfg.cache:  # --store instead of --cache: every model needs its store
        need_cache(cfg.models, cfg.stores)
    if world_size() > 1:  # started by torchrun: one DDP run over its processes
        run_dir = train_ddp(cfg, force=force)
    else:
        run_dir = run_train(cfg, force=force)
    typer.echo(str(run_dir / "metrics.json"))


def train_packed(
    configs: list[Path] = typer.Argument(
        ..., help="Resolved run configs (RUN_DIR/config.yaml files, each with its `out`)."
    ),
    force: bool = typer.Option(False, help="Discard runs with another config in their RUN_DIR."),
    device: str = typer.Option("", help="Override train.device for every run (cpu, cuda ...)."),
) -> None:
    """Train (or resume) runs that share one pass over the cache, in groups that can share it."""
    from pipeline.train.config import load_run_config
    from pipeline.train.pack import pack_groups
    from pipeline.train.pack import train_packed as run_packed

    cfgs = [load_run_config(c) for c in configs]
    for cfg in cfgs:
        cfg.train.device = device or cfg.train.device
    for group in pack_groups(cfgs):
        for run_dir in run_packed(group, force=force):
            typer.echo(str(run_dir / "metrics.json"))
