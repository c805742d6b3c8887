"""WavLM, HuBERT and Data2Vec (audio) through transformers, with every hidden state.

Hidden states follow s3prl's definition (upstream/{hubert,wavlm,data2vec}/expert.py hooks the
*input* of every transformer layer plus the encoder output):

  state 0      CNN -> feature projection -> + positional conv; then, for post-LN models (all
               base models, Data2Vec large), the encoder LayerNorm; for pre-LN
               ("stable layer norm": WavLM/HuBERT large) no LayerNorm, as in fairseq.
  state i      the output of transformer layer i (= the input of layer i + 1), i < N
  state N      the encoder output: the last layer's output, after the final LayerNorm for
               pre-LN models (fairseq applies it there too), so L = N + 1 (13 base, 25 large).

transformers 4.x and 5.x (both supported, pyproject: ``transformers>=4.48``): states 0 .. N-1 are
``hidden_states[:-1]`` with ``output_hidden_states=True`` in both. State N is not: 4.x appends the
encoder output (after the final LayerNorm for pre-LN), 5.x records the raw output of the last
layer (its ``capture_outputs(tie_last_hidden_states=False)`` hooks), i.e. *before* that
LayerNorm. So state N is taken from the encoder module's own output (a forward hook on
``model.encoder``), the same in both, and the count is checked (L = N + 1). Random
initialisation differs between the majors (5.x rewrote ``_init_weights``): the same seed gives
other weights, and ``weights_hash`` tells them apart; saved weights load in either major and
give the same states (tests/test_transformers_majors.py). ``from_pretrained`` takes the dtype
as ``dtype`` from 4.56 on (5.x deprecates ``torch_dtype``): see ``dtype_kwargs``.

Frames: the model's own conv length formula ``_get_feat_extract_output_lengths`` (16 kHz ->
≈ 49.75 Hz: 3 s -> 149 frames, 10 s -> 499).

Padding: a batch is zero-padded and an attention mask is passed, yet wav2vec2-base-family CNNs
(``feat_extract_norm == "group"``: HuBERT/WavLM base) normalise each channel over the whole
padded time axis, and Data2Vec's 5-layer positional convolution spreads non-zero values into
the padded frames after its first layer; both change the valid frames of a padded utterance,
so those models are ``pad_sensitive`` (batch equal lengths). Pre-LN large WavLM/HuBERT
(layer-norm CNN, single positional conv over masked input) match unbatched to float noise.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.masks import frame_mask

from .base import UpstreamSpec, UpstreamUnavailable
from .hub import OFFLINE_ENV, HubMiss, from_hub
from .whisper import state_dict_hash

MODEL_TYPES = {"wavlm": "wavlm", "hubert": "hubert", "data2vec": "data2vec-audio"}


def _classes(family: str):
    from transformers import (
        Data2VecAudioConfig,
        Data2VecAudioModel,
        HubertConfig,
        HubertModel,
        WavLMConfig,
        WavLMModel,
    )

    table = {
        "wavlm": (WavLMConfig, WavLMModel),
        "hubert": (HubertConfig, HubertModel),
        "data2vec": (Data2VecAudioConfig, Data2VecAudioModel),
    }
    if family not in table:
        raise ValueError(f"unknown HF family {family!r}: choose one of {sorted(table)}")
    return table[family]


def is_pad_sensitive(config) -> bool:
    """True where zero padding in a batch changes an utterance's valid frames (see above)."""
    if config.model_type == "data2vec-audio":
        return True
    return getattr(config, "feat_extract_norm", "layer") == "group"


def default_normalize(config) -> bool:
    """Per-utterance waveform normalisation used in pre-training (fairseq task.normalize):
    off for HuBERT/WavLM base (group-norm CNN), on for large models and Data2Vec."""
    if config.model_type == "data2vec-audio":
        return True
    return getattr(config, "feat_extract_norm", "layer") == "layer"


def hf_spec(name: str, source: str, config, normalize: bool | None = None) -> UpstreamSpec:
    """Spec of a transformers speech model from its config (no weights needed)."""
    if normalize is None:
        normalize = default_normalize(config)
    return UpstreamSpec(
        name=name,
        family="hf",
        source=source,
        sample_rate=16000,
        frame_rate=50.0,
        num_layers=config.num_hidden_layers + 1,
        dim=config.hidden_size,
        extra={"model_type": config.model_type, "normalize": bool(normalize)},
    )


def read_local_normalize(path: Path) -> bool | None:
    """do_normalize from a local HF dir's preprocessor_config.json, if it has one."""
    pre = Path(path) / "preprocessor_config.json"
    if pre.is_file():
        return bool(json.loads(pre.read_text()).get("do_normalize", False))
    return None


