"""Make several upstreams' hidden states line up: frames (T), layers (L) and width (D).

Legend: B batch, L hidden states, T frames, D width. Paper III-B: "we upsample the
representations of the models to match that of the model with the highest framerate (and
similarly with the number of layers) ... linear interpolation to both axes"; for additive
fusion the widths are made equal by interpolation too.

The rules, per utterance:

- Frames. The reference is the upstream with the highest frame rate (the first such one on a
  tie; the first upstream when no rates are given). Its frame counts are the output's. Another
  upstream's valid frames are resampled linearly in time to the reference rate: output frame j
  (centred at (j + 0.5) / r_ref seconds) reads source position (j + 0.5) * r_src / r_ref - 0.5,
  i.e. `F.interpolate(mode="linear", align_corners=False)` per utterance, over its *valid*
  frames only, so padding never leaks in. The result is then cropped, or padded by repeating
  its last frame, to the reference's count. At equal rates this is exactly crop / repeat-last
  for stores that differ by a frame or two (different front-end rounding). Frames past the
  output length are zero.
- Layers. Linear interpolation along L to the largest layer count with the end points kept
  (`align_corners=True`): state 0 maps onto state 0, the last onto the last.
- Width. Linear interpolation along D (`align_corners=True`) to the common width (the largest
  D_i unless given).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from pipeline.masks import frame_mask


def reference_index(frame_rates: Sequence[float] | None, n: int) -> int:
    """Index of the upstream whose frame rate (and counts) the output takes: the highest rate."""
    if not frame_rates:
        return 0
    if len(frame_rates) != n:
        raise ValueError(
            f"got {len(frame_rates)} frame rates for {n} upstreams; give one per store"
        )
    best = max(frame_rates)
    return list(frame_rates).index(best)


def resample_frames(
    x: torch.Tensor,
    lengths: torch.Tensor,
    out_lengths: torch.Tensor,
    out_frames: int,
    ratio: float = 1.0,
) -> torch.Tensor:
    """Resample (B, T, *F) along T to (B, out_frames, *F), per utterance.

    `ratio` = r_src / r_ref (<= 1 when upsampling to a faster reference). Utterance b's first
    `lengths[b]` frames are interpolated linearly, then cropped / edge-padded to
    `out_lengths[b]`; frames past that are zero.
    """
    B, T = x.shape[:2]
    lengths = lengths.to(x.device)
    out_lengths = out_lengths.to(x.device)
    if ratio == 1.0 and torch.equal(lengths, out_lengths):
        # Nothing to resample: crop or zero-pad the time axis only.
        if out_frames <= T:
            y = x[:, :out_frames]
        else:
            pad = x.new_zeros((B, out_frames - T, *x.shape[2:]))
            y = torch.cat([x, pad], dim=1)
        return y * _mask(out_lengths, out_frames, y)
    feat_shape = x.shape[2:]
    flat = x.reshape(B, T, -1)  # (B, T, F)
    j = torch.arange(out_frames, device=x.device, dtype=torch.float64)
    pos = (j + 0.5) * ratio - 0.5  # (T_out,) source position of each output frame
    last = (lengths.clamp(min=1) - 1).to(torch.float64)[:, None]  # (B, 1)
    pos = torch.minimum(pos[None, :].clamp(min=0.0), last)  # (B, T_out): edge-pad past the end
    i0 = pos.floor().long()
    w = (pos - i0).to(x.dtype)[..., None]  # (B, T_out, 1)
    i1 = torch.minimum(i0 + 1, last.long())
    nf = flat.shape[-1]
    x0 = torch.gather(flat, 1, i0[..., None].expand(B, out_frames, nf))
    if ratio == 1.0:
        y = x0  # integer positions: crop / repeat-last only
    else:
        x1 = torch.gather(flat, 1, i1[..., None].expand(B, out_frames, nf))
        y = x0 + (x1 - x0) * w
    y = y.reshape(B, out_frames, *feat_shape)
    return y * _mask(out_lengths, out_frames, y)


def _mask(lengths: torch.Tensor, frames: int, y: torch.Tensor) -> torch.Tensor:
    m = frame_mask(lengths, frames).to(y.dtype)  # (B, T)
    return m.reshape(m.shape + (1,) * (y.dim() - 2))


def align_time(
    xs: Sequence[torch.Tensor],
    lengths: Sequence[torch.Tensor],
    frame_rates: Sequence[float] | None = None,
    time_dim: int = 1,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Bring every upstream's frames to the reference's (see the module docstring).

    xs: one tensor per upstream with batch first and frames at `time_dim` ((B, T_i, D_i) with
    time_dim=1, (B, L_i, T_i, D_i) with time_dim=2). Returns the aligned tensors, all with the
    reference's frame count at `time_dim`, and the output lengths (B,).
    """
    ref = reference_index(frame_rates, len(xs))
    out_lengths = lengths[ref].to(xs[ref].device)
    out_frames = xs[ref].shape[time_dim]
    out = []
    for i, (x, n) in enumerate(zip(xs, lengths, strict=True)):
        ratio = 1.0 if not frame_rates else float(frame_rates[i]) / float(frame_rates[ref])
        xt = x.movedim(time_dim, 1)  # (B, T_i, ...)
        y = resample_frames(xt, n, out_lengths, out_frames, ratio)
        out.append(y.movedim(1, time_dim))
    return out, out_lengths


def interpolate_axis(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Linear interpolation of `x` along `dim` to `size` entries, end points kept
    (`F.interpolate(mode="linear", align_corners=True)` over that axis: 3-7x faster on a CPU than
    gathering the two neighbours with index_select, which dominated a fusion HConv's forward)."""
    n = x.shape[dim]
    if n == size:
        return x
    moved = x.movedim(dim, -1)
    y = F.interpolate(moved.reshape(-1, 1, n), size=size, mode="linear", align_corners=True)
    return y.reshape(*moved.shape[:-1], size).movedim(-1, dim)


def interpolate_layers(x: torch.Tensor, num_layers: int) -> torch.Tensor:
    """(B, L, T, D) -> (B, num_layers, T, D), linear along L."""
    return interpolate_axis(x, num_layers, dim=1)


def interpolate_width(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(..., D) -> (..., dim), linear along D."""
    return interpolate_axis(x, dim, dim=-1)


def align_states(
    feats: Sequence[torch.Tensor],
    lengths: Sequence[torch.Tensor],
    frame_rates: Sequence[float] | None = None,
    num_layers: int | None = None,
    width: int | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Align (B, L_i, T_i, D_i) tensors for HConv / CHConv fusion.

    Frames go to the reference (highest rate), layers to `num_layers` (default: the largest
    L_i), and, when `width` is given, D to `width`. Returns a list of (B, L, T, D or D_i) and
    the output lengths (B,).
    """
    L = num_layers or max(x.shape[1] for x in feats)
    # Interpolate L first: it is cheapest on the original (often lower-rate) frames.
    xs = [interpolate_layers(x, L) for x in feats]
    if width is not None:
        xs = [interpolate_width(x, width) for x in xs]
    return align_time(xs, lengths, frame_rates, time_dim=2)
