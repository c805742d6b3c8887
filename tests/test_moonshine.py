"""Moonshine base (moonshine-cpp's .ort encoder -> transformers) and its fusion with Whisper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.audio import load_audio, write_wav
from pipeline.data.manifest import Utterance, write_manifest
from pipeline.extract.engine import ExtractConfig, run
from pipeline.interfaces import build
from pipeline.store import open_store
from pipeline.upstreams import REGISTRY, load_upstream
from pipeline.upstreams.moonshine import (
    FRAME_RATE,
    MIN_SAMPLES,
    OFFLINE_MOONSHINE,
    MoonshineUpstream,
    convert_ort_encoder,
    converted_encoder_dir,
    encoder_states,
    load_moonshine_encoder,
    moonshine_num_frames,
    offline_ort,
)
from pipeline.upstreams.ort_format import OrtFormatError, read_ort_graph, to_onnx_bytes

NAME = "moonshine_base_en"
REL_TOL = 1e-4  # max |converted - onnxruntime| / max |onnxruntime|, per state (measured ≤ 2.2e-5)


@pytest.fixture(scope="module")
def up() -> MoonshineUpstream:
    """A fresh conversion of the packaged .ort encoder (not the cached one)."""
    from transformers import MoonshineConfig

    encoder = convert_ort_encoder(offline_ort(NAME), MoonshineConfig(**OFFLINE_MOONSHINE[NAME][2]))
    return MoonshineUpstream(REGISTRY[NAME], encoder)


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """3 s of real English speech (the recording moonshine-cpp ships for its own test)."""
    wav = Path(offline_ort(NAME)).parents[2] / "test-data" / "beckett.wav"
    return torch.from_numpy(load_audio(wav))[: 3 * 16000]


def test_spec_and_frame_formula():
    spec = REGISTRY[NAME]
    assert (spec.family, spec.num_layers, spec.dim, spec.sample_rate) == (
        "moonshine",
        9,
        416,
        16000,
    )
    assert spec.frame_rate == FRAME_RATE == 16000 / (64 * 3 * 2)  # 41.67 Hz
    assert moonshine_num_frames(16000) == 40
    assert moonshine_num_frames(MIN_SAMPLES - 1) == 0 and moonshine_num_frames(MIN_SAMPLES) == 1
    for s in (MIN_SAMPLES, 16000, 48000, 123_457):  # direct count of the three valid convs
        n = s
        for k, st in ((127, 64), (7, 3), (3, 2)):
            n = len(range(0, n - k + 1, st))
        assert moonshine_num_frames(s) == n == (s - 895) // 384 + 1  # receptive field 895


def test_states_match_onnxruntime_on_the_original_graph(up, speech):
    """Every state equals the same value inside the original graph, run by onnxruntime."""
    import onnxruntime as ort

    path = offline_ort(NAME)
    graph = read_ort_graph(path)
    inside = ["/Transpose_output_0"] + [f"/layers.{i}/Add_1_output_0" for i in range(8)]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    cpu = ["CPUExecutionProvider"]
    x = speech[None].numpy()
    refs = ort.InferenceSession(to_onnx_bytes(graph, inside), opts, providers=cpu).run(
        inside, {"input_values": x}
    )
    (original,) = ort.InferenceSession(str(path), opts, providers=cpu).run(
        None, {"input_values": x}
    )
    (states,) = up.forward(speech[None], torch.tensor([len(speech)]))  # (9, T, 416)
    assert states.shape == (9, moonshine_num_frames(len(speech)), 416) == (9, 123, 416)
    for i, ref in enumerate(refs):
        err = np.abs(states[i].numpy() - ref[0]).max() / np.abs(ref[0]).max()
        print(f"state {i}: max |diff| / max |ref| = {err:.2e}")
        assert err < REL_TOL, f"state {i}"
    # the model's own output (the .ort file as shipped) = final layer_norm of the last state
    with torch.no_grad():
        last = up.encoder.layer_norm(states[-1]).numpy()
    assert np.abs(last - original[0]).max() < REL_TOL * np.abs(original).max()


def test_batch_equals_each_utterance_alone(up, speech):
    lengths = [len(speech), 20000, 7001, MIN_SAMPLES]
    w = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        w[i, :n] = speech[i * 4000 : i * 4000 + n]
    out = up.forward(w, torch.tensor(lengths))
    for i, n in enumerate(lengths):
        (alone,) = up.forward(w[i : i + 1, :n], torch.tensor([n]))
        assert out[i].shape == alone.shape == (9, moonshine_num_frames(n), 416)
        assert (out[i] - alone).abs().max() < REL_TOL * alone.abs().max()
    with pytest.raises(ValueError, match="shorter than Moonshine"):
        up.forward(w[:1], torch.tensor([MIN_SAMPLES - 1]))


def test_cached_conversion_loads_back_and_is_reused(tmp_path, monkeypatch, up):
    monkeypatch.setenv("SFM_PIPELINE_HOME", str(tmp_path / "home"))
    d = converted_encoder_dir(NAME)
    assert d == tmp_path / "home" / "moonshine" / NAME and (d / "config.json").is_file()
    stamp = (d / "config.json").stat().st_mtime_ns
    assert converted_encoder_dir(NAME) == d and (d / "config.json").stat().st_mtime_ns == stamp
    loaded = load_upstream(NAME)
    assert isinstance(loaded, MoonshineUpstream) and loaded.weights_hash() == up.weights_hash()
    assert load_upstream(str(d)).spec.num_layers == 9  # the saved directory works as --model


def test_corrupt_ort_names_itself(tmp_path):
    bad = tmp_path / "encoder_model.ort"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(OrtFormatError, match="encoder_model.ort"):
        read_ort_graph(bad)


def test_extract_a_tiny_store(tmp_path, up, speech):
    """pipeline.extract.engine writes the 9 x 416 states at 41.7 Hz; a too-short clip is a failure."""
    data = tmp_path / "d"
    utts = []
    for i, n in enumerate([16000, 11000, 9000, 600]):
        p = write_wav(data / f"u{i}.wav", speech[i * 8000 : i * 8000 + n].numpy())
        utts.append(Utterance(f"u{i}", str(p.resolve()), n / 16000, 16000, "train"))
    write_manifest(data / "train.jsonl", utts)
    out = tmp_path / "m.zarr"
    cfg = ExtractConfig(NAME, str(data), str(out), device="cpu", progress=False, batch_seconds=4.0)
    res = run(cfg, upstream=up)
    assert [f["id"] for f in res.failed] == ["u3"] and "shorter" in res.failed[0]["reason"]
    r = open_store(out)
    assert r.complete and sorted(r.ids) == ["u0", "u1", "u2"]
    assert (r.num_layers, r.dim, r.frame_rate) == (9, 416, FRAME_RATE)
    for u in utts[:3]:
        wav = torch.from_numpy(load_audio(u.path))
        (ref,) = up.forward(wav[None], torch.tensor([len(wav)]))  # (L, T, D)
        x = np.asarray(r[u.id], dtype=np.float32)  # (T, L, D) float16
        assert x.shape == (moonshine_num_frames(len(wav)), 9, 416)
        ref = ref.transpose(0, 1).numpy()
        assert np.abs(x - ref).max() <= 2e-3 * np.abs(ref).max()  # float16 storage


@pytest.mark.parametrize("name", ["hconv", "ws"])
def test_fusion_with_whisper_base_aligns_and_trains(up, speech, name):
    """Moonshine (41.7 Hz, 9 x 416) + Whisper base (50 Hz, 7 x 512) through one interface."""
    whisper = load_upstream("whisper_base", whisper_mode="trim")
    lengths = torch.tensor([len(speech), 30000])
    w = torch.zeros(2, len(speech))
    w[0], w[1, :30000] = speech, speech[5000:35000]
    feats, lens = [], []
    for model in (up, whisper):
        outs = [model.forward(w[i : i + 1, : int(n)], n[None])[0] for i, n in enumerate(lengths)]
        lens.append(torch.tensor([o.shape[1] for o in outs]))
        x = torch.zeros(2, outs[0].shape[0], int(lens[-1].max()), outs[0].shape[-1])
        for i, o in enumerate(outs):
            x[i, :, : o.shape[1]] = o
        feats.append(x)  # (B, L, T, D)
    assert feats[0].shape == (2, 9, 123, 416) and feats[1].shape == (2, 7, 150, 512)
    rates = [up.spec.frame_rate, whisper.spec.frame_rate]
    itf = build(name, [(9, 416), (7, 512)], frame_rates=rates)
    out, out_lens = itf(feats, lens)
    assert out_lens.tolist() == lens[1].tolist() == [150, 94]  # Whisper's 50 Hz is the reference
    assert out.shape == (2, 150, itf.out_dim)
    head = torch.nn.Linear(itf.out_dim, 5)
    params = [p for p in itf.parameters() if p.requires_grad] + list(head.parameters())
    before = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=1e-3)
    mask = torch.arange(150)[None, :] < out_lens[:, None]
    target = torch.randint(0, 5, (2, 150), generator=torch.Generator().manual_seed(0))
    loss = torch.nn.functional.cross_entropy(head(out)[mask], target[mask])
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in params)
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, params, strict=True))


def test_encoder_states_stock_forward_agrees(up, speech):
    """Unpadded, the states' last + layer_norm is transformers' own MoonshineEncoder output."""
    x = speech[None, :20000]
    with torch.no_grad():
        states = encoder_states(up.encoder, x, torch.tensor([20000]))
        stock = up.encoder(x).last_hidden_state
    torch.testing.assert_close(up.encoder.layer_norm(states[-1]), stock)


def test_load_from_missing_dir_says_what(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_moonshine_encoder(str(tmp_path))


@pytest.mark.parametrize("flat", [False, True])
def test_config_written_by_either_major_reads_alike(tmp_path, flat):
    """transformers 5 writes the rotary settings only as rope_parameters, which 4.x ignores (it
    would fall back to partial_rotary_factor 0.9); moonshine_config reads both forms right."""
    import json

    from transformers import MoonshineConfig
    from transformers.models.moonshine.modeling_moonshine import MoonshineEncoder

    from pipeline.upstreams.moonshine import moonshine_config, write_portable_config

    MoonshineConfig(**OFFLINE_MOONSHINE[NAME][2]).save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    rope = {"rope_theta": 10000.0, "partial_rotary_factor": 0.62, "rope_type": "default"}
    for key in ("rope_theta", "partial_rotary_factor", "rope_scaling"):
        raw.pop(key, None)
    (tmp_path / "config.json").write_text(json.dumps({**raw, "rope_parameters": rope}))  # as 5.x
    if flat:
        write_portable_config(tmp_path)
        raw = json.loads((tmp_path / "config.json").read_text())
        assert (raw["rope_theta"], raw["partial_rotary_factor"]) == (10000.0, 0.62)
    encoder = MoonshineEncoder(moonshine_config(tmp_path))
    assert encoder.rotary_emb.inv_freq.numel() == 16  # int(52 * 0.62) = 32 rotated dims
