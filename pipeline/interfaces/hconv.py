"""The authors' Hierarchical Convolution interface (atosystem/SSL_Interface, hconvInterface.py).

The L hidden states of one frame form a (D, L) sequence: D channels along the layer axis.
floor(log(L) / log(3)) Conv1d(kernel 5, stride 3, padding 2) + ReLU shrink the layer axis
(13 -> 5 -> 2 for base models); every conv maps D -> D channels except the last, which maps
D -> D // L' (L' = the layer length it leaves). The (D // L', L') result is flattened
channel-first, so out_dim = (D // L') * L'. No normalisation, no dropout.

    L=13, D=768 -> 4,424,832 parameters, out 768      L=25, D=1024 -> 6,990,165, out 1023
    L=5,  D=384 ->   368,832 parameters, out 384      L=7,  D=512  ->   435,370, out 510

Fusion ("hconv" with N upstreams, paper III-B): align L and T (align.py), interpolate D to a
common width (the largest D_i unless `dim` is given), add, then one HConv.

`layer_norm=True` applies the authors' optional parameter-free layer norm over D to every
hidden state first (off by default, as in their code; padding frames stay zero).

Deviation: the authors' code refuses L = 1 and builds no conv at L = 2 (its declared output
then disagrees with what it returns); here at least one conv is built, so layer subsets of
one or two states still work (L=2 -> 1 layer, out D).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.interfaces import register
from pipeline.interfaces.align import align_states
from pipeline.interfaces.base import Interface, normalize_layers, zero_padding

KERNEL, STRIDE, PADDING = 5, 3, 2


def conv_plan(num_layers: int, dim: int) -> tuple[list[tuple[int, int]], int, int]:
    """The conv stack for L states of width D: [(in, out) channels], final L', out_dim."""
    n_convs = max(1, math.floor(np.log(num_layers) / np.log(STRIDE)))  # as the authors compute it
    L = num_layers
    plan = []
    for i in range(n_convs):
        L = (L + 2 * PADDING - (KERNEL - 1) - 1) // STRIDE + 1
        plan.append((dim, dim if i < n_convs - 1 else dim // L))
    return plan, L, (dim // L) * L


class HConvStack(nn.Module):
    """The convolutions alone: (B, L, T, D) -> (B, T, out_dim)."""

    def __init__(self, num_layers: int, dim: int):
        super().__init__()
        plan, self.final_layers, self.out_dim = conv_plan(num_layers, dim)
        if self.out_dim < 1:
            raise ValueError(
                f"HConv over {num_layers} states of width {dim} leaves no output channels"
            )
        self.num_layers, self.dim = num_layers, dim
        layers: list[nn.Module] = []
        for c_in, c_out in plan:
            layers += [nn.Conv1d(c_in, c_out, KERNEL, stride=STRIDE, padding=PADDING), nn.ReLU()]
        self.transforms = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, T, D = x.shape
        x = x.permute(0, 2, 3, 1).reshape(B * T, D, L)  # (B*T, D, L): channels D, slide along L
        x = self.transforms(x)  # (B*T, D // L', L')
        return x.reshape(B, T, -1)  # (B, T, (D // L') * L'), channel-first flatten

    def first_conv_norms(self) -> np.ndarray:
        """Frobenius norm of the first conv's weights that touch each input layer, (L,).

        Output position p reads input layers 3p - 2 + k for kernel taps k = 0..4, so layer l's
        norm is sqrt(sum over the (p, k) that reach it of ||W[:, :, k]||^2).
        """
        w = self.transforms[0].weight.detach().float()  # (C_out, C_in, K)
        tap = (w**2).sum(dim=(0, 1)).cpu().numpy()  # (K,)
        L_out = (self.num_layers + 2 * PADDING - KERNEL) // STRIDE + 1
        acc = np.zeros(self.num_layers)
        for p in range(L_out):
            for k in range(KERNEL):
                layer = p * STRIDE - PADDING + k
                if 0 <= layer < self.num_layers:
                    acc[layer] += tap[k]
        return np.sqrt(acc)


@register
class HConv(Interface):
    """HConv over one upstream, or over the sum of N aligned upstreams (see the module doc)."""

    name = "hconv"
    label = "HConv"

    def __init__(
        self,
        shapes: Sequence[tuple[int, int]],
        frame_rates: Sequence[float] | None = None,
        dim: int | None = None,
        layer_norm: bool = False,
    ):
        super().__init__()
        self.layer_norm = bool(layer_norm)
        self.shapes = [(int(L), int(D)) for L, D in shapes]
        self.frame_rates = list(frame_rates) if frame_rates else None
        self.num_layers = max(L for L, _ in self.shapes)
        self.dim = int(dim or max(D for _, D in self.shapes))
        self.hconv = HConvStack(self.num_layers, self.dim)
        self.out_dim = self.hconv.out_dim

    def forward(
        self, feats: list[torch.Tensor], lengths: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: N x (B, L_i, T_i, D_i); lengths: N x (B,) -> ((B, T, out_dim), (B,))."""
        self._check_inputs(feats, lengths, len(self.shapes), "hconv")
        dtype = self._dtype()
        feats = [normalize_layers(x.to(dtype), self.layer_norm) for x in feats]
        if len(feats) == 1 and feats[0].shape[-1] == self.dim:
            x, n = feats[0], lengths[0].to(feats[0].device)  # (B, L, T, D); padding is zero
        else:
            xs, n = align_states(feats, lengths, self.frame_rates, self.num_layers, self.dim)
            x = xs[0]
            for y in xs[1:]:
                x = x + y  # (B, L, T, D)
        return zero_padding(self.hconv(x), n), n

    def learned_summary(self) -> dict[str, Any]:
        """{"first_conv_norms": (L,) first-conv weight norm per (aligned) input layer}."""
        return {"first_conv_norms": self.hconv.first_conv_norms()}
