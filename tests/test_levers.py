"""The cheap-step levers of stage two: a linear CTC head (asr `layers: 0`, ml_asr `blocks: 0`),
training clips cropped to `train.crop_s` seconds, and bf16 autocast (`train.autocast`)."""

from __future__ import annotations

import pytest
import torch

from pipeline.tasks import build_task
from pipeline.train.config import ConfigError, RunConfig, validate
from pipeline.train.loop import crop_clips
from tests.test_asr import WORDS, _batch, _corpus


def test_linear_asr_head_is_one_linear_layer_and_learns_synthetic_words():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    D = 24
    chars = sorted(set("".join(WORDS))) + ["|"]
    protos = {c: 2.0 * torch.randn(D, generator=g) for c in chars}
    train, test = _corpus(160, 1, "train"), _corpus(40, 2, "test")
    task = build_task("asr", {"layers": 0, "specaug": False, "dropout": 0.0}, train)
    head = task.build_head(D)
    weights = [p for p in head.parameters()]
    assert sum(p.numel() for p in weights) == D * len(task.vocab) + len(task.vocab)
    opt = torch.optim.Adam(head.parameters(), lr=2e-2)
    for step in range(120):
        batch = [train[(step * 16 + i) % len(train)] for i in range(16)]
        feats, lengths = _batch(batch, protos, g)
        loss = task.loss(head, feats, lengths, task.collate([task.target(u) for u in batch]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    feats, lengths = _batch(test, protos, g)
    rec = task.score(task.predict(head, feats, lengths), test, "test")
    assert rec["cer"] < 0.15, rec


def test_linear_ml_asr_head_stacks_frames():
    from pipeline.data.manifest import Utterance

    utts = [Utterance(id=f"u{i}", path="x.wav", duration=1.0, sample_rate=16000, split="train",
                      text="hola mundo", language="spa") for i in range(3)]  # fmt: skip
    task = build_task("ml_asr", {"blocks": 0, "downsample": 2, "specaug": False}, utts)
    head = task.build_head(10)
    assert sum(p.numel() for p in head.parameters()) == 20 * len(task.vocab) + len(task.vocab)
    logp, n = head(torch.randn(2, 9, 10), torch.tensor([9, 5]))
    assert logp.shape == (2, 4, len(task.vocab)) and n.tolist() == [4, 2]


def test_crop_takes_the_same_stretch_of_audio_from_every_upstream():
    torch.manual_seed(0)
    # upstream 0 at 50 Hz, upstream 1 at 25 Hz; frame t holds its own time in seconds
    t50 = torch.arange(200).float() / 50
    t25 = torch.arange(100).float() / 25
    a = t50[None, None, :, None].expand(2, 3, 200, 4).clone()
    b = t25[None, None, :, None].expand(2, 2, 100, 5).clone()
    lengths = [torch.tensor([200, 60]), torch.tensor([100, 30])]  # clip 1 lasts 1.2 s
    (ca, cb), (na, nb) = crop_clips([a, b], lengths, [50.0, 25.0], 1.0)
    assert ca.shape == (2, 3, 50, 4) and cb.shape == (2, 2, 25, 5)
    assert na.tolist() == [50, 50] and nb.tolist() == [25, 25]
    for i in range(2):  # same start time (to a frame of the slower upstream), inside the clip
        assert abs(ca[i, 0, 0, 0] - cb[i, 0, 0, 0]) <= 1 / 25 + 1e-6
        assert ca[i, 0, na[i] - 1, 0] < lengths[0][i] / 50
    short = [torch.tensor([200, 20]), torch.tensor([100, 10])]  # clip 1 shorter than the window
    (ca, _), (na, nb) = crop_clips([a, b], short, [50.0, 25.0], 1.0)
    assert na.tolist() == [50, 20] and nb.tolist() == [25, 10]
    assert ca[1, 0, 0, 0] == 0  # a short clip keeps its start


def test_crop_draws_from_torch_seed():
    a = torch.randn(4, 1, 300, 2)
    n = [torch.full((4,), 300)]
    torch.manual_seed(3)
    x1, _ = crop_clips([a], n, [50.0], 2.0)
    torch.manual_seed(3)
    x2, _ = crop_clips([a], n, [50.0], 2.0)
    assert torch.equal(x1[0], x2[0])


@pytest.mark.parametrize("key,value", [("autocast", "fp8"), ("crop_s", -1.0), ("crop_s", float("nan"))])
def test_bad_lever_settings_are_refused(key, value):
    cfg = RunConfig(interface="ws", models=["m"], task="er")
    setattr(cfg.train, key, value)
    with pytest.raises(ConfigError, match=f"train.{key}"):
        validate(cfg)


def test_bf16_autocast_forward_keeps_a_float32_loss():
    train = _corpus(8, 1, "train")
    task = build_task("asr", {"layers": 0, "specaug": False}, train)
    head = task.build_head(6)
    feats = torch.randn(2, 12, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = task.loss(head, feats, torch.tensor([12, 9]),
                         task.collate([task.target(u) for u in train[:2]]))  # fmt: skip
    assert torch.isfinite(loss.float())
