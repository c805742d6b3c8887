"""What each store and run is asked to do: the live hyperparameters of params.yaml per item.

The plan lists *which* stores and runs exist; their hyperparameters (`upstreams.<name>`,
`train`, `tasks.<column>`, `interfaces.<name>`) are read here when a stage runs, so
`dvc exp run -S train.lr=...` needs no re-planning. `train_settings` gives a run's overrides
as dotted keys (pipeline/train/config.py's `--set` syntax, applied there by `resolve_config`,
the one place the precedence of docs/CONFIG.md is applied); `train_argv` / `extract_argv`
spell the equivalent `pipeline train` / `pipeline extract` command lines
(`python -m pipeline.plan list`).
"""

from __future__ import annotations

import json
from typing import Any

from pipeline import paths
from pipeline.plan.experiment import Experiment
from pipeline.plan.model import Run, Store


def train_settings(exp: Experiment, run: Run) -> dict[str, Any]:
    """One run's `--set` overrides, in the order `resolve_config` applies them (later wins):
    `defaults`, `train`, the column's `train`, the run's seed, the run's task settings (`set`
    and its expansion), the column's `args`, the interface's keyword arguments.
    """
    return {k: v for k, (v, _) in _settings(exp, run).items()}


def settings_origins(exp: Experiment, run: Run) -> dict[str, str]:
    """Where each of `train_settings`' keys comes from in the experiment file, e.g.
    {"train.lr": "params.yaml: tasks.er.train.lr"}: what a refused value is named by."""
    return {k: f"{exp.source}: {where}" for k, (_, where) in _settings(exp, run).items()}


def _settings(exp: Experiment, run: Run) -> dict[str, tuple[Any, str]]:
    col = exp.tasks[run.column]
    out: dict[str, tuple[Any, str]] = {}
    if exp.defaults:  # which of the task's own defaults the runs start from
        out["defaults"] = (exp.defaults, "defaults")
    for k, v in exp.train.items():
        out[f"train.{k}"] = (v, f"train.{k}")
    for k, v in col.train.items():
        out[f"train.{k}"] = (v, f"tasks.{run.column}.train.{k}")
    out["train.seed"] = (run.seed, "seeds")
    for k, v in run.settings.items():
        out[f"task_args.{k}"] = (v, f"tasks.{run.column}.set.{k} (or its expand)")
    for k, v in col.args.items():
        out[f"task_args.{k}"] = (v, f"tasks.{run.column}.args.{k}")
    for k, v in exp.interfaces.get(run.interface, {}).items():
        out[f"interface_args.{k}"] = (v, f"interfaces.{run.interface}.{k}")
    return out


def run_dir(exp: Experiment, run: Run) -> str:
    """The run's directory: <paths.runs_root>/<key>."""
    return paths.run_dir(exp.paths.runs_root, run.key)


def format_value(v: Any) -> str:
    """A value as `--set key=VALUE` text that parses back as the same YAML value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def train_argv(exp: Experiment, run: Run, device: str | None = None) -> list[str]:
    """The equivalent `pipeline train` arguments (without the program name) of one run;
    `--device` is the caller's, else the experiment's `device`."""
    argv = ["train", "--models", ",".join(run.models), "--interface", run.interface,
            "--task", run.task, "--data", run.data, "--cache", run.cache,
            "--out", run_dir(exp, run), "--device", device or exp.device]  # fmt: skip
    for k, v in train_settings(exp, run).items():
        argv += ["--set", f"{k}={format_value(v)}"]
    return argv


def extract_options(exp: Experiment, store: Store) -> dict[str, Any]:
    """The upstream's extraction settings for one store: model source, whisper mode, batch."""
    up = exp.upstreams[store.upstream]
    out: dict[str, Any] = {"model": str(up.get("source", store.upstream))}
    if "whisper_mode" in up:
        out["whisper_mode"] = str(up["whisper_mode"])
    if "batch_seconds" in up:
        out["batch_seconds"] = up["batch_seconds"]
    return out


def extract_argv(exp: Experiment, store: Store, device: str | None = None) -> list[str]:
    """The equivalent `pipeline extract` arguments of one store (the stage adopts a store that
    is complete for the same request and rebuilds one made for another)."""
    opts = extract_options(exp, store)
    argv = ["extract", "--model", opts["model"], "--data", store.data, "--out", store.store,
            "--device", device or exp.device]  # fmt: skip
    if "whisper_mode" in opts:
        argv += ["--whisper-mode", opts["whisper_mode"]]
    if "batch_seconds" in opts:
        argv += ["--batch-seconds", format_value(opts["batch_seconds"])]
    return argv
