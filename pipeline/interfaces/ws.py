"""SUPERB's weighted sum (s3prl Featurizer) and its multi-model form ([28]'s WS baseline).

One upstream: softmax over L zero-initialised logits, weighted sum of the L states
(optionally each state layer-normed over D without parameters first; off, as in SUPERB).
N upstreams: a weighted sum per upstream, frames aligned to the highest frame rate
(align.py), concatenation along D and a Linear(sum D_i -> D_out) back to one width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pipeline.interfaces import register
from pipeline.interfaces.base import Interface, normalize_layers


@register
class WeightedSum(Interface):
    """Weighted sum of layers, per upstream; concat + Linear when there are several.

    shapes: one (L_i, D_i) per upstream. out_dim: the projection's width with several
    upstreams (default: the largest D_i); with one upstream the output is D_1 and no
    projection exists.
    """

    name = "ws"
    label = "WS"

    def __init__(
        self,
        shapes: Sequence[tuple[int, int]],
        frame_rates: Sequence[float] | None = None,
        layer_norm: bool = False,
        out_dim: int | None = None,
    ):
        super().__init__()
        self.shapes = [(int(L), int(D)) for L, D in shapes]
        self.frame_rates = list(frame_rates) if frame_rates else None
        self.layer_norm = layer_norm
        self.weights = nn.ParameterList([nn.Parameter(torch.zeros(L)) for L, _ in self.shapes])
        self._init_projection(out_dim)

    def forward(
        self, feats: list[torch.Tensor], lengths: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: N x (B, L_i, T_i, D_i); lengths: N x (B,) -> ((B, T, out_dim), (B,))."""
        self._check_inputs(feats, lengths, len(self.shapes), "ws")
        dtype = self._dtype()
        summed = []
        for x, w in zip(feats, self.weights, strict=True):
            x = x.to(dtype)
            x = normalize_layers(x, self.layer_norm)
            p = torch.softmax(w, dim=0).to(dtype)  # (L,)
            summed.append(torch.einsum("l,bltd->btd", p, x))  # (B, T_i, D_i)
        return self._concat_project(summed, lengths)

    def learned_summary(self) -> dict[str, Any]:
        """{"weights": one softmax vector (L_i,) per upstream}."""
        return {
            "weights": [torch.softmax(w.detach().float(), 0).cpu().numpy() for w in self.weights]
        }
