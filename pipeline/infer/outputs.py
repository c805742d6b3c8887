"""What a head's output means per task: the JSON fields of `pipeline predict`'s lines.

Legend: B batch, T frames, D interface width, C classes, E embedding width.

`head_outputs(rm, out (B, T, D), out_len (B,))` -> (the task's own outputs, as `Task.predict`
gives them and `Task.score` reads them; one JSON-ready dict per utterance):

- asr / asr_en: `{"text"}`, the greedy CTC transcript.
- ml_asr: `{"text", "language"}`. The head is pure CTC and predicts no language, so the
  language is read from the transcript: the ISO 639-3 code whose character distribution in
  the run's train split (add-one smoothed unigrams of `normalize_ml` text) gives the
  transcript the highest likelihood; null for an empty transcript or when the run's train
  split is gone.
- er: `{"label", "probs": {label: p}}`, softmax over the head's logits (argmax = `predict`).
- sv: `{"embedding": [E floats]}`, L2-normalised (cosine scoring = dot product).
- a task registered elsewhere: `{"output": ...}`, its `predict` output as JSON.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from pipeline.checkpoint import plain
from pipeline.data.manifest import Utterance
from pipeline.infer.run_model import RunModel
from pipeline.tasks.asr import CTCTask
from pipeline.tasks.er import EmotionRecognition
from pipeline.tasks.metrics import normalize_ml
from pipeline.tasks.ml_asr import MultilingualASR
from pipeline.tasks.sv import SpeakerVerification


class CharLID:
    """Language from characters: add-one smoothed unigram model per language of a train split."""

    def __init__(self, utts: Sequence[Utterance]):
        self.counts: dict[str, Counter] = {}
        for u in utts:
            if u.language and u.text:
                self.counts.setdefault(u.language, Counter()).update(
                    normalize_ml(u.text).replace(" ", "")
                )
        self.chars = set().union(*self.counts.values()) if self.counts else set()
        self.totals = {k: sum(c.values()) for k, c in self.counts.items()}

    def guess(self, text: str) -> str | None:
        """The most likely language of `text`, or None (no model, no characters)."""
        chars = normalize_ml(text).replace(" ", "")
        if not self.counts or not chars:
            return None
        v = len(self.chars) + 1
        best, best_ll = None, -math.inf
        for lang, c in sorted(self.counts.items()):
            n = self.totals[lang] + v
            ll = sum(math.log((c.get(ch, 0) + 1) / n) for ch in chars)
            if ll > best_ll:
                best, best_ll = lang, ll
        return best


def head_outputs(
    rm: RunModel, out: torch.Tensor, out_len: torch.Tensor, lid: CharLID | None = None
) -> tuple[list[Any], list[dict]]:
    """(task outputs, JSON fields) for one batch of interface outputs (B, T, D), (B,)."""
    task, head = rm.task, rm.head
    with torch.no_grad():
        if isinstance(task, EmotionRecognition):
            logits = head(out, out_len).float()  # (B, C)
            probs = torch.softmax(logits, dim=-1).cpu()
            idx = logits.argmax(dim=-1).cpu().tolist()  # what task.predict returns
            fields = [
                {
                    "label": task.labels[i],
                    "probs": {c: float(p) for c, p in zip(task.labels, row.tolist(), strict=True)},
                }
                for i, row in zip(idx, probs, strict=True)
            ]
            return idx, fields
        outputs = task.predict(head, out, out_len)
    if isinstance(task, SpeakerVerification):
        return outputs, [{"embedding": [float(x) for x in e.tolist()]} for e in outputs]
    if isinstance(task, MultilingualASR):
        return outputs, [{"text": t, "language": lid.guess(t) if lid else None} for t in outputs]
    if isinstance(task, CTCTask):
        return outputs, [{"text": t} for t in outputs]
    return outputs, [{"output": plain(o)} for o in outputs]


def make_lid(rm: RunModel) -> CharLID | None:
    """The character LID of an ml_asr run (None for other tasks)."""
    return CharLID(rm.train_utts) if isinstance(rm.task, MultilingualASR) else None
