"""The emotion-recognition task: head shape, masked pooling, learning a toy problem, scoring."""

from __future__ import annotations

import pytest
import torch

from pipeline.data.manifest import Utterance
from pipeline.tasks import build_task
from pipeline.tasks.er import EmotionRecognition

LABELS = ["neu", "hap", "ang", "sad"]


def _utts(n: int, split: str, seed: int) -> list[Utterance]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g).tolist()
    return [
        Utterance(f"{split}{i}", "x.wav", 1.0, 16000, split, emotion=LABELS[c])
        for i, c in enumerate(labels)
    ]


def _feats(utts: list[Utterance], dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D) noise with the class written into dims 0..3 (one-hot, amplitude 1) of valid frames."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, 20, (len(utts),), generator=g)
    x = torch.randn(len(utts), int(lengths.max()), dim, generator=g)  # (B, T, D)
    for i, u in enumerate(utts):
        x[i, : lengths[i], LABELS.index(u.emotion)] += 1.0
        x[i, lengths[i] :] = 50.0  # padding garbage the head must ignore
    return x, lengths


def test_label_map_is_canonical_and_head_has_superb_shape():
    task = build_task("er", {}, _utts(40, "train", 0))
    assert isinstance(task, EmotionRecognition)
    assert task.labels == LABELS
    head = task.build_head(768)
    assert sum(p.numel() for p in head.parameters()) == 768 * 256 + 256 + 256 * 4 + 4


def test_masked_mean_pooling_ignores_padding():
    task = EmotionRecognition({"hidden": 16}, _utts(8, "train", 0))
    head = task.build_head(6)
    x = torch.randn(1, 5, 6)
    padded = torch.cat([x, torch.full((1, 7, 6), 99.0)], dim=1)
    a = head(x, torch.tensor([5]))
    b = head(padded, torch.tensor([5]))
    assert torch.allclose(a, b, atol=1e-5)


def test_head_learns_synthetic_emotions_far_above_chance():
    torch.manual_seed(0)
    train, test = _utts(256, "train", 1), _utts(128, "test", 2)
    task = EmotionRecognition({"hidden": 32}, train)
    head = task.build_head(12)
    x, n = _feats(train, 12, 3)
    y = task.collate([task.target(u) for u in train])
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2)
    for _ in range(10):  # epochs
        for i in range(0, len(train), 32):
            opt.zero_grad()
            task.loss(head, x[i : i + 32], n[i : i + 32], y[i : i + 32]).backward()
            opt.step()
    xt, nt = _feats(test, 12, 4)
    rec = task.score(task.predict(head, xt, nt), test, "test")
    assert rec["task"] == "er" and rec["metric"] == "accuracy" and rec["direction"] == "higher"
    assert rec["split"] == "test" and rec["num_utts"] == 128
    assert rec["value"] > 0.8  # chance is 0.25


def test_score_counts_and_unknown_label_names_the_utterance():
    train = _utts(20, "train", 0)
    task = EmotionRecognition({}, train)
    outs = [task.target(u) for u in train]
    outs[0] = (outs[0] + 1) % 4
    assert task.score(outs, train, "dev")["value"] == pytest.approx(19 / 20)
    odd = Utterance("odd7", "x.wav", 1.0, 16000, "test", emotion="fru")
    with pytest.raises(ValueError, match="odd7"):
        task.target(odd)
    assert task.select([odd, Utterance("n", "x.wav", 1.0, 16000, "test")]) == [odd]


def test_state_round_trip():
    task = EmotionRecognition({}, _utts(20, "train", 0))
    other = EmotionRecognition({}, [])
    other.load_state(task.state())
    assert other.labels == task.labels and other.target(_utts(1, "x", 5)[0]) in range(4)
