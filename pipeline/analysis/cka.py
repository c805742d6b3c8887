"""Linear CKA (centred kernel alignment), full-batch and streamed over frame chunks.

Legend: n frames (rows), D width of one block (one layer of one model), K blocks, W = sum of
the K widths.

For two feature matrices X (n, Dx) and Y (n, Dy), with columns centred (Xc = X - 1 mx^T):

    CKA(X, Y) = ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)

(Kornblith et al. 2019, linear kernel, the feature-space form: no n x n Gram matrix). It is 1
for X against itself, symmetric, and invariant to an orthogonal transform and to an isotropic
scaling of either side.

Streaming. The cross-covariance decomposes over rows. With a fixed shift c (any vector; the
first chunk's mean, to keep the numbers small) and z = x - c, accumulate n, s = sum z and
G = sum z z^T over every chunk; then

    Zc^T Zc = sum (z - m)(z - m)^T = G - n m m^T = G - s s^T / n,     m = s / n

and Zc = Xc because centring removes any shift. One accumulator over all K blocks stacked
side by side (z of width W) gives every block pair's centred cross-covariance at once: the
(u, v) block of G - s s^T / n. Memory is W x W float64 whatever the number of frames; when W is
too wide for the budget, `group_passes` splits the blocks into groups and each pass accumulates
one pair of groups (the data is read once per pass).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Full-batch linear CKA of x (n, Dx) and y (n, Dy), in float64. The reference computation."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"linear_cka: x has {x.shape[0]} rows, y has {y.shape[0]}; need the same frames"
        )
    xc = np.asarray(x, dtype=np.float64)
    yc = np.asarray(y, dtype=np.float64)
    xc = xc - xc.mean(axis=0, keepdims=True)
    yc = yc - yc.mean(axis=0, keepdims=True)
    num = np.linalg.norm(xc.T @ yc) ** 2
    den = np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)
    return float(num / den) if den > 0 else 0.0


class StreamingCKA:
    """Linear CKA between K feature blocks, accumulated over chunks of rows (frames).

    `update(blocks)` takes one chunk: a list of K arrays (n, D_k) with the same n rows (the
    same frames). `matrix()` returns the (K, K) CKA matrix of everything seen so far.
    Products are taken in `compute_dtype` (float32 by default; the shift keeps them well
    conditioned) and summed in float64.
    """

    def __init__(self, widths: Sequence[int], compute_dtype: torch.dtype = torch.float32):
        self.widths = [int(w) for w in widths]
        self.offsets = np.concatenate([[0], np.cumsum(self.widths)]).astype(int)
        W = int(self.offsets[-1])
        self.compute_dtype = compute_dtype
        self.n = 0
        self.shift: torch.Tensor | None = None  # (W,) fixed once, from the first chunk
        self.s = torch.zeros(W, dtype=torch.float64)  # sum of shifted rows
        self.G = torch.zeros(W, W, dtype=torch.float64)  # sum of shifted outer products

    def update(self, blocks: Sequence[np.ndarray | torch.Tensor]) -> None:
        """Add one chunk: K arrays (n, D_k), row i of each being the same frame."""
        if len(blocks) != len(self.widths):
            raise ValueError(f"StreamingCKA: got {len(blocks)} blocks, expected {len(self.widths)}")
        z = torch.cat(
            [torch.as_tensor(b).to(self.compute_dtype).reshape(b.shape[0], -1) for b in blocks],
            dim=1,
        )  # (n, W)
        if z.shape[1] != self.offsets[-1]:
            raise ValueError(
                f"StreamingCKA: chunk is {z.shape[1]} wide, expected {self.offsets[-1]}"
            )
        if z.shape[0] == 0:
            return
        if self.shift is None:
            self.shift = z.mean(dim=0)
        z = z - self.shift  # (n, W)
        self.n += z.shape[0]
        self.s += z.sum(dim=0, dtype=torch.float64)
        self.G += (z.T @ z).to(torch.float64)

    def covariance(self) -> torch.Tensor:
        """(W, W) centred cross-covariance (unnormalised): G - s s^T / n."""
        if self.n == 0:
            raise ValueError("StreamingCKA: no frames were added")
        return self.G - torch.outer(self.s, self.s) / self.n

    def matrix(self) -> np.ndarray:
        """(K, K) linear CKA between every pair of blocks."""
        C = self.covariance()
        K, o = len(self.widths), self.offsets
        sq = np.zeros((K, K))  # ||C_uv||_F^2
        for u in range(K):
            for v in range(u, K):
                val = float(C[o[u] : o[u + 1], o[v] : o[v + 1]].square().sum())
                sq[u, v] = sq[v, u] = val
        norms = np.sqrt(np.diag(sq))  # ||C_uu||_F
        den = np.outer(norms, norms)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(den > 0, sq / np.where(den > 0, den, 1.0), 0.0)
        return out


def group_passes(widths: Sequence[int], budget_bytes: float) -> list[list[int]]:
    """Which blocks each pass accumulates together so that one pass's W x W float64 fits.

    Returns lists of block indices. One pass with every block when it fits; otherwise the
    blocks are cut, in order, into groups of width <= sqrt(budget / 8) / 2, and every pair of
    groups is one pass: each block pair then meets in at least one pass.
    """
    widths = [int(w) for w in widths]
    total = sum(widths)
    if total * total * 8 <= budget_bytes:
        return [list(range(len(widths)))]
    cap = max(1, int(math.sqrt(budget_bytes / 8) / 2))
    groups: list[list[int]] = [[]]
    width = 0
    for k, w in enumerate(widths):
        if groups[-1] and width + w > cap:
            groups.append([])
            width = 0
        groups[-1].append(k)
        width += w
    if len(groups) == 1:
        return groups
    return [groups[g] + groups[h] for g in range(len(groups)) for h in range(g + 1, len(groups))]
