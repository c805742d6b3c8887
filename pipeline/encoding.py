"""How a feature store encodes hidden states: fp16 (default), int8, or fp8 (e4m3) bytes.

Legend: T frames, L stored hidden states, D width.

- ``fp16``: the states as float16 (2 bytes a value). No scales.
- ``int8``: symmetric linear quantisation with one scale per (layer, channel):
  ``q = clip(rint(x / s), -127, 127)`` stored as int8, decoded as ``x' = q * s``.
- ``fp8``: ``x / s`` saturated to ±448 and rounded to float8 e4m3 (``torch.float8_e4m3fn``,
  round to nearest even), stored as its uint8 bit pattern, decoded as ``x' = e4m3(q) * s``.

The scales ``s`` (L, D) float32 come from a calibration pass (`calibrate`): ``s = absmax / QMAX``
with ``absmax`` the largest |x| of each (layer, channel) over the calibration utterances (stage
one picks them deterministically, pipeline/extract/engine.py) and QMAX 127 (int8) or 448 (the largest
finite e4m3). A channel that is zero over the whole sample gets s = 1. Values past a scale's
range (an utterance louder than the sample) saturate at ±QMAX·s. The 8-bit encodings are 0.5×
the bytes of fp16; decoding is one multiply (int8) or a 256-entry table and a multiply (fp8),
done on the device that trains (pipeline/feed/loader.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

ENCODINGS = ("fp16", "int8", "fp8")
STORED_DTYPE = {"fp16": np.dtype(np.float16), "int8": np.dtype(np.int8), "fp8": np.dtype(np.uint8)}
QMAX = {"int8": 127.0, "fp8": 448.0}
DEFAULT = "fp16"


def check_encoding(name: str | None) -> str:
    """The encoding's canonical name (None -> fp16); raises ValueError naming the choices."""
    name = DEFAULT if name is None else str(name)
    if name not in ENCODINGS:
        raise ValueError(f"unknown store encoding {name!r}; choose one of {', '.join(ENCODINGS)}")
    return name


def is_8bit(encoding: str | None) -> bool:
    """True for the encodings that need scales to decode (int8, fp8)."""
    return check_encoding(encoding) != "fp16"


def stored_dtype(encoding: str | None) -> np.dtype:
    """numpy dtype of the stored values: float16, int8 or uint8 (fp8 bit patterns)."""
    return STORED_DTYPE[check_encoding(encoding)]


def fp8_table() -> np.ndarray:
    """(256,) float32: the value of every e4m3fn bit pattern (0x7f and 0xff are NaN).

    Sign bit 7, exponent bits 6-3 (bias 7), mantissa bits 2-0; exponent 0 is subnormal
    (m/8 · 2^-6). Pure numpy, so a store can be decoded without torch.
    """
    b = np.arange(256)
    sign = np.where(b & 0x80, -1.0, 1.0)
    e, m = (b >> 3) & 0xF, b & 0x7
    mag = np.where(e == 0, m / 8.0 * 2.0**-6, (1.0 + m / 8.0) * 2.0 ** (e - 7.0))
    out = (sign * mag).astype(np.float32)
    out[(e == 0xF) & (m == 0x7)] = np.nan
    return out


_FP8 = fp8_table()


class AbsMax:
    """Running per-(layer, channel) max |x| over calibration utterances (exact, order-free)."""

    def __init__(self, num_layers: int, dim: int) -> None:
        self.absmax = np.zeros((num_layers, dim), np.float32)
        self.frames = 0

    def update(self, x: np.ndarray) -> None:
        """x: (T, L, D) any float dtype."""
        if len(x):
            np.maximum(self.absmax, np.abs(x).max(axis=0).astype(np.float32), out=self.absmax)
            self.frames += len(x)


def scales_from_absmax(absmax: np.ndarray, encoding: str) -> np.ndarray:
    """(L, D) float32 scales: absmax / QMAX, 1 where a channel was all zeros (or not finite)."""
    enc = check_encoding(encoding)
    if enc == "fp16":
        raise ValueError("fp16 stores have no scales")
    a = np.asarray(absmax, np.float32)
    s = a / np.float32(QMAX[enc])
    return np.where(np.isfinite(s) & (s > 0), s, np.float32(1.0)).astype(np.float32)


def calibrate(feats: Iterable[np.ndarray], encoding: str, num_layers: int, dim: int) -> np.ndarray:
    """Scales (L, D) float32 from calibration utterances, each (T, L, D)."""
    acc = AbsMax(num_layers, dim)
    for x in feats:
        acc.update(x)
    return scales_from_absmax(acc.absmax, encoding)


def encode(x: np.ndarray, scales: np.ndarray | None, encoding: str) -> np.ndarray:
    """(T, L, D) float -> (T, L, D) stored values (float16, int8, or uint8 e4m3 bits)."""
    enc = check_encoding(encoding)
    if enc == "fp16":
        return np.asarray(x, np.float16)
    y = np.asarray(x, np.float32) / scales  # (T, L, D) / (L, D)
    if enc == "int8":
        np.rint(y, out=y)
        np.clip(y, -127.0, 127.0, out=y)
        return y.astype(np.int8)
    np.clip(y, -448.0, 448.0, out=y)  # e4m3fn has no inf: out-of-range casts would be NaN
    np.nan_to_num(y, copy=False)
    return torch.from_numpy(y).to(torch.float8_e4m3fn).view(torch.uint8).numpy()


def decode(
    raw: np.ndarray, scales: np.ndarray | None, encoding: str, dtype=np.float32
) -> np.ndarray:
    """(..., L, D) stored values -> (..., L, D) `dtype` (numpy; fp16 is returned as a cast)."""
    enc = check_encoding(encoding)
    if enc == "fp16":
        return np.asarray(raw).astype(dtype, copy=False)
    vals = raw.astype(np.float32) if enc == "int8" else _FP8[raw]
    vals *= scales
    return vals.astype(dtype, copy=False)


def decode_torch(
    raw: torch.Tensor,
    scales: torch.Tensor | None,
    encoding: str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(..., L, D) stored values on any device -> (..., L, D) `dtype` on the same device.

    `scales`: (L, D) float32 on raw's device. CUDA decodes fp8 with torch's e4m3 cast; the CPU
    with a 256-entry table (numpy indexing is ~5x faster there than torch's fp8 cast).
    """
    enc = check_encoding(encoding)
    if enc == "fp16":
        return raw.to(dtype)
    if enc == "int8":
        out = torch.mul(raw, scales)  # int8 * float32 -> float32
    elif raw.device.type == "cpu":
        out = torch.from_numpy(_FP8[raw.numpy()])
        out.mul_(scales)
    else:
        out = raw.view(torch.float8_e4m3fn).to(torch.float32).mul_(scales)
    return out if dtype == torch.float32 else out.to(dtype)
