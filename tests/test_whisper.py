"""Whisper encoder upstream on the real offline tiny.en weights (pad30 and trim modes)."""

from __future__ import annotations

import pytest
import torch

from pipeline.upstreams import load_upstream
from pipeline.upstreams.whisper import WhisperUpstream, encoder_states, whisper_num_frames

LENGTHS = [48000, 47700, 7777]  # 3 s (300 mel frames), 298 mel frames, ~0.5 s


@pytest.fixture(scope="module")
def pad30():
    return load_upstream("whisper_tiny_en", whisper_mode="pad30")


@pytest.fixture(scope="module")
def trim(pad30):
    return WhisperUpstream(pad30.spec, pad30.model, mode="trim")  # same weights, other mode


@pytest.fixture(scope="module")
def batch():
    """Speech-like audio: a few harmonics with a wandering pitch plus a little noise."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(max(LENGTHS)) / 16000
    w = torch.zeros(len(LENGTHS), max(LENGTHS))
    for i, n in enumerate(LENGTHS):
        f0 = 120 + 40 * i + 30 * torch.sin(2 * torch.pi * 0.7 * t[:n])
        phase = 2 * torch.pi * torch.cumsum(f0, 0) / 16000
        x = sum(torch.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * torch.sin(6 * t[:n]))
        w[i, :n] = 0.1 * x + 0.005 * torch.randn(n, generator=g)
    return w, torch.tensor(LENGTHS)


def test_frame_formula():
    assert whisper_num_frames(480000) == 1500
    assert whisper_num_frames(160000) == 500
    assert whisper_num_frames(160100) == 500  # 1000 mel frames: the hop rounds down
    assert whisper_num_frames(160160) == 501


@pytest.fixture(scope="module")
def outs(pad30, trim, batch):
    """Each mode's output for the batch, computed once."""
    return {"pad30": pad30.forward(*batch), "trim": trim.forward(*batch)}


@pytest.mark.parametrize("mode", ["pad30", "trim"])
def test_shapes(pad30, trim, outs, mode):
    up = pad30 if mode == "pad30" else trim
    assert (up.spec.num_layers, up.spec.dim) == (5, 384)
    assert up.pad_sensitive == (mode == "trim")
    out = outs[mode]
    assert [tuple(x.shape) for x in out] == [(5, whisper_num_frames(n), 384) for n in LENGTHS]
    assert [x.shape[1] for x in out] == [150, 149, 24]
    assert all(torch.isfinite(x).all() for x in out)


def test_states_match_hooks_and_stock_encoder(pad30, batch, outs):
    """State 0 = conv stack + positional embedding; states 1.. = raw block outputs, which
    forward hooks on encoder.blocks see; ln_post(last state) = the stock encoder output."""
    import whisper

    w, _ = batch
    mel = whisper.log_mel_spectrogram(w[0], n_mels=80, padding=480000 - w.shape[1])[None]
    enc = pad30.model.encoder
    seen = []
    handles = [b.register_forward_hook(lambda m, i, o: seen.append(o)) for b in enc.blocks]
    try:
        with torch.inference_mode():
            stock = enc(mel)
    finally:
        for h in handles:
            h.remove()
    with torch.inference_mode():
        ours = encoder_states(enc, mel)  # (L, 1, 1500, D)
        assert torch.allclose(ours[1:], torch.stack(seen), atol=1e-5)
        assert torch.allclose(enc.ln_post(ours[-1]), stock, atol=1e-5)
    # the upstream's pad30 output is the start of that (audio zero-padded to 30 s, batched)
    out = outs["pad30"][0]
    assert torch.allclose(out, ours[:, 0, : out.shape[1]], atol=1e-4)


def test_pad30_is_batch_independent(pad30, batch, outs):
    w, _ = batch
    n = LENGTHS[-1]  # the most padded one in the batch
    alone = pad30.forward(w[-1:, :n], torch.tensor([n]))[0]
    assert (alone - outs["pad30"][-1]).abs().max() < 1e-4


def test_trim_is_close_to_pad30(outs):
    """Slicing the positional embedding keeps the states close (cosine per state)."""
    a, b = outs["pad30"][0], outs["trim"][0]  # the longest: no padding inside the trim batch
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).mean(-1)  # (L,)
    assert cos[0] > 0.999 and (cos > 0.9).all(), cos


def test_long_audio_uses_30s_windows(trim):
    n = 480000 + 16000  # 31 s: one full window + 1 s
    w = 0.05 * torch.randn(1, n, generator=torch.Generator().manual_seed(1))
    out = trim.forward(w, torch.tensor([n]))[0]
    assert out.shape == (5, 1500 + 50, 384) and out.shape[1] == whisper_num_frames(n)
    tail = trim.forward(w[:, 480000:], torch.tensor([16000]))[0]
    assert torch.allclose(out[:, 1500:], tail, atol=1e-5)
