"""Test doubles shared by the test modules (one definition each)."""

from __future__ import annotations

import numpy as np


class FakeStore:
    """The store reader API (ids, length, `in`, [uid] -> (T, L, D), fingerprint) over a dict
    of (T, L, D) arrays, for tests of the loader and the analysis code."""

    def __init__(self, arrays: dict, frame_rate: float = 50.0, path: str = "fake.zarr"):
        self.arrays, self.frame_rate, self.path = arrays, frame_rate, path
        first = next(iter(arrays.values()))
        self.num_layers, self.dim = first.shape[1], first.shape[2]
        self.ids = list(arrays)
        self.fingerprint = {
            "num_layers": self.num_layers,
            "dim": self.dim,
            "frame_rate": frame_rate,
        }

    def length(self, uid: str) -> int:
        return len(self.arrays[uid])

    def __contains__(self, uid: object) -> bool:
        return uid in self.arrays

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, uid: str) -> np.ndarray:
        return self.arrays[uid]

    def get_many(self, uids: list[str]) -> list[np.ndarray]:
        return [self[u] for u in uids]
