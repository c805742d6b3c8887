"""The multilingual ASR task: vocabulary, modes, subsampling lengths, and learning two fake languages."""

from __future__ import annotations

import random

import pytest
import torch

from pipeline.data.manifest import Utterance
from pipeline.tasks import build_task
from pipeline.tasks.ml_asr import Conv2dSubsampling2, MultilingualASR, utterance_mvn


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny heads train faster on one thread, and far faster when other processes share the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


LEX = {"xxa": ["kato", "mira", "tok", "ami"], "xxb": ["你好", "世界", "好人", "大"]}
SMALL = {
    "pre_dim": 20,
    "d_model": 48,
    "heads": 4,
    "ffn": 96,
    "blocks": 2,
    "dropout": 0.0,
    "specaug": False,
}


def _corpus(n: int, seed: int, split: str) -> list[Utterance]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lang = "xxa" if i % 2 == 0 else "xxb"
        text = " ".join(rng.sample(LEX[lang], rng.randint(1, 2)))
        out.append(
            Utterance(
                id=f"{split}{i}",
                path="x.wav",
                duration=1.0,
                sample_rate=16000,
                split=split,
                text=text,
                language=lang,
            )
        )
    return out


def _render(text: str, protos: dict[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    frames = []
    for ch in text.upper():
        n = int(
            torch.randint(6, 9, (1,), generator=g)
        )  # >= 3 frames per character after T/2 subsampling
        frames.append(protos[ch] + 0.3 * torch.randn(n, protos[ch].numel(), generator=g))
    return torch.cat(frames)  # (T, D)


def _batch(utts, protos, g):
    seqs = [_render(u.text, protos, g) for u in utts]
    return torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True), torch.tensor(
        [len(s) for s in seqs]
    )


def test_vocab_from_train_texts_han_single_tokens():
    task = build_task("ml_asr", {}, _corpus(20, 0, "train"))
    assert isinstance(task, MultilingualASR)
    assert task.vocab[:2] == ["<blank>", "<unk>"]
    assert {"你", "好", "K", " "} <= set(task.vocab)
    assert task.decode(task.encode("你好 kato!")) == "你好 KATO"
    assert task.encode("Q")[0] == 1  # unseen character -> <unk>


def test_mono_mode_selects_one_language():
    utts = _corpus(20, 0, "train")
    task = build_task("ml_asr", {"mode": "mono", "language": "xxb"}, utts)
    assert {u.language for u in task.select(utts)} == {"xxb"}
    assert "K" not in task.vocab
    with pytest.raises(ValueError, match="language"):
        build_task("ml_asr", {"mode": "mono"}, utts)


def test_subsampling_lengths_and_mvn():
    sub = Conv2dSubsampling2(20, 8, 0.0)
    for t in (7, 10, 33):
        y, n = sub(torch.randn(1, t, 20), torch.tensor([t]))
        assert y.shape[1] == (t - 1) // 2 - 2 == int(n)
    x = torch.randn(2, 10, 3) + 5
    y = utterance_mvn(x, torch.tensor([10, 6]), norm_vars=True)
    assert torch.allclose(y[1, :6].mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y[1, :6].pow(2).mean(0), torch.ones(3), atol=1e-4)
    assert torch.all(y[1, 6:] == 0)


def test_head_learns_two_fake_languages():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    D = 24
    train, test = _corpus(120, 1, "train"), _corpus(40, 2, "test")
    task = build_task("ml_asr", SMALL, train)
    protos = {c: 2.0 * torch.randn(D, generator=g) for c in task.vocab[2:]}
    head = task.build_head(D)
    opt = torch.optim.Adam(head.parameters(), lr=2e-3)
    bs = 16
    for step in range(80):
        batch = [train[(step * bs + i) % len(train)] for i in range(bs)]
        feats, lengths = _batch(batch, protos, g)
        loss = task.loss(head, feats, lengths, task.collate([task.target(u) for u in batch]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    feats, lengths = _batch(test, protos, g)
    rec = task.score(task.predict(head, feats, lengths), test, "test")
    assert rec["metric"] == "cer" and rec["direction"] == "lower"
    assert set(rec["per_language"]) == {"xxa", "xxb"}
    assert rec["value"] == pytest.approx(sum(rec["per_language"].values()) / 2)
    assert rec["value"] < 0.2, rec


def test_paper_sized_head_runs_with_specaug():
    task = build_task("ml_asr", {}, _corpus(10, 0, "train"))
    head = task.build_head(32)
    assert head.subsample.out.in_features == 256 * 37  # ESPnet conv2d2 on the 80-dim pre-encoder
    utts = _corpus(3, 3, "train")
    feats, lengths = torch.randn(3, 50, 32), torch.tensor([50, 30, 5])
    loss = task.loss(head, feats, lengths, task.collate([task.target(u) for u in utts]))
    assert torch.isfinite(loss)
    loss.backward()
    head.eval()
    assert len(task.predict(head, feats, lengths)) == 3
