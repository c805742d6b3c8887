"""Input-state importance of a trained interface: zero-ablation and the tap-normalised norms."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pipeline.analysis.importance import state_importance, tap_counts, tap_normalized_norms
from pipeline.cli import app
from pipeline.interfaces import build
from pipeline.interfaces.hconv import HConvStack
from pipeline.report.importance import run_importance
from pipeline.report.runs import load_runs
from tests.train_fixtures import make_er_suite


def _batches(scales: list[float], n: int = 3, T: int = 6, D: int = 8, upstreams: int = 1):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        feats = [torch.randn(2, len(scales), T, D, generator=g) * torch.tensor(scales)[None, :, None, None]
                 for _ in range(upstreams)]  # fmt: skip
        lengths = [torch.tensor([T, T - 2]) for _ in range(upstreams)]
        for f in feats:
            f[1, :, T - 2 :] = 0  # padding frames are zero, as the loader gives them
        out.append((feats, lengths))
    return out


def test_a_silent_state_scores_zero_and_the_signal_ranks_first():
    torch.manual_seed(0)
    hconv = build("hconv", [(5, 8)])
    imp = state_importance(hconv, _batches([0.0, 0.1, 3.0, 0.1, 0.1]))[0]
    assert imp.shape == (5,)
    assert imp[0] == pytest.approx(0.0, abs=1e-9)  # constant zero: zeroing it changes nothing
    assert int(np.argmax(imp)) == 2 and imp[2] > 5 * max(imp[1], imp[3], imp[4])


def test_fused_inputs_get_one_importance_per_upstream_state():
    torch.manual_seed(0)
    chconv = build("chconv", [(5, 8), (5, 8)])
    scales = [0.1, 0.1, 0.1, 2.0, 0.1]
    imp = state_importance(chconv, _batches(scales, upstreams=2))
    assert [a.shape for a in imp] == [(5,), (5,)]
    assert all(int(np.argmax(a)) == 3 for a in imp)


def test_an_ignored_state_scores_zero_whatever_its_size():
    """A state no kernel tap reads (its first-conv weights zeroed) is large but irrelevant."""
    torch.manual_seed(0)
    hconv = build("hconv", [(5, 8)])
    conv = hconv.hconv.transforms[0]
    with torch.no_grad():  # output position 1 reads states 1..5 with taps 0..4; p 0 reads 0..2
        conv.weight[:, :, 4] = 0  # tap 4 reads state 2 (p=0) only
        conv.weight[:, :, 1] = 0  # tap 1 reads state 2 (p=1) only
    imp = state_importance(hconv, _batches([1.0, 1.0, 10.0, 1.0, 1.0]))[0]
    assert imp[2] == pytest.approx(0.0, abs=1e-9) and imp.min() == imp[2]


def test_tap_normalised_norms_remove_the_kernel_geometry():
    assert tap_counts(7).tolist() == [1, 2, 2, 1, 2, 2, 1]  # kernel 5, stride 3, padding 2
    stack = HConvStack(7, 8)
    with torch.no_grad():
        stack.transforms[0].weight.fill_(0.5)  # every tap alike: nothing learned
    raw = stack.first_conv_norms()
    assert raw.max() / raw.min() == pytest.approx(np.sqrt(2))  # the geometry shows up raw
    assert np.allclose(tap_normalized_norms(raw), raw.min())  # and is gone normalised


def test_no_batches_is_an_error():
    with pytest.raises(ValueError, match="no batches"):
        state_importance(build("ws", [(3, 4)]), [])


def test_a_trained_runs_importance_from_its_checkpoint_and_stores(tmp_path):
    """`pipeline train` an HConv fusion of two fake stores, then the report's ablation of it;
    with the stores gone the run gives None (the figure falls back)."""
    data, cache = make_er_suite(tmp_path / "suite")
    run = tmp_path / "runs" / "r"
    args = ["train", "--interface", "hconv", "--models", "up_a,up_b", "--task", "er", "--data",
            str(data), "--cache", str(cache), "--out", str(run), "--device", "cpu",
            "--set", "train.steps=8", "--set", "train.eval_every=4"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (r,) = load_runs(tmp_path / "runs").values()
    imp = run_importance(r)
    assert imp is not None and len(imp) == 2
    assert all(a.ndim == 1 and np.all(a >= 0) and a.max() > 0 for a in imp)
    shutil.rmtree(cache / "up_b.zarr")
    assert run_importance(r) is None


def test_a_store_rebuilt_after_training_is_refused_as_evaluate_refuses_it(tmp_path):
    """The report's ablation reads the run's stores: one rebuilt since the run trained (another
    weights hash in its fingerprint) is refused with the field named, by run_importance and by
    `pipeline report` (one `error:`, no traceback), not measured silently."""
    from pipeline.feed.run_inputs import InputsChanged

    data, cache = make_er_suite(tmp_path / "suite")
    run = tmp_path / "runs" / "r"
    args = ["train", "--interface", "hconv", "--models", "up_a,up_b", "--task", "er", "--data",
            str(data), "--cache", str(cache), "--out", str(run), "--device", "cpu",
            "--set", "train.steps=4", "--set", "train.eval_every=2"]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    (r,) = load_runs(tmp_path / "runs").values()
    assert run_importance(r) is not None
    _, other = make_er_suite(tmp_path / "rebuilt", weights_hash="1")
    shutil.rmtree(cache / "up_b.zarr")
    shutil.copytree(other / "up_b.zarr", cache / "up_b.zarr")
    with pytest.raises(InputsChanged, match="weights_hash"):
        run_importance(r)
    res = CliRunner().invoke(
        app, ["report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "results")]
    )
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "error: report, run r:" in res.output and "--no-importance" in res.output
    res = CliRunner().invoke(
        app, ["report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "results"),
              "--no-importance"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
