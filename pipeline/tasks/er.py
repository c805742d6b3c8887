"""Emotion recognition: the SUPERB downstream (s3prl downstream/emotion), scored by accuracy.

Head: Linear(D→256) on every frame, mean pooling over the valid frames of each utterance,
Linear(256→C). C = 4 on IEMOCAP (neu, hap, ang, sad; excited merged into happy by the
importer). The label map comes from the train split; IEMOCAP's five leave-one-session-out
folds are five data dirs, averaged by the report, so nothing here knows about folds.

Legend: B batch, T frames, D input width, H hidden width, C classes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.data.manifest import Utterance
from pipeline.masks import frame_mask
from pipeline.tasks import register
from pipeline.tasks.base import Task, metrics_record

# The canonical class order; labels outside it (other corpora) follow, sorted.
CANONICAL = ("neu", "hap", "ang", "sad")


class MeanPoolHead(nn.Module):
    """Linear(D→H), masked mean over valid frames, Linear(H→C)."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 256):
        super().__init__()
        self.proj = nn.Linear(in_dim, hidden)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """feats (B, T, D), lengths (B,) valid frames -> logits (B, C)."""
        x = self.proj(feats)  # (B, T, H)
        mask = frame_mask(lengths.to(x.device), x.shape[1]).to(x.dtype)  # (B, T)
        summed = (x * mask[:, :, None]).sum(dim=1)  # (B, H)
        pooled = summed / mask.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, H)
        return self.out(pooled)  # (B, C)


@register
class EmotionRecognition(Task):
    """Utterance-level classification of `Utterance.emotion`.

    cfg keys: `hidden` (projector width, SUPERB 256).
    """

    name = "er"
    metric = "accuracy"
    direction = "higher"
    demo = {
        "train": {"steps": 150, "batch_size": 8, "lr": 1e-3, "eval_every": 50},
        "task_args": {"hidden": 256},  # the SUPERB head is already small
    }
    recipe = {  # s3prl downstream/emotion
        "train": {"steps": 30000, "batch_size": 4, "accum": 8, "lr": 1e-4, "eval_every": 1000},
        "task_args": {"hidden": 256},
    }

    def __init__(self, cfg: dict, train_utts: list[Utterance]):
        super().__init__(cfg, train_utts)
        self.hidden = int(self.cfg.get("hidden", 256))
        found = {u.emotion for u in train_utts if u.emotion is not None}
        self.labels: list[str] = [c for c in CANONICAL if c in found] + sorted(
            found - set(CANONICAL)
        )
        self.index = {c: i for i, c in enumerate(self.labels)}

    def select(self, utts: list[Utterance]) -> list[Utterance]:
        """Utterances that carry an emotion label."""
        return [u for u in utts if u.emotion is not None]

    def build_head(self, in_dim: int) -> nn.Module:
        if not self.labels:
            raise ValueError(
                "er: the train split holds no utterance with an `emotion` label; "
                "check the data dir's train.jsonl"
            )
        return MeanPoolHead(in_dim, len(self.labels), self.hidden)

    def target(self, utt: Utterance) -> int:
        if utt.emotion not in self.index:
            raise ValueError(
                f"er: utterance {utt.id!r} has emotion {utt.emotion!r}, which the train split "
                f"does not hold (labels: {self.labels}); relabel it or drop it from the manifest"
            )
        return self.index[utt.emotion]

    def collate(self, targets: list[int]) -> torch.Tensor:
        return torch.tensor(targets, dtype=torch.long)  # (B,)

    def loss(
        self, head: nn.Module, feats: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Cross-entropy of head(feats (B, T, D), lengths (B,)) against targets (B,)."""
        return F.cross_entropy(head(feats, lengths), targets)

    @torch.no_grad()
    def predict(self, head: nn.Module, feats: torch.Tensor, lengths: torch.Tensor) -> list[int]:
        return head(feats, lengths).argmax(dim=-1).cpu().tolist()

    def score(
        self, outputs: list[int], utts: list[Utterance], split: str, data_dir: Path | None = None
    ) -> dict:
        """Accuracy over `utts`, a fraction in [0, 1] (like WER/CER/EER in pipeline.tasks.metrics)."""
        if len(outputs) != len(utts):
            raise ValueError(f"er: {len(outputs)} predictions for {len(utts)} utterances")
        refs = [self.target(u) for u in utts]
        correct = sum(int(p == r) for p, r in zip(outputs, refs, strict=True))
        acc = correct / max(len(refs), 1)
        return metrics_record(
            self.name,
            self.metric,
            acc,
            self.direction,
            split,
            num_utts=len(refs),
            labels=self.labels,
        )

    def state(self) -> dict:
        return {"labels": list(self.labels), "hidden": self.hidden}

    def load_state(self, state: dict) -> None:
        self.labels = list(state["labels"])
        self.index = {c: i for i, c in enumerate(self.labels)}
        self.hidden = int(state.get("hidden", self.hidden))
