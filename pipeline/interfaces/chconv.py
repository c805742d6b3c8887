"""CHConv (paper III-B): concatenate the aligned upstreams along D, HConv, project back.

N upstreams (B, L_i, T_i, D_i) -> align L and T (align.py; widths untouched) -> concatenate
along D to (B, L, T, sum D_i) -> HConv over sum D_i channels -> (B, T, H) with
H = (sum D_i // L') * L' -> dense Linear(H -> out_dim), out_dim = the largest D_i unless
given. The paper notes this has far more parameters than HConv (the first conv alone is
(N*D)^2 * 5). No public code exists; this follows the paper's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pipeline.interfaces import register
from pipeline.interfaces.align import align_states
from pipeline.interfaces.base import Interface, normalize_layers, zero_padding
from pipeline.interfaces.hconv import HConvStack


@register
class CHConv(Interface):
    """Concatenated HConv with a dense projection to `out_dim`."""

    name = "chconv"
    label = "CHConv"

    def __init__(
        self,
        shapes: Sequence[tuple[int, int]],
        frame_rates: Sequence[float] | None = None,
        out_dim: int | None = None,
        layer_norm: bool = False,
    ):
        super().__init__()
        self.layer_norm = bool(layer_norm)  # per hidden state over its D_i, as HConv's option
        self.shapes = [(int(L), int(D)) for L, D in shapes]
        self.frame_rates = list(frame_rates) if frame_rates else None
        self.num_layers = max(L for L, _ in self.shapes)
        self.hconv = HConvStack(self.num_layers, sum(D for _, D in self.shapes))
        self.out_dim = int(out_dim or max(D for _, D in self.shapes))
        self.proj = nn.Linear(self.hconv.out_dim, self.out_dim)

    def forward(
        self, feats: list[torch.Tensor], lengths: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: N x (B, L_i, T_i, D_i); lengths: N x (B,) -> ((B, T, out_dim), (B,))."""
        self._check_inputs(feats, lengths, len(self.shapes), "chconv")
        dtype = self._dtype()
        feats = [normalize_layers(x.to(dtype), self.layer_norm) for x in feats]
        if len(feats) == 1:
            x, n = feats[0], lengths[0].to(feats[0].device)
        else:
            xs, n = align_states(feats, lengths, self.frame_rates, self.num_layers)
            x = torch.cat(xs, dim=-1)  # (B, L, T, sum D_i)
        y = self.proj(self.hconv(x))  # (B, T, out_dim)
        return zero_padding(y, n), n

    def learned_summary(self) -> dict[str, Any]:
        """{"first_conv_norms": (L,) first-conv weight norm per (aligned) input layer}."""
        return {"first_conv_norms": self.hconv.first_conv_norms()}
