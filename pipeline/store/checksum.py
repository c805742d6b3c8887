"""Checksums the commit records: crc32 of every frame chunk (its C·L·D values as stored, the
tail chunk zero-padded to C rows) and of each committed index array."""

from __future__ import annotations

import json
import zlib

import numpy as np
import zarr

ALGORITHM = "crc32"


def index_checksums(ids: list[str], offsets, lengths) -> dict[str, int]:
    """crc32 of each committed index array (ids as their JSON list, the others as int64 LE)."""
    return {
        "ids": zlib.crc32(json.dumps([str(x) for x in ids]).encode()),
        "offsets": zlib.crc32(np.asarray(offsets, dtype="<i8").tobytes()),
        "lengths": zlib.crc32(np.asarray(lengths, dtype="<i8").tobytes()),
    }


def padded_chunk(frames: zarr.Array, c: int) -> np.ndarray:
    """Frame chunk c read through zarr, zero-padded to its full (C, L, D)."""
    C = int(frames.chunks[0])
    x = np.ascontiguousarray(frames[c * C : (c + 1) * C])
    if len(x) < C:
        x = np.concatenate([x, np.zeros((C - len(x), *x.shape[1:]), x.dtype)])
    return x
