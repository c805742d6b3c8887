"""`FeatureSource`: what stage two and the analysis code need from a store of features.

`StoreReader` follows it; so do test fakes and any other backend (a folder of .npy files, a
database) that should feed the loader. Shapes: T frames, L stored states, D width.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FeatureSource(Protocol):
    """Per-utterance hidden states by id, read-only."""

    path: str  # where it lives (named in messages)
    ids: list[str]  # every utterance it holds
    fingerprint: dict  # what produced it (upstream, weights, manifest, encoding, layers, ...)
    encoding: str  # fp16 | int8 | fp8
    layers: list[int]  # the upstream's states it holds, in stored order (L of them)
    num_layers: int  # L
    dim: int  # D
    frame_rate: float  # frames per second
    scales: np.ndarray | None  # (L, D) float32 for 8-bit sources, else None

    def length(self, uid: str) -> int:
        """T of utterance `uid`."""
        ...

    def __contains__(self, uid: object) -> bool: ...

    def __len__(self) -> int: ...

    def __getitem__(self, uid: str) -> np.ndarray:
        """(T, L, D) float16 states of `uid`."""
        ...

    def raw(self, uid: str) -> np.ndarray:
        """(T, L, D) stored values (float16, or int8 / uint8 fp8 bits for 8-bit sources)."""
        ...
