"""What every interface shares: the signature, padding masks, parameter counts, step().

Legend: B batch, L hidden states (layers), T frames, D width. An interface takes one
(B, L_i, T_i, D_i) tensor per upstream plus their frame counts and returns (B, T, D_out) with
the frame counts of the output; frames past a length are zero on the way out.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.interfaces.align import align_time
from pipeline.masks import frame_mask


def count_parameters(module: nn.Module) -> int:
    """The number of trainable parameters (requires_grad) of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class Interface(nn.Module):
    """Base class. Subclasses set `name` and `out_dim` and implement `forward`."""

    name: str = ""  # the name users type (`--interface`, the experiment's table)
    label: str = ""  # how tables and figures print it
    out_dim: int

    def step(self, global_step: int) -> None:
        """Called by the trainer before every optimiser step; a no-op unless overridden (GumD)."""

    def learned_summary(self) -> dict[str, Any]:
        """What the interface learned, as numpy arrays / lists, for the report's figures."""
        return {}

    def describe(self) -> str:
        """One line for the training log: the name and the trainable parameter count."""
        return f"interface {self.name}: {count_parameters(self):,} trainable parameters, out_dim {self.out_dim}"

    def extra_repr(self) -> str:
        return f"out_dim={self.out_dim}, trainable_parameters={count_parameters(self):,}"

    def _init_projection(self, out_dim: int | None) -> None:
        """For interfaces that reduce each upstream to one (B, T_i, D_i) sequence: no projection
        for one upstream (out_dim = D_1), else Linear(sum D_i -> out_dim, default max D_i)."""
        dims = [D for _, D in self.shapes]
        if len(dims) == 1:
            self.proj, self.out_dim = None, dims[0]
        else:
            self.out_dim = int(out_dim or max(dims))
            self.proj = nn.Linear(sum(dims), self.out_dim)

    def _concat_project(
        self, seqs: list[torch.Tensor], lengths: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """N x (B, T_i, D_i) -> ((B, T, out_dim), (B,)): the one upstream as it is, else frames
        aligned to the highest frame rate, concatenated along D and projected; padding zeroed."""
        if self.proj is None:
            n = lengths[0].to(seqs[0].device)
            return zero_padding(seqs[0], n), n
        seqs, n = align_time(seqs, lengths, self.frame_rates, time_dim=1)
        y = self.proj(torch.cat(seqs, dim=-1))  # (B, T, out_dim)
        return zero_padding(y, n), n

    def _dtype(self) -> torch.dtype:
        p = next(self.parameters(), None)
        return p.dtype if p is not None else torch.float32

    @staticmethod
    def _check_inputs(
        feats: list[torch.Tensor], lengths: list[torch.Tensor], n: int, who: str
    ) -> None:
        if len(feats) != n or len(lengths) != n:
            raise ValueError(
                f"{who} was built for {n} upstream(s) but got {len(feats)} feature tensor(s) and "
                f"{len(lengths)} length tensor(s); build it with one (L, D) shape per store"
            )
        for i, x in enumerate(feats):
            if x.dim() != 4:
                raise ValueError(
                    f"{who}: upstream {i} features must be (B, L, T, D), got shape {tuple(x.shape)}"
                )


def normalize_layers(x: torch.Tensor, on: bool) -> torch.Tensor:
    """Parameter-free layer norm over the last axis of (B, L, T, D) when `on`; zero frames stay zero."""
    return F.layer_norm(x, (x.shape[-1],)) if on else x


def zero_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero the frames of (B, T, D) past each utterance's length."""
    return x * frame_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
