"""The ASR task: vocabulary, CTC decoding, and a tiny head that learns synthetic "speech"."""

from __future__ import annotations

import random

import pytest
import torch

from pipeline.data.manifest import Utterance
from pipeline.tasks import build_task
from pipeline.tasks.asr import ASR, concat_frames
from pipeline.tasks.ctc import BLANK, greedy_ctc


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny heads train faster on one thread, and far faster when other processes share the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


WORDS = ["CAB", "DEAF", "FACE", "BEAD", "HEAD", "GAD", "BAG", "ACHE"]


def _utt(i: int, text: str, split: str = "train") -> Utterance:
    return Utterance(
        id=f"u{i}", path=f"u{i}.wav", duration=1.0, sample_rate=16000, split=split, text=text
    )


def _corpus(n: int, seed: int, split: str) -> list[Utterance]:
    rng = random.Random(seed)
    return [
        _utt(seed * 1000 + i, " ".join(rng.sample(WORDS, rng.randint(1, 3))), split)
        for i in range(n)
    ]


def _render(text: str, protos: dict[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """Characters as noisy prototype frames (3-5 frames each); spaces have their own pattern. -> (T, D)."""
    frames = []
    for ch in text.replace(" ", "|"):
        n = int(torch.randint(3, 6, (1,), generator=g))
        frames.append(protos[ch] + 0.3 * torch.randn(n, protos[ch].numel(), generator=g))
    return torch.cat(frames)


def _batch(utts, protos, g):
    seqs = [_render(u.text, protos, g) for u in utts]
    lengths = torch.tensor([len(s) for s in seqs])
    feats = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)  # (B, T, D)
    return feats, lengths


def test_vocab_is_superb_characters():
    task = build_task("asr", {}, [])
    assert isinstance(task, ASR)
    assert len(task.vocab) == 32 and task.vocab[BLANK] == "<blank>"
    ids = task.encode("It's a dog.")
    assert task.decode(ids) == "IT'S A DOG"
    assert task.state() == {"vocab": task.vocab}


def test_greedy_ctc_merges_repeats_and_drops_blanks():
    path = torch.tensor([[5, 5, 0, 5, 6, 6, 0, 0, 7]])
    log_probs = torch.nn.functional.one_hot(path, 10).float().log()
    assert greedy_ctc(log_probs, torch.tensor([9])) == [[5, 5, 6, 7]]
    assert greedy_ctc(log_probs, torch.tensor([4])) == [[5, 5]]


def test_padding_does_not_change_predictions():
    torch.manual_seed(0)
    task = ASR({"proj": 16, "hidden": 16, "layers": 2, "specaug": False}, [])
    head = task.build_head(8).eval()
    x = torch.randn(1, 12, 8)
    padded = torch.cat([x, torch.randn(1, 7, 8)], dim=1)
    a, _ = head(x, torch.tensor([12]))
    b, _ = head(padded, torch.tensor([12]))
    assert torch.allclose(a, b[:, :12], atol=1e-6)


def test_concat_frames_stacks_neighbours_and_drops_the_tail():
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    y, n = concat_frames(x, torch.tensor([5, 3]), 2)
    assert y.shape == (2, 2, 6) and n.tolist() == [2, 1]
    assert torch.equal(y[0, 1], torch.cat([x[0, 2], x[0, 3]]))
    y, n = concat_frames(x[:, :1], torch.tensor([1, 1]), 2)  # shorter than k: one frame kept
    assert y.shape == (2, 1, 6) and n.tolist() == [1, 1]


def test_mvn_and_downsample_ignore_padding():
    torch.manual_seed(0)
    task = ASR({"proj": 16, "hidden": 16, "layers": 1, "specaug": False, "mvn": "mean_var", "downsample": 2}, [])  # fmt: skip
    head = task.build_head(8).eval()
    x = 5.0 + 3.0 * torch.randn(1, 12, 8)
    padded = torch.cat([x, torch.randn(1, 7, 8)], dim=1)
    a, na = head(x, torch.tensor([12]))
    b, nb = head(padded, torch.tensor([12]))
    assert na.tolist() == nb.tolist() == [6] and a.shape[1] == 6
    assert torch.allclose(a, b[:, :6], atol=1e-5)
    with pytest.raises(ValueError, match="mvn"):
        ASR({"mvn": "yes"}, []).build_head(8)


@pytest.mark.parametrize(
    "demo", [False, True], ids=["superb-layout", "demo-defaults-mvn-downsample"]
)
def test_head_learns_synthetic_words(demo):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    D = 24
    chars = sorted(set("".join(WORDS))) + ["|"]
    protos = {c: 2.0 * torch.randn(D, generator=g) for c in chars}
    if demo:  # Whisper-like features: a large offset and scale per dimension, which MVN removes
        offset, scale = 5.0 * torch.randn(D, generator=g), torch.rand(D, generator=g) * 4 + 0.5
        protos = {c: offset + scale * p for c, p in protos.items()}
    train, test = _corpus(160, 1, "train"), _corpus(40, 2, "test")
    cfg = {"proj": 48, "hidden": 48, "layers": 1, "specaug": False}
    if demo:
        cfg |= {"mvn": "mean_var", "downsample": 2}
    task = build_task("asr", cfg, train)
    head = task.build_head(D)
    opt = torch.optim.Adam(head.parameters(), lr=5e-3)
    bs = 16
    for step in range(90):
        batch = [train[(step * bs + i) % len(train)] for i in range(bs)]
        feats, lengths = _batch(batch, protos, g)
        loss = task.loss(head, feats, lengths, task.collate([task.target(u) for u in batch]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    feats, lengths = _batch(test, protos, g)
    hyps = task.predict(head, feats, lengths)
    rec = task.score(hyps, test, "test")
    assert rec["metric"] == "wer" and rec["direction"] == "lower" and rec["split"] == "test"
    assert rec["value"] < 0.2, (rec, hyps[:3])
    assert rec["cer"] < 0.1


@pytest.mark.parametrize("on", [True, False])
def test_specaug_only_in_training(on):
    task = ASR(
        {"proj": 8, "hidden": 8, "layers": 1, "specaug": on, "specaug_freq_mask_width": [1, 2]}, []
    )
    head = task.build_head(4)
    assert (head.specaug is not None) == on
    head.eval()
    x = torch.randn(2, 30, 4)
    a, _ = head(x, torch.tensor([30, 20]))
    b, _ = head(x, torch.tensor([30, 20]))
    assert torch.equal(a, b)


def test_metric_option_picks_the_value_and_keeps_both():
    """`metric: cer` makes CER the run's value (model selection, the table); WER stays beside it."""
    utts = _corpus(4, 3, "test")
    hyps = [u.text[:-2] for u in utts]  # every clip's last word misspelt: WER > 0, CER small
    by_wer = ASR({}, []).score(hyps, utts, "test")
    by_cer = ASR({"metric": "cer"}, []).score(hyps, utts, "test")
    assert by_wer["metric"] == "wer" and by_wer["value"] == by_wer["wer"]
    assert by_cer["metric"] == "cer" and by_cer["value"] == by_cer["cer"] < by_cer["wer"]
    assert (by_wer["wer"], by_wer["cer"]) == (by_cer["wer"], by_cer["cer"])
    with pytest.raises(ValueError, match="metric"):
        ASR({"metric": "bleu"}, [])
