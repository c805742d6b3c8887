"""The upstream contract: a frozen speech model that returns all of its hidden states."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from pipeline.errors import UserError


class UpstreamError(UserError, ValueError):
    """A --model that names no usable upstream (an unreadable file, a wrong shape or kind)."""


class UpstreamUnavailable(UserError, OSError):
    """An upstream whose weights cannot be had here (no network, nothing in the cache)."""


@dataclass(frozen=True)
class UpstreamSpec:
    """What a registry name (or a path given as --model) stands for."""

    name: str  # registry name users type, e.g. "wavlm_base_plus", or the path/hub id given
    # "hf" (WavLM/HuBERT/Data2Vec via transformers) | "whisper" (openai-whisper) |
    # "moonshine" (transformers' MoonshineEncoder, converted from moonshine-cpp's ORT file)
    family: str
    source: str  # hub id, local HF dir, openai-whisper checkpoint (.pt) or CTranslate2 dir
    sample_rate: int  # input audio rate, Hz (16 000 for every model here)
    frame_rate: float  # hidden-state frames per second (50; Moonshine base 16000 / 384 = 41.67)
    num_layers: int  # L: number of hidden states stored (13 for base SSL models)
    dim: int  # D: width of each hidden state
    extra: dict = field(default_factory=dict, hash=False, compare=False)  # family-specific


class Upstream(Protocol):
    """Implemented by hf.HFUpstream and whisper.WhisperUpstream; built by registry.load_upstream."""

    spec: UpstreamSpec
    pad_sensitive: bool  # True: zero padding in a batch changes states; batch equal lengths

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """waveforms: (B, S) float32 at spec.sample_rate, zero-padded; lengths: (B,) samples.

        Returns one (L, T_i, D) tensor per utterance with padding frames removed, on the
        upstream's device in its dtype (T_i = num_frames(lengths[i])).
        """
        ...

    def num_frames(self, num_samples: int) -> int:
        """Frames this upstream emits for an utterance of `num_samples` samples."""
        ...

    def weights_hash(self) -> str:
        """First 16 hex digits of a sha256 over the state dict (for store fingerprints)."""
        ...
