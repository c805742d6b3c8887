"""Run directories as the report reads them (the types every report module shares).

A run directory is what `pipeline train` writes: config.yaml (the resolved RunConfig: models,
interface, task, task_args, train.seed, ...), metrics.json (one record per scored split: dev,
test and any extra split such as test_unseen), log.jsonl (one line per dev evaluation),
interface_summary.json and checkpoints/best.pt. The report identifies a run by what its
config says, not by its directory name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Config keys that do not make two runs different experiments: what the report groups by
# (models, interface, task), the seed (a cell spans seeds), where the inputs and the run live,
# and how fast it ran (pipeline.train.config.VOLATILE: what may change when a run resumes).
NOT_COMPARED = ("models", "interface", "task", "data", "cache", "stores", "out", "train.seed",
                "train.device", "train.num_workers", "train.tier", "train.threads")  # fmt: skip
EXPANSION_ARGS = ("fold", "config", "language")  # task_args a cell averages over


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{"train.steps": 20, ...}: a nested mapping's leaves by dotted key (lists are leaves)."""
    if not isinstance(d, dict):
        return {prefix: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, key) if isinstance(v, dict) and v else {key: v})
    return out


def same_value(a: Any, b: Any) -> bool:
    """Equal as config values: numbers by value (1e-3 == 0.001, 20 == 20.0), else by equality."""
    num = (int, float)
    if (
        isinstance(a, num)
        and isinstance(b, num)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return float(a) == float(b)
    return a == b


def read_json(path: Path, default: Any) -> Any:
    """The parsed file, or `default` when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return default


@dataclass
class RunResult:
    """One run directory as written by `pipeline train`."""

    key: str  # the directory name
    path: Path
    config: dict  # config.yaml (resolved)
    records: list[dict]  # metrics.json: one record per scored split
    log: list[dict]  # log.jsonl, one line per dev evaluation
    summary: dict  # interface_summary.json

    def record(self, split: str) -> dict | None:
        return next((r for r in self.records if r.get("split") == split), None)

    @property
    def models(self) -> list[str]:
        return list(self.config.get("models") or [])

    @property
    def interface(self) -> str:
        return str(self.config.get("interface") or "")

    @property
    def task(self) -> str:
        return str(self.config.get("task") or "")

    @property
    def task_args(self) -> dict:
        return dict(self.config.get("task_args") or {})

    @property
    def seed(self) -> int:
        """train.seed of the run's config (0, the trainer's default, when absent)."""
        return int((self.config.get("train") or {}).get("seed", 0))

    @property
    def splits(self) -> list[str]:
        return [str(r["split"]) for r in self.records if "split" in r]

    @property
    def settings(self) -> dict[str, Any]:
        """What the run computed with, by dotted key (config.yaml flattened), without the keys
        that do not make it another experiment (NOT_COMPARED, the expansion's task_args): two
        runs of one cell that differ here must not be averaged."""
        skip = set(NOT_COMPARED) | {f"task_args.{k}" for k in EXPANSION_ARGS}
        return {k: v for k, v in flatten(self.config).items() if k not in skip}

    @property
    def steps(self) -> int | None:
        """train.steps of the run's config (None when it does not say)."""
        steps = (self.config.get("train") or {}).get("steps")
        return None if steps is None else int(steps)


def _read_log(path: Path) -> list[dict]:
    out = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def load_runs(runs_dir: str | Path) -> dict[str, RunResult]:
    """Every run directory (one holding config.yaml or metrics.json) under `runs_dir`, by name."""
    out: dict[str, RunResult] = {}
    root = Path(runs_dir)
    for d in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if not (d / "metrics.json").exists() and not (d / "config.yaml").exists():
            continue
        try:
            cfg = yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            cfg = {}
        records = read_json(d / "metrics.json", [])
        summary = read_json(d / "interface_summary.json", {})
        out[d.name] = RunResult(
            d.name,
            d,
            cfg if isinstance(cfg, dict) else {},
            records if isinstance(records, list) else [],
            _read_log(d / "log.jsonl"),
            summary if isinstance(summary, dict) else {},
        )
    return out
