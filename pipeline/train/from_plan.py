"""Train (or resume) one run of the experiment plan, as dvc.yaml's train stage (stages/train.py) does.

The run's config is built from params.yaml's live hyperparameters (pipeline/plan/settings.py)
with the same precedence as `pipeline train --set ...` (pipeline/train/config.py), and the trainer is
called directly. While it trains, the run holds its stores as a reader (pipeline/store/usage.py),
so no extract stage of another experiment rebuilds them under it. The grid runner
(pipeline/grid/runner.py) trains runs through the same `train_run`.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.paths import store_path
from pipeline.plan import Experiment, Run
from pipeline.plan.settings import run_dir, settings_origins, train_settings
from pipeline.store.usage import Reading
from pipeline.train.config import RunConfig, resolve_config
from pipeline.train.loop import train
from pipeline.train.pack import train_packed


def run_config(exp: Experiment, run: Run, device: str | None = None) -> RunConfig:
    """The RunConfig of one run of the plan (what `pipeline train` would build); `device`:
    the caller's, else the experiment's."""
    return resolve_config(
        interface=run.interface, models=list(run.models), task=run.task, data=run.data,
        cache=run.cache, out=run_dir(exp, run), settings=train_settings(exp, run),
        settings_source=settings_origins(exp, run), device=device or exp.device,
    )  # fmt: skip


def store_paths(run: Run) -> list[str]:
    """The stores a run reads: <run.cache>/<upstream>.zarr, one per model."""
    return [store_path(run.cache, m) for m in run.models]


def train_run(exp: Experiment, run: Run, device: str | None = None, progress: bool = False,
              force: bool = False) -> Path:  # fmt: skip
    """Train or resume one run (holding its stores as a reader); returns its run directory.

    force: discard a run directory left with another config (the grid runner's case; under
    `dvc repro` DVC has removed the directory already).
    """
    rc = run_config(exp, run, device)
    with Reading(store_paths(run)):
        return train(rc, force=force, progress=progress)


def train_packed_runs(pairs: list[tuple[Experiment, Run]], device: str | None = None) -> list[Path]:
    """Train (or resume) runs that share one pass over the cache (pipeline/train/pack.py), holding the
    union of their stores as a reader; run dirs left with another config are discarded."""
    rcs = [run_config(exp, run, device) for exp, run in pairs]
    paths = sorted({p for _, run in pairs for p in store_paths(run)})
    with Reading(paths):
        return train_packed(rcs, progress=False, force=True)
