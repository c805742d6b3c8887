"""What each store and run is asked to do: the live hyperparameters of params.yaml per item.

The plan lists *which* stores and runs exist; their hyperparameters (`upstreams.<name>`,
`train`, `tasks.<column>`, `interfaces.<name>`) are read here when a stage runs, so
`dvc exp run -S train.lr=...` needs no re-planning. `train_settings` gives a run's overrides
as dotted keys (sfm_fusion/stages/config.py's `--set` syntax); `train_argv` / `extract_argv` spell the
equivalent `pipeline train` / `pipeline extract` command lines (`python -m sfm_fusion.stages.plan list`).
"""

from __future__ import annotations

import json
from typing import Any

from sfm_fusion.stages.plan.model import Run, Store


def train_settings(cfg: dict, run: Run) -> dict[str, Any]:
    """One run's overrides, lowest first: train, the column's train, task settings, interface.

    `train.seed` is always the run's own seed (the experiment's `seeds`).
    """
    col = cfg["tasks"][run.column] or {}
    out: dict[str, Any] = {}
    if cfg.get("defaults"):  # which of the task's own defaults the runs start from
        out["defaults"] = cfg["defaults"]
    for k, v in {**(cfg.get("train") or {}), **(col.get("train") or {})}.items():
        out[f"train.{k}"] = v
    out["train.seed"] = run.seed
    for k, v in run.settings.items():
        out[f"task_args.{k}"] = v
    for k, v in (col.get("args") or {}).items():
        out[f"task_args.{k}"] = v
    for k, v in ((cfg.get("interfaces") or {}).get(run.interface) or {}).items():
        out[f"interface_args.{k}"] = v
    return out


def run_dir(cfg: dict, run: Run) -> str:
    """The run's directory: <paths.runs_root>/<key>."""
    return f"{(cfg.get('paths') or {}).get('runs_root', 'runs')}/{run.key}"


def device_of(cfg: dict, device: str | None = None) -> str:
    """The device a stage runs on: the caller's, else params.yaml's `device`, else auto."""
    return str(device or cfg.get("device", "auto"))


def format_value(v: Any) -> str:
    """A value as `--set key=VALUE` text that parses back as the same YAML value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def train_argv(cfg: dict, run: Run, device: str | None = None) -> list[str]:
    """The equivalent `pipeline train` arguments (without the program name) of one run."""
    argv = ["train", "--models", ",".join(run.models), "--interface", run.interface,
            "--task", run.task, "--data", run.data, "--cache", run.cache,
            "--out", run_dir(cfg, run), "--device", device_of(cfg, device)]  # fmt: skip
    for k, v in train_settings(cfg, run).items():
        argv += ["--set", f"{k}={format_value(v)}"]
    return argv


def extract_options(cfg: dict, store: Store) -> dict[str, Any]:
    """The upstream's extraction settings for one store: model source, whisper mode, batch."""
    up = cfg["upstreams"][store.upstream] or {}
    out: dict[str, Any] = {"model": str(up.get("source", store.upstream))}
    if "whisper_mode" in up:
        out["whisper_mode"] = str(up["whisper_mode"])
    if "batch_seconds" in up:
        out["batch_seconds"] = up["batch_seconds"]
    return out


def extract_argv(cfg: dict, store: Store, device: str | None = None) -> list[str]:
    """The equivalent `pipeline extract` arguments of one store (the stage adopts a store that
    is complete for the same request and rebuilds one made for another)."""
    opts = extract_options(cfg, store)
    argv = ["extract", "--model", opts["model"], "--data", store.data, "--out", store.store,
            "--device", device_of(cfg, device)]  # fmt: skip
    if "whisper_mode" in opts:
        argv += ["--whisper-mode", opts["whisper_mode"]]
    if "batch_seconds" in opts:
        argv += ["--batch-seconds", format_value(opts["batch_seconds"])]
    return argv
