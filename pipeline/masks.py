"""The valid-frame mask that interfaces, heads and upstreams share (one definition)."""

from __future__ import annotations

import torch


def frame_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) frame counts -> (B, max_len) bool, True on real frames, on `lengths`' device."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
