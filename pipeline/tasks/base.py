"""The task contract: a head, its loss, decoding and scoring. Tasks know nothing of interfaces.

Legend: B batch, T frames, D feature width (the interface's `out_dim`).

The training engine (pipeline/train/loop.py) drives a task like this:

    task = build_task("er", cfg, train_utts)      # label maps / vocabularies from the train split
    utts = task.select(utts)                      # per split: the utterances this task uses
    head = task.build_head(in_dim)
    targets = task.collate([task.target(u) for u in batch_utts])
    loss = task.loss(head, feats, lengths, targets)           # feats (B, T, D), lengths (B,)
    outputs = task.predict(head, feats, lengths)              # list, one entry per utterance
    metrics = task.score(outputs, utts, split, data_dir)      # one schema for every task
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.data.manifest import Utterance


class Task:
    """Base class. Subclasses set `name`, `metric` and `direction` and implement the methods."""

    name: str = ""
    metric: str = ""  # "wer" | "cer" | "eer" | "accuracy"
    direction: str = ""  # "lower" | "higher": which way is better
    # {"train": {...}, "task_args": {...}}: what a run of this task uses where the experiment sets
    # nothing. `demo` is sized for the built-in suite on a CPU (a few hundred steps, small heads);
    # `recipe` holds only what the anchor recipe (SUPERB / ML-SUPERB) states, for paper configs.
    demo: dict[str, dict[str, Any]] = {}
    recipe: dict[str, dict[str, Any]] = {}

    def __init__(self, cfg: dict, train_utts: list[Utterance]):
        self.cfg = dict(cfg)

    def select(self, utts: list[Utterance]) -> list[Utterance]:
        """Utterances this task uses (e.g. one language in ml_asr mono mode); default all."""
        return utts

    def build_head(self, in_dim: int) -> nn.Module:
        raise NotImplementedError

    def target(self, utt: Utterance) -> Any:
        """The training target of one utterance (token ids, a class index, a speaker index)."""
        raise NotImplementedError

    def collate(self, targets: list[Any]) -> Any:
        """Batch the per-utterance targets (tensors on CPU; the engine moves them to the device)."""
        raise NotImplementedError

    def loss(
        self, head: nn.Module, feats: torch.Tensor, lengths: torch.Tensor, targets: Any
    ) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, head: nn.Module, feats: torch.Tensor, lengths: torch.Tensor) -> list[Any]:
        """Per-utterance outputs: hypothesis strings, class indices or embeddings (CPU)."""
        raise NotImplementedError

    def score(
        self, outputs: list[Any], utts: list[Utterance], split: str, data_dir: Path | None = None
    ) -> dict:
        """Metrics in the common schema (see `metrics_record`)."""
        raise NotImplementedError

    def state(self) -> dict:
        """JSON-serialisable state (vocabulary, label map) saved in the run directory."""
        return {}

    def load_state(self, state: dict) -> None:
        pass


def metrics_record(
    task: str, metric: str, value: float, direction: str, split: str, **extra: Any
) -> dict:
    """The one metrics schema for all tasks. `extra` may hold `per_language` ({lang: cer}) and counts."""
    rec = {
        "task": task,
        "metric": metric,
        "value": float(value),
        "direction": direction,
        "split": split,
    }
    rec.update(extra)
    return rec