class HFUpstream:
    """A frozen transformers WavLM/HuBERT/Data2VecAudio model returning all hidden states."""

    def __init__(
        self,
        spec: UpstreamSpec,
        model: torch.nn.Module,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.spec, self.device, self.dtype = spec, torch.device(device), dtype
        self.model = model.to(self.device, dtype).eval().requires_grad_(False)  # frozen
        self.normalize = bool(spec.extra.get("normalize", default_normalize(model.config)))
        self.pad_sensitive = is_pad_sensitive(model.config)
        self._hash: str | None = None

    def num_frames(self, num_samples: int) -> int:
        n = self.model._get_feat_extract_output_lengths(torch.tensor(int(num_samples)))
        return max(int(n), 0)

    def weights_hash(self) -> str:
        """sha256 over the state dict (names, dtypes, shapes, bytes), first 16 hex; cached."""
        if self._hash is None:
            self._hash = state_dict_hash(self.model.state_dict())
        return self._hash

    def save_pretrained(self, path: str | Path) -> Path:
        """Write a local HF directory that load_upstream(path) loads back (config, weights,
        and a preprocessor_config.json carrying do_normalize)."""
        path = Path(path)
        self.model.save_pretrained(path)
        pre = {
            "do_normalize": self.normalize,
            "sampling_rate": 16000,
            "return_attention_mask": True,
        }
        (path / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
        return path

    @torch.inference_mode()
    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """waveforms: (B, S) float at 16 kHz, zero-padded; lengths: (B,) samples.

        Returns B tensors (L, T_i, D), T_i = num_frames(lengths[i]), in self.dtype on self.device.
        """
        x = waveforms.to(self.device, torch.float32)
        lengths = torch.as_tensor(lengths, device=self.device).long()
        B, S = x.shape
        valid = frame_mask(lengths.to(self.device), S)  # (B, S)
        if self.normalize:  # per-utterance zero mean, unit variance over its own samples
            x = torch.stack(
                [
                    F.pad(F.layer_norm(x[b, :n], (int(n),)), (0, S - int(n)))
                    for b, n in enumerate(lengths)
                ]
            )
        x = x * valid
        mask = None if bool(valid.all()) else valid.long()
        states = all_hidden_states(self.model, x.to(self.dtype), mask)  # (L, B, T, D)
        frames = self.model._get_feat_extract_output_lengths(lengths)
        return [states[:, b, : int(t)] for b, t in enumerate(frames)]


def all_hidden_states(
    model: torch.nn.Module, x: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """(L, B, T, D): the inputs of the N transformer layers, then the encoder output (see the
    module docstring), identical under transformers 4.x and 5.x."""
    captured: list[torch.Tensor] = []

    def keep(module: torch.nn.Module, args: tuple, output) -> None:
        captured.append(output[0])  # BaseModelOutput (or a tuple): last_hidden_state first

    handle = model.encoder.register_forward_hook(keep)
    try:
        with warnings.catch_warnings():  # WavLM mixes a bool padding mask with a float bias
            warnings.filterwarnings("ignore", message=".*mismatched key_padding_mask")
            out = model(x, attention_mask=attention_mask, output_hidden_states=True)
    finally:
        handle.remove()
    n = model.config.num_hidden_layers
    if len(out.hidden_states) != n + 1 or len(captured) != 1:
        raise RuntimeError(
            f"{type(model).__name__}: transformers returned {len(out.hidden_states)} hidden "
            f"states and {len(captured)} encoder outputs for {n} layers (expected {n + 1} and 1)"
        )
    return torch.stack([*out.hidden_states[:-1], captured[0]])


def dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """The ``from_pretrained`` keyword for the weights' dtype: ``dtype`` from transformers 4.56
    on (5.x warns on ``torch_dtype``), ``torch_dtype`` before."""
    import transformers
    from packaging.version import Version

    new = Version(transformers.__version__).release >= (4, 56)
    return {"dtype" if new else "torch_dtype": dtype}


def _seeded_init(model_cls, config, seed: int) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_cls(config).eval()


def tiny_random_hf(
    family: str,
    num_layers: int = 2,
    hidden: int = 32,
    heads: int = 2,
    large_style: bool = False,
    seed: int = 0,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> HFUpstream:
    """A tiny random WavLM/HuBERT/Data2Vec for tests (no hub): L = num_layers + 1, D = hidden.

    The CNN keeps the real kernels and strides (so frames = the real formula, ≈ 50 Hz) with
    `hidden` channels. large_style=True builds the large-model variant (layer-norm CNN,
    pre-LN "stable layer norm" encoder) for WavLM/HuBERT. Deterministic for a given seed.
    """
    config_cls, model_cls = _classes(family)
    kw = dict(
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        conv_dim=(hidden,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        layerdrop=0.0,
        mask_time_prob=0.0,
    )
    if family == "data2vec":
        kw.update(num_conv_pos_embeddings=2, conv_pos_kernel_size=5)  # 2 pos-conv layers
    elif large_style:
        kw.update(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    config = config_cls(**kw)
    size = "large" if large_style else "tiny"
    spec = hf_spec(f"tiny_random_{family}", f"random:{family}:{size}:{seed}", config)
    return HFUpstream(spec, _seeded_init(model_cls, config, seed), device, dtype)


def base_sized_random_hf(
    family: str,
    size: str = "base",
    seed: int = 0,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> HFUpstream:
    """The real base (13 × 768) or large (25 × 1024) architecture with random weights, for
    benchmarks where the hub is out of reach. Speed matches the real model; states do not."""
    config_cls, model_cls = _classes(family)
    kw: dict = dict(layerdrop=0.0, mask_time_prob=0.0)
    if size == "large":
        kw.update(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16)
        kw.update(intermediate_size=4096)
        if family != "data2vec":
            kw.update(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    elif size != "base":
        raise ValueError(f"size {size!r}: choose 'base' or 'large'")
    config = config_cls(**kw)
    spec = hf_spec(f"random_{family}_{size}", f"random:{family}:{size}:{seed}", config)
    return HFUpstream(spec, _seeded_init(model_cls, config, seed), device, dtype)


def load_hf(spec: UpstreamSpec, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """Load spec.source (a hub id or a local HF directory) with transformers.AutoModel: from
    the local cache, else from the hub if it can be reached (pipeline/upstreams/hub.py)."""
    from transformers import AutoModel

    try:
        model = from_hub(AutoModel.from_pretrained, spec.source, **dtype_kwargs(dtype))
    except HubMiss as e:
        raise UpstreamUnavailable(
            f"upstream `{spec.name}` ({spec.source}) is not in the Hugging Face cache and {e}; "
            f"fetch it once with network access ({OFFLINE_ENV} unset) or pass a local HF directory"
        ) from None
    return HFUpstream(spec, model, device, dtype)
