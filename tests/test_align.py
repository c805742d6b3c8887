"""Alignment of frames, layers and widths across upstreams (pipeline/interfaces/align.py)."""

import torch
import torch.nn.functional as F

from pipeline.interfaces import build
from pipeline.interfaces.align import (
    align_states,
    align_time,
    interpolate_layers,
    interpolate_width,
    reference_index,
)

NAMES = ["ws", "hconv", "chconv", "gumd"]


def ramp(B, T, D, lengths):
    """(B, T, D) whose frame t holds t everywhere, garbage (1e6) past each length."""
    x = torch.arange(T, dtype=torch.float32)[None, :, None].expand(B, T, D).clone()
    for b, n in enumerate(lengths):
        x[b, n:] = 1e6
    return x


def test_reference_is_highest_rate():
    assert reference_index(None, 3) == 0
    assert reference_index([50, 25, 50], 3) == 0
    assert reference_index([25, 50], 2) == 1


def test_equal_rates_crop_and_repeat_last():
    # The reference (first) has 10 and 8 frames; the other 9 and 10: crop / repeat the last frame.
    a = ramp(2, 10, 3, [10, 8])
    b = ramp(2, 10, 3, [9, 10])
    (ya, yb), n = align_time([a, b], [torch.tensor([10, 8]), torch.tensor([9, 10])])
    assert n.tolist() == [10, 8]
    assert yb.shape == (2, 10, 3)
    assert yb[0, :, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8]  # padded by repeating frame 8
    assert yb[1, :, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 0]  # cropped to 8, zero after
    assert ya[1, 8:].abs().sum() == 0  # the reference's own padding is zeroed


def test_lower_rate_is_interpolated_like_f_interpolate_per_utterance():
    # 25 Hz upstream aligned to a 50 Hz reference.
    ref = torch.zeros(2, 20, 4)
    slow = torch.randn(2, 12, 4)
    slow[1, 7:] = 1e6  # padding must not leak in
    (_, y), n = align_time(
        [ref, slow], [torch.tensor([20, 14]), torch.tensor([10, 7])], [50.0, 25.0]
    )
    assert n.tolist() == [20, 14]
    for b, (m, k) in enumerate([(10, 20), (7, 14)]):
        want = F.interpolate(slow[b : b + 1, :m].transpose(1, 2), scale_factor=2, mode="linear")
        torch.testing.assert_close(y[b, :k], want.transpose(1, 2)[0])
    assert y[1, 14:].abs().sum() == 0


def test_layers_and_width_linear_with_end_points_kept():
    x = torch.arange(5, dtype=torch.float32)[None, :, None, None].expand(1, 5, 2, 3)  # layer l = l
    y = interpolate_layers(x, 13)
    assert y.shape == (1, 13, 2, 3)
    torch.testing.assert_close(y[0, :, 0, 0], torch.linspace(0, 4, 13))
    w = interpolate_width(torch.arange(384, dtype=torch.float32)[None], 768)
    assert w.shape == (1, 768) and w[0, 0] == 0 and w[0, -1] == 383
    torch.testing.assert_close(w[0], torch.linspace(0, 383, 768))


def test_align_states_shapes():
    feats = [torch.randn(2, 5, 40, 384), torch.randn(2, 13, 21, 768)]
    lengths = [torch.tensor([40, 30]), torch.tensor([20, 15])]
    xs, n = align_states(feats, lengths, [50.0, 25.0], width=768)
    assert [tuple(x.shape) for x in xs] == [(2, 13, 40, 768)] * 2
    assert n.tolist() == [40, 30]


def _three_upstreams(B=3):
    """5 x 384 and 7 x 512 at 50 Hz, 13 x 768 at 25 Hz; per-utterance lengths, padded."""
    n50 = torch.tensor([30, 24, 11])
    n25 = torch.tensor([15, 12, 6])
    shapes = [(5, 384), (7, 512), (13, 768)]
    rates = [50.0, 50.0, 25.0]
    lens = [n50, n50 - torch.tensor([1, 0, 1]), n25]  # the 512-wide store is a frame short
    feats = []
    for (L, D), n in zip(shapes, lens, strict=True):
        x = torch.randn(B, L, int(n.max()), D)
        for b in range(B):
            x[b, :, n[b] :] = 0
        feats.append(x.requires_grad_())
    return shapes, rates, feats, lens


def test_fuse_three_upstreams_every_interface():
    shapes, rates, feats, lens = _three_upstreams()
    for name in NAMES:
        itf = build(name, shapes, frame_rates=rates)
        out, n = itf(feats, lens)
        assert out.shape == (3, 30, itf.out_dim), name
        assert n.tolist() == [30, 24, 11], name
        assert out[2, 11:].abs().sum() == 0, name
        out.pow(2).mean().backward()
        for p_name, p in itf.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient to {p_name}"
        for i, x in enumerate(feats):
            assert x.grad is not None and x.grad.abs().sum() > 0, (
                f"{name}: no gradient to upstream {i}"
            )
            x.grad = None


def test_padding_is_never_data():
    """An utterance fused in a padded batch equals the same utterance fused alone."""
    torch.manual_seed(0)
    shapes, rates, feats, lens = _three_upstreams()
    for name in NAMES:
        itf = build(name, shapes, frame_rates=rates).eval()
        with torch.no_grad():
            garbage = [x.detach().clone() for x in feats]
            for x, n in zip(garbage, lens, strict=True):
                x[2, :, n[2] :] = 123.0  # garbage in utterance 2's padding
            out, n = itf(garbage, lens)
            alone = [x.detach()[2:3, :, : int(m[2])] for x, m in zip(feats, lens, strict=True)]
            out1, n1 = itf(alone, [m[2:3] for m in lens])
        assert n1.tolist() == [11]
        torch.testing.assert_close(out[2, :11], out1[0], rtol=1e-4, atol=1e-5, msg=name)
