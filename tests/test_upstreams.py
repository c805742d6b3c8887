"""Registry and Hugging Face upstreams (tiny random models; no hub)."""

from __future__ import annotations

import pytest
import torch

from pipeline.upstreams import REGISTRY, load_upstream, resolve_spec, tiny_random_hf
from pipeline.upstreams.hf import base_sized_random_hf

EXPECTED = {
    "hubert_base": (13, 768, "facebook/hubert-base-ls960"),
    "wavlm_base_plus": (13, 768, "microsoft/wavlm-base-plus"),
    "data2vec_base": (13, 768, "facebook/data2vec-audio-base"),
    "wavlm_large": (25, 1024, "microsoft/wavlm-large"),
    "data2vec_large": (25, 1024, "facebook/data2vec-audio-large"),
    "whisper_small": (13, 768, "small"),
    "whisper_small_en": (13, 768, "small.en"),
    "whisper_medium": (25, 1024, "medium"),
    "whisper_medium_en": (25, 1024, "medium.en"),
    "whisper_tiny_en": (5, 384, None),
    "whisper_base": (7, 512, None),
}
FAMILIES = [
    ("wavlm", False),
    ("hubert", False),
    ("data2vec", False),
    ("wavlm", True),
    ("hubert", True),
]


def conv_frames(n: int) -> int:
    """The wav2vec2-family CNN: kernels (10,3,3,3,3,2,2), strides (5,2,2,2,2,2,2)."""
    for k, s in zip((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2), strict=True):
        n = (n - k) // s + 1
    return n


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registry_names(name):
    spec = resolve_spec(name)
    L, D, source = EXPECTED[name]
    assert (spec.num_layers, spec.dim, spec.sample_rate, spec.frame_rate) == (L, D, 16000, 50.0)
    assert spec.family == ("whisper" if name.startswith("whisper") else "hf")
    if source is not None:
        assert spec.source == source
    assert spec is REGISTRY[name]


def test_unknown_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a model this pipeline reads"):
        resolve_spec(str(tmp_path))  # an existing directory without config.json


@pytest.fixture(scope="module")
def tiny_models():
    return {(f, large): tiny_random_hf(f, large_style=large) for f, large in FAMILIES}


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([16000, 9000, 4321])
    w = torch.zeros(3, 16000)
    for i, n in enumerate(lengths):
        w[i, :n] = 0.1 * torch.randn(int(n), generator=g)
    return w, lengths


@pytest.mark.parametrize("family,large", FAMILIES)
def test_states_and_frames(tiny_models, batch, family, large):
    up = tiny_models[(family, large)]
    w, lengths = batch
    out = up.forward(w, lengths)
    assert up.spec.num_layers == 3 and up.spec.dim == 32
    for x, n in zip(out, lengths, strict=True):
        assert x.shape == (3, conv_frames(int(n)), 32) == (3, up.num_frames(int(n)), 32)
    assert [up.num_frames(s) for s in (48000, 160000)] == [
        149,
        499,
    ]  # docs/BACKGROUND.md: 3 s -> 149, 10 s -> 499
    # last state == the encoder output transformers returns (after the final LN for pre-LN)
    x = torch.nn.functional.layer_norm(w[:1], (16000,)) if up.normalize else w[:1]
    with torch.inference_mode():
        ref = up.model(x, output_hidden_states=True)
    assert torch.allclose(out[0][-1], ref.last_hidden_state[0], atol=1e-5)


def test_post_ln_state0_is_layer_normed(tiny_models, batch):
    """Post-LN (base) models: state 0 is after the encoder LayerNorm (s3prl's layer input)."""
    x = tiny_models[("wavlm", False)].forward(*batch)[0][0]  # (T, D)
    assert torch.allclose(x.mean(-1), torch.zeros(x.shape[0]), atol=1e-4)
    assert torch.allclose(x.std(-1, unbiased=False), torch.ones(x.shape[0]), atol=1e-2)


def _max_batch_diff(up, w, lengths) -> float:
    batched = up.forward(w, lengths)
    diffs = []
    for i, n in enumerate(lengths.tolist()):
        alone = up.forward(w[i : i + 1, :n], torch.tensor([n]))[0]
        diffs.append((alone - batched[i]).abs().max().item())
    return max(diffs)


@pytest.mark.parametrize("family,large", FAMILIES)
def test_batched_vs_unbatched(tiny_models, batch, family, large):
    """Padded batches equal single utterances unless the model says pad_sensitive."""
    up = tiny_models[(family, large)]
    w, lengths = batch
    diff = _max_batch_diff(up, w, lengths)
    if up.pad_sensitive:
        assert diff > 1e-2  # the flag is warranted: padding really changes the states
    else:
        assert diff < 1e-4
    # equal lengths are always safe (what extraction does for pad-sensitive models)
    same = torch.stack([w[0], w[0].roll(1000)])
    assert _max_batch_diff(up, same, torch.tensor([16000, 16000])) < 1e-4


def test_pad_sensitivity_flags(tiny_models):
    flags = {k: up.pad_sensitive for k, up in tiny_models.items()}
    assert flags == {
        ("wavlm", False): True,
        ("hubert", False): True,
        ("data2vec", False): True,
        ("wavlm", True): False,
        ("hubert", True): False,
    }


def test_normalize_makes_output_scale_invariant(tiny_models, batch):
    w, lengths = batch
    d2v = tiny_models[("data2vec", False)]  # pre-trained with task.normalize
    hub = tiny_models[("hubert", False)]  # without
    assert d2v.normalize and not hub.normalize
    for up, invariant in ((d2v, True), (hub, False)):
        a, b = up.forward(w[:1], lengths[:1])[0], up.forward(3 * w[:1], lengths[:1])[0]
        assert torch.allclose(a, b, atol=1e-4) == invariant


def test_save_pretrained_round_trip(tiny_models, batch, tmp_path):
    up = tiny_models[("data2vec", False)]
    up.save_pretrained(tmp_path / "d2v")
    spec = resolve_spec(str(tmp_path / "d2v"))
    assert (spec.family, spec.num_layers, spec.dim) == ("hf", 3, 32)
    assert spec.extra["normalize"] is True
    again = load_upstream(str(tmp_path / "d2v"))
    assert again.weights_hash() == up.weights_hash()
    for a, b in zip(again.forward(*batch), up.forward(*batch), strict=True):
        assert torch.equal(a, b)


def test_weights_hash_depends_on_weights():
    a, b = tiny_random_hf("hubert", seed=0), tiny_random_hf("hubert", seed=1)
    assert a.weights_hash() == tiny_random_hf("hubert", seed=0).weights_hash()
    assert a.weights_hash() != b.weights_hash() and len(a.weights_hash()) == 16


def test_base_sized_random_has_real_shape():
    up = base_sized_random_hf("hubert")
    assert (up.spec.num_layers, up.spec.dim, up.pad_sensitive) == (13, 768, True)
    n_params = sum(p.numel() for p in up.model.parameters())
    assert 90e6 < n_params < 100e6  # HuBERT Base: 94.4 M
