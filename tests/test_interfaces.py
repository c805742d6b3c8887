"""The four interfaces: the paper's parameter counts, shapes, learning, GumD's schedule."""

import numpy as np
import pytest
import torch

from pipeline import names
from pipeline.interfaces import REGISTRY, build, count_parameters, interface_class
from pipeline.interfaces.gumd import temperature


@pytest.mark.parametrize(
    "shape,params,out",
    [
        ((13, 768), 4_424_832, 768),
        ((25, 1024), 6_990_165, 1023),
        ((5, 384), 368_832, 384),
        ((7, 512), 435_370, 510),
    ],
)
def test_hconv_has_the_authors_parameter_count(shape, params, out):
    itf = build("hconv", [shape])
    assert count_parameters(itf) == params
    assert itf.out_dim == out
    assert f"{params:,}" in itf.describe()


def test_hconv_flattens_channel_first_like_the_authors():
    itf = build("hconv", [(13, 768)])
    x = torch.randn(2, 13, 4, 768)
    out, n = itf([x], [torch.tensor([4, 4])])
    # The authors: (L, B, T, D) -> (B*T, D, L) -> convs -> (B*T, D//L', L') -> view(B, T, -1).
    ref = itf.hconv.transforms(x.permute(0, 2, 3, 1).reshape(8, 768, 13))  # (8, 384, 2)
    assert ref.shape == (8, 384, 2)
    torch.testing.assert_close(out.reshape(8, 768), ref.reshape(8, 768))
    assert out.shape == (2, 4, 768) and n.tolist() == [4, 4]
    assert itf.learned_summary()["first_conv_norms"].shape == (13,)


@pytest.mark.parametrize("name", ["ws", "hconv", "chconv", "gumd"])
def test_layer_norm_option_is_parameter_free_and_scale_invariant(name):
    shapes = [(5, 16), (7, 24)]
    plain, normed = build(name, shapes), build(name, shapes, layer_norm=True)
    assert count_parameters(plain) == count_parameters(normed)
    normed.load_state_dict(plain.state_dict())
    plain.eval(), normed.eval()  # gumd: the argmax selection, no Gumbel noise
    xs = [torch.randn(2, 5, 6, 16), torch.randn(2, 7, 6, 24)]
    n = [torch.tensor([6, 4])] * 2
    # each hidden state is normalised over its own D: an offset and a scale per frame vanish
    shifted = [3.0 * x + 7.0 for x in xs]
    a, _ = normed(xs, n)
    b, _ = normed(shifted, n)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(plain(xs, n)[0], plain(shifted, n)[0])
    assert a[1, 4:].abs().sum() == 0  # padding stays zero


def test_every_interface_single_upstream_shapes_and_padding():
    x = torch.randn(3, 5, 9, 384)
    n = torch.tensor([9, 6, 2])
    for name in names.known("interface"):
        itf = build(name, [(5, 384)])
        out, m = itf([x], [n])
        assert out.shape == (3, 9, itf.out_dim) and m.tolist() == [9, 6, 2], name
        assert out[1, 6:].abs().sum() == 0 and out[2, 2:].abs().sum() == 0, name
        assert str(count_parameters(itf)) in itf.extra_repr().replace(",", ""), name


def test_ws_starts_uniform_and_layer_norm_adds_no_parameters():
    x = torch.randn(2, 4, 5, 8)
    itf = build("ws", [(4, 8)])
    out, _ = itf([x], [torch.tensor([5, 5])])
    torch.testing.assert_close(out, x.mean(dim=1))
    assert count_parameters(itf) == 4
    assert count_parameters(build("ws", [(4, 8)], layer_norm=True)) == 4
    np.testing.assert_allclose(itf.learned_summary()["weights"][0], np.full(4, 0.25))
    itf2 = build("ws", [(4, 8), (6, 16)])
    assert itf2.out_dim == 16 and count_parameters(itf2) == 4 + 6 + 24 * 16 + 16
    assert build("ws", [(4, 8), (6, 16)], out_dim=10).out_dim == 10


