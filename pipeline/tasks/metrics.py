"""Metrics shared by the tasks: WER and CER (jiwer), EER (scikit-learn's ROC curve), text normalisation.

WER and CER are corpus-level: total edit operations over total reference words (characters),
as jiwer computes them for lists of sentences. Text is normalised before scoring with
`normalize_en` (SUPERB ASR) or `normalize_ml` (ML-SUPERB); the tasks apply it to both the
references and the hypotheses.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import jiwer
import numpy as np
from sklearn.metrics import roc_curve

_NOT_EN = re.compile(r"[^A-Z' ]+")
_SPACES = re.compile(r"\s+")


def normalize_en(text: str) -> str:
    """SUPERB English text: upper case, only A-Z and apostrophes, single spaces between words.

    Anything else (digits, punctuation, hyphens) becomes a word break, so "well-known." ->
    "WELL KNOWN".
    """
    text = unicodedata.normalize("NFKC", text).upper()
    return _SPACES.sub(" ", _NOT_EN.sub(" ", text)).strip()


def normalize_ml(text: str) -> str:
    """Multilingual text: NFKC, upper case, punctuation and symbols removed (apostrophes kept),
    whitespace collapsed to single spaces. Scripts without case (Han, kana) are unchanged, so a
    Han character stays one character."""
    text = unicodedata.normalize("NFKC", text).upper()
    kept = [
        " " if ch.isspace() else ch
        for ch in text
        if ch == "'" or ch.isspace() or unicodedata.category(ch)[0] not in ("P", "S", "C")
    ]
    return _SPACES.sub(" ", "".join(kept)).strip()


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate: (S + D + I) / reference words, over all sentence pairs.

    An empty hypothesis counts all its reference words as deletions. Returns 0.0 for no input.
    """
    refs, hyps = _check_pairs(refs, hyps)
    if not refs:
        return 0.0
    return float(jiwer.wer(refs, hyps))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus character error rate: (S + D + I) / reference characters, spaces included."""
    refs, hyps = _check_pairs(refs, hyps)
    if not refs:
        return 0.0
    return float(jiwer.cer(refs, hyps))


def eer(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Equal error rate of a verification trial list (label 1 = target trial, higher score = same).

    Uses sklearn.metrics.roc_curve and interpolates linearly between the two ROC points where
    the false-negative rate (1 - TPR) crosses the false-positive rate. Returns a fraction in
    [0, 1] (0.0 for perfectly separated scores, about 0.5 for identical distributions).
    """
    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(
            f"eer: labels {labels.shape} and scores {scores.shape} must be 1-D and equal in length"
        )
    if labels.min(initial=1) == labels.max(initial=0) or len(labels) == 0:
        raise ValueError(
            "eer needs both target (1) and non-target (0) trials; check the trial list"
        )
    fpr, tpr, _ = roc_curve(labels, scores, pos_label=1)
    fnr = 1.0 - tpr
    diff = fnr - fpr  # non-increasing: starts at 1, ends at -1
    i = int(np.nonzero(diff >= 0)[0][-1])
    if diff[i] == 0 or i == len(diff) - 1:
        return float(fpr[i])
    t = diff[i] / (diff[i] - diff[i + 1])
    return float(fpr[i] + t * (fpr[i + 1] - fpr[i]))


def _check_pairs(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses; they must pair up")
    return refs, hyps
