"""SpecAugment on feature sequences (time and frequency masks), active in training mode only.

The masks follow s3prl's downstream/asr SpecAugment and ESPnet's MaskAlongAxis: each mask
zeroes a band of random width drawn uniformly from a range, at a random position. Time masks
stay inside each utterance's valid frames, so padding is never touched and short utterances
are never wiped out. Time warping is not implemented.

Legend: B batch, T frames, D feature width (the "frequency" axis of the masks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class SpecAugmentConfig:
    num_freq_mask: int = 4  # s3prl asr: 4 masks of 0-50 dims
    freq_mask_width: tuple[int, int] = (0, 50)
    num_time_mask: int = 2  # s3prl asr: 2 masks of 0-40 frames
    time_mask_width: tuple[int, int] = (0, 40)
    time_mask_ratio: float | None = (
        None  # if set, the widest time mask is this fraction of the utterance (ESPnet style)
    )


class SpecAugment(nn.Module):
    """Random time and frequency masks on (B, T, D) features; identity in eval mode."""

    def __init__(self, cfg: SpecAugmentConfig | None = None):
        super().__init__()
        self.cfg = cfg or SpecAugmentConfig()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), lengths (B,) valid frames -> masked copy of x (B, T, D)."""
        if not self.training:
            return x
        c = self.cfg
        B, T, D = x.shape
        keep = torch.ones(B, T, D, dtype=torch.bool, device=x.device)
        if c.num_freq_mask > 0 and c.freq_mask_width[1] > 0:
            hi = min(c.freq_mask_width[1], D)
            band = _bands(
                B,
                c.num_freq_mask,
                c.freq_mask_width[0],
                hi,
                torch.full((B,), D, device=x.device),
                D,
            )
            keep &= ~band[:, None, :]  # (B, 1, D)
        if c.num_time_mask > 0:
            lens = lengths.to(x.device).clamp(max=T)
            if c.time_mask_ratio is not None:
                hi_t = (lens.float() * c.time_mask_ratio).long()
                lo_t = torch.zeros_like(hi_t)
            else:
                hi_t = torch.full_like(lens, c.time_mask_width[1])
                lo_t = torch.full_like(lens, c.time_mask_width[0])
            band = _bands(B, c.num_time_mask, lo_t, torch.minimum(hi_t, lens), lens, T)
            keep &= ~band[:, :, None]  # (B, T, 1)
        return x * keep.to(x.dtype)


def _bands(
    B: int,
    n: int,
    lo: int | torch.Tensor,
    hi: int | torch.Tensor,
    extent: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Union of n random bands per row: (B, size) bool. Width ~ U[lo, hi], start ~ U[0, extent - width]."""
    device = extent.device
    lo = torch.as_tensor(lo, device=device).expand(B)
    hi = torch.as_tensor(hi, device=device).expand(B)
    lo = torch.minimum(lo, hi)
    u = torch.rand(B, n, device=device)
    width = (lo[:, None] + (u * (hi - lo + 1)[:, None]).long()).clamp(max=hi[:, None])  # (B, n)
    room = (extent[:, None] - width + 1).clamp(min=1)
    start = (torch.rand(B, n, device=device) * room).long()  # (B, n)
    pos = torch.arange(size, device=device)[None, None, :]  # (1, 1, size)
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # (B, n, size)
    return inside.any(dim=1)
