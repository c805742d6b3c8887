"""GumD: dimension-wise hard Gumbel-softmax layer selection (Chiu et al. 2024, [28]).

Per upstream, logits W of shape (L, D), zero-initialised. Every output dimension d takes one
layer: in training a straight-through hard Gumbel-softmax sample over L,
gumbel_softmax(W / tau, hard=True, dim=0); in evaluation the argmax one-hot. Output
sum_l w[l, d] * h_l[..., d]. (Sinica-SLAM/custom_s3prl, s3prl/upstream/featurizer.py,
GumbelFusion2.)

Temperature tau (the trainer calls `step(global_step)`): 1.0 falling linearly to 0.1 over
`linear_steps`, then exponentially to 1e-4 over `exp_steps`, never below 1e-4. The authors'
ASR config: 1,000 + 10,000 steps (the defaults). It is a closed form of the step, so a
resumed run continues the schedule exactly.

N upstreams: one selector each, frames aligned to the highest rate (align.py), concatenation
and a Linear(sum D_i -> out_dim), out_dim = the largest D_i unless given (the paper's
replacement for [28]'s temporal interleaving). One upstream: no projection, out_dim = D.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.interfaces import register
from pipeline.interfaces.base import Interface, normalize_layers


def temperature(
    step: int,
    linear_steps: int = 1000,
    exp_steps: int = 10000,
    start: float = 1.0,
    turn: float = 0.1,
    floor: float = 1e-4,
) -> float:
    """GumD's temperature at a global step (see the module docstring)."""
    if step <= linear_steps:
        return start - (start - turn) * step / max(linear_steps, 1)
    s = step - linear_steps
    return max(turn * math.pow(floor / turn, s / max(exp_steps, 1)), floor)


@register
class GumbelSelect(Interface):
    """Per-dimension layer selection per upstream; concat + Linear when there are several."""

    name = "gumd"
    label = "GumD"

    def __init__(
        self,
        shapes: Sequence[tuple[int, int]],
        frame_rates: Sequence[float] | None = None,
        linear_steps: int = 1000,
        exp_steps: int = 10000,
        out_dim: int | None = None,
        layer_norm: bool = False,
    ):
        super().__init__()
        self.shapes = [(int(L), int(D)) for L, D in shapes]
        self.frame_rates = list(frame_rates) if frame_rates else None
        self.layer_norm = bool(layer_norm)  # parameter-free, per hidden state, as ws / hconv
        self.linear_steps, self.exp_steps = int(linear_steps), int(exp_steps)
        self.logits = nn.ParameterList([nn.Parameter(torch.zeros(L, D)) for L, D in self.shapes])
        self.register_buffer("tau", torch.tensor(1.0))  # saved with the state dict
        self._init_projection(out_dim)

    def step(self, global_step: int) -> None:
        self.tau.fill_(temperature(global_step, self.linear_steps, self.exp_steps))

    def selection(self, i: int) -> torch.Tensor:
        """Upstream i's (L, D) layer weights: a Gumbel sample in training, argmax in eval."""
        W = self.logits[i]
        if self.training:
            return F.gumbel_softmax(W / self.tau, hard=True, dim=0)  # (L, D) one-hot columns
        return F.one_hot(W.argmax(dim=0), W.shape[0]).T.to(W.dtype)  # (L, D)

    def forward(
        self, feats: list[torch.Tensor], lengths: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: N x (B, L_i, T_i, D_i); lengths: N x (B,) -> ((B, T, out_dim), (B,))."""
        self._check_inputs(feats, lengths, len(self.shapes), "gumd")
        dtype = self._dtype()
        picked = []
        for i, x in enumerate(feats):
            w = self.selection(i).to(dtype)  # (L, D)
            x = normalize_layers(x.to(dtype), self.layer_norm)
            picked.append((x * w[None, :, None, :]).sum(dim=1))  # (B, T_i, D_i)
        return self._concat_project(picked, lengths)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tau={float(self.tau):.4g}"

    def learned_summary(self) -> dict[str, Any]:
        """{"selected_layer": (D_i,) argmax layer per dimension, "histogram": (L_i,) counts,
        per upstream; "temperature": tau}."""
        sel = [W.detach().argmax(dim=0).cpu().numpy() for W in self.logits]
        hist = [np.bincount(s, minlength=L) for s, (L, _) in zip(sel, self.shapes, strict=True)]
        return {"selected_layer": sel, "histogram": hist, "temperature": float(self.tau)}