def test_ws_learns_to_pick_the_informative_layer():
    torch.manual_seed(0)
    x = torch.randn(16, 6, 10, 4)
    target = x[:, 4]  # only layer 4 carries the target
    itf = build("ws", [(6, 4)])
    opt = torch.optim.Adam(itf.parameters(), lr=0.1)
    n = torch.full((16,), 10)
    for _ in range(100):
        out, _ = itf([x], [n])
        loss = (out - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = itf.learned_summary()["weights"][0]
    assert w.argmax() == 4 and w[4] > 0.5


def test_gumd_temperature_schedule():
    assert temperature(0) == 1.0
    assert temperature(500) == pytest.approx(0.55)
    assert temperature(1000) == pytest.approx(0.1)
    assert temperature(6000) == pytest.approx(0.1 * (1e-3) ** 0.5)
    assert temperature(11000) == pytest.approx(1e-4)
    assert temperature(50000) == pytest.approx(1e-4)
    taus = [temperature(s) for s in range(0, 12000, 100)]
    assert all(a >= b for a, b in zip(taus, taus[1:], strict=False))
    assert temperature(10, linear_steps=10, exp_steps=5) == pytest.approx(0.1)
    itf = build("gumd", [(3, 4)], linear_steps=10, exp_steps=10)
    itf.step(5)
    assert float(itf.tau) == pytest.approx(0.55)
    assert "tau=0.55" in repr(itf)
    assert float(itf.state_dict()["tau"]) == pytest.approx(0.55)  # resumes with the checkpoint


def test_gumd_selects_one_layer_per_dimension():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 7, 6)
    itf = build("gumd", [(5, 6)])
    n = torch.tensor([7, 7])
    out, _ = itf.train()([x], [n])
    # every output dimension equals exactly one layer's value of that dimension
    match = (out[:, None] - x).abs().amax(dim=(0, 2)) < 1e-6  # (L, D)
    assert (match.sum(dim=0) >= 1).all()
    out.sum().backward()
    assert itf.logits[0].grad.abs().sum() > 0  # straight-through gradient reaches the logits
    ev, _ = itf.eval()([x], [n])
    torch.testing.assert_close(ev, x[:, 0])  # zero logits: argmax is state 0


def test_gumd_learns_the_informative_layer_and_reports_it():
    torch.manual_seed(0)
    x = torch.randn(8, 4, 6, 5)
    itf = build("gumd", [(4, 5)], linear_steps=50, exp_steps=100)
    opt = torch.optim.Adam(itf.parameters(), lr=0.05)
    n = torch.full((8,), 6)
    for step in range(150):
        itf.step(step)
        out, _ = itf([x], [n])
        loss = (out - x[:, 2]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    s = itf.learned_summary()
    assert (s["selected_layer"][0] == 2).all()
    assert s["histogram"][0].tolist() == [0, 0, 5, 0]
    assert s["temperature"] < 0.1


def test_chconv_projects_back_and_is_larger_than_hconv():
    shapes = [(13, 768), (13, 768)]
    ch, h = build("chconv", shapes), build("hconv", shapes)
    assert ch.out_dim == 768 and h.out_dim == 768
    assert count_parameters(h) == 4_424_832
    assert count_parameters(ch) > 3 * count_parameters(h)
    x = [torch.randn(1, 13, 3, 768), torch.randn(1, 13, 3, 768)]
    out, _ = ch(x, [torch.tensor([3])] * 2)
    assert out.shape == (1, 3, 768)


def test_registry_errors_are_clear():
    with pytest.raises(
        ValueError, match="unknown interface `conv`; did you mean `hconv` or `chconv`"
    ):
        build("conv", [(13, 768)])
    with pytest.raises(ValueError, match="one .L, D. shape"):
        build("ws", [])
    with pytest.raises(TypeError, match="bad keyword"):
        build("ws", [(13, 768)], nonsense=1)
    itf = build("ws", [(2, 4), (2, 4)])
    with pytest.raises(ValueError, match="built for 2 upstream"):
        itf([torch.randn(1, 2, 3, 4)], [torch.tensor([3])])


def test_layer_subsets_still_build():
    for L in (1, 2, 4):
        itf = build("hconv", [(L, 768)])
        out, _ = itf([torch.randn(1, L, 3, 768)], [torch.tensor([3])])
        assert out.shape == (1, 3, itf.out_dim)


def test_each_interface_module_registers_its_own_name():
    """pipeline/interfaces/NAME.py defines the interface NAME: the name table (read from the
    files, nothing imported) and the registry (filled when a module is imported) agree."""
    assert names.module_names("interface") == ["chconv", "gumd", "hconv", "ws"]
    for name in names.module_names("interface"):
        assert interface_class(name).name == name and REGISTRY[name].name == name
