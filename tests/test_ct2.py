"""CTranslate2 -> openai-whisper conversion: exact round trip, the offline packages, real weights."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest
import torch

from pipeline.upstreams import load_upstream, resolve_spec
from pipeline.upstreams.ct2 import (
    converted_checkpoint,
    offline_parts,
    read_ct2_model,
)

SENTENCE = "Please ask her to bring these things with her from the store. The dog ran to the park."


def _write_ct2(model, path) -> None:
    """Write a whisper model as a CTranslate2 WhisperSpec dir (the layout ct2.py documents)."""
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    var: dict[str, np.ndarray] = {}

    def ln(src, dst):
        var[f"{dst}/gamma"], var[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def lin(src, dst):
        var[f"{dst}/weight"], var[f"{dst}/bias"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def attn(src, dst, fused):
        q, k, v = (sd[f"{src}.{n}.weight"] for n in ("query", "key", "value"))
        qb, vb = sd[f"{src}.query.bias"], sd[f"{src}.value.bias"]
        kb = np.zeros_like(qb)
        if fused:
            var[f"{dst}/linear_0/weight"] = np.concatenate([q, k, v])
            var[f"{dst}/linear_0/bias"] = np.concatenate([qb, kb, vb])
            lin(f"{src}.out", f"{dst}/linear_1")
        else:
            var[f"{dst}/linear_0/weight"], var[f"{dst}/linear_0/bias"] = q, qb
            var[f"{dst}/linear_1/weight"] = np.concatenate([k, v])
            var[f"{dst}/linear_1/bias"] = np.concatenate([kb, vb])
            lin(f"{src}.out", f"{dst}/linear_2")

    def ffn(src, dst):
        ln(f"{src}.mlp_ln", f"{dst}/layer_norm")
        lin(f"{src}.mlp.0", f"{dst}/linear_0")
        lin(f"{src}.mlp.2", f"{dst}/linear_1")

    d = model.dims
    for c in ("conv1", "conv2"):
        lin(f"encoder.{c}", f"encoder/{c}")
    var["encoder/position_encodings/encodings"] = sd["encoder.positional_embedding"]
    var["encoder/num_heads"] = np.array(d.n_audio_head, dtype=np.int16)
    for i in range(d.n_audio_layer):
        ln(f"encoder.blocks.{i}.attn_ln", f"encoder/layer_{i}/self_attention/layer_norm")
        attn(f"encoder.blocks.{i}.attn", f"encoder/layer_{i}/self_attention", True)
        ffn(f"encoder.blocks.{i}", f"encoder/layer_{i}/ffn")
    ln("encoder.ln_post", "encoder/layer_norm")
    var["decoder/embeddings/weight"] = sd["decoder.token_embedding.weight"]
    var["decoder/position_encodings/encodings"] = sd["decoder.positional_embedding"]
    var["decoder/num_heads"] = np.array(d.n_text_head, dtype=np.int16)
    for i in range(d.n_text_layer):
        s, t = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        ln(f"{s}.attn_ln", f"{t}/self_attention/layer_norm")
        attn(f"{s}.attn", f"{t}/self_attention", True)
        ln(f"{s}.cross_attn_ln", f"{t}/attention/layer_norm")
        attn(f"{s}.cross_attn", f"{t}/attention", False)
        ffn(s, f"{t}/ffn")
    ln("decoder.ln", "decoder/layer_norm")
    # half of the float variables as float16, to cover both dtypes
    for j, name in enumerate(sorted(var)):
        if var[name].dtype == np.float32 and j % 2:
            var[name] = var[name].astype(np.float16)

    def string(s: str) -> bytes:
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    dtype_id = {np.float32: 0, np.int8: 1, np.int16: 2, np.int32: 3, np.float16: 4}
    out = [struct.pack("<I", 6), string("WhisperSpec"), struct.pack("<II", 3, len(var))]
    for name in sorted(var):
        a = np.ascontiguousarray(var[name])
        out += [string(name), struct.pack("<B", a.ndim), struct.pack(f"<{a.ndim}I", *a.shape)]
        out += [struct.pack("<BI", dtype_id[a.dtype.type], a.nbytes), a.tobytes()]
    out += [
        struct.pack("<I", 1),
        string("decoder/projection/weight"),
        string("decoder/embeddings/weight"),
    ]
    path.mkdir()
    (path / "model.bin").write_bytes(b"".join(out))
    (path / "config.json").write_text(json.dumps({"suppress_ids": []}))


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SFM_PIPELINE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_round_trip_is_exact(tmp_path, home):
    import whisper
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(80, 1500, 16, 2, 2, 100, 24, 16, 2, 2)
    torch.manual_seed(0)
    model = Whisper(dims)
    for p in model.parameters():  # default init leaves zeros/ones; make every weight distinct
        torch.nn.init.normal_(p, std=0.1)
    ref = {k: v.half().float() for k, v in model.state_dict().items()}  # fp16-representable
    model.load_state_dict(ref)
    _write_ct2(model, tmp_path / "ct2")

    ckpt_path = converted_checkpoint(tmp_path / "ct2")
    assert ckpt_path.parent == home / "whisper"
    loaded = whisper.load_model(str(ckpt_path))
    assert vars(loaded.dims) == vars(dims)
    got = loaded.state_dict()
    assert set(got) == set(ref)
    for k in ref:
        assert torch.equal(got[k].float(), ref[k]), k
    stamp = ckpt_path.stat().st_mtime_ns
    assert converted_checkpoint(tmp_path / "ct2") == ckpt_path  # reused, not rewritten
    assert ckpt_path.stat().st_mtime_ns == stamp

    spec = resolve_spec(str(tmp_path / "ct2"))
    assert (spec.family, spec.num_layers, spec.dim) == ("whisper", 3, 16)
    up = load_upstream(str(tmp_path / "ct2"), whisper_mode="trim")
    assert up.forward(torch.randn(1, 8000), torch.tensor([8000]))[0].shape == (3, 25, 16)
    assert resolve_spec(str(ckpt_path)).num_layers == 3  # the .pt path form too


def test_corrupt_file_names_itself(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(struct.pack("<I", 6) + b"\x05\x00Wh")
    with pytest.raises(ValueError, match="model.bin"):
        read_ct2_model([bad])


@pytest.mark.parametrize(
    "name,layers,width,vocab", [("whisper_tiny_en", 4, 384, 51864), ("whisper_base", 6, 512, 51865)]
)
def test_offline_packages(name, layers, width, vocab):
    """The PyPI packages hold tiny.en and base (told apart by vocabulary size)."""
    spec_name, v = read_ct2_model(offline_parts(name), load_data=False)  # header scan only
    assert spec_name == "WhisperSpec"
    assert v["decoder/embeddings/weight"] == (vocab, width)
    assert sum(1 for k in v if re.fullmatch(r"encoder/layer_\d+/ffn/linear_0/bias", k)) == layers


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """SENTENCE spoken by eSpeak NG, resampled to 16 kHz."""
    import soundfile as sf
    import torchaudio.functional as AF

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")
    wav = tmp_path_factory.mktemp("speech") / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), SENTENCE], check=True, capture_output=True)
    w, sr = sf.read(wav, dtype="float32")
    return AF.resample(torch.from_numpy(w), sr, 16000)


@pytest.mark.parametrize("name", ["whisper_tiny_en", "whisper_base"])
def test_converted_weights_transcribe_english(speech, name):
    """The converted weights are real: Whisper's own greedy decoding gets the words right."""
    import jiwer
    import whisper

    up = load_upstream(name)
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(speech), n_mels=up.n_mels)
    opts = whisper.DecodingOptions(
        language="en", temperature=0.0, fp16=False, without_timestamps=True
    )
    text = whisper.decode(up.model, mel, opts).text
    wer = jiwer.wer(_words(SENTENCE), _words(text))
    print(f"{name}: WER {wer:.3f} — {text!r}")
    assert wer < 0.5, text
