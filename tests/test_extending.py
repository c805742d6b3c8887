"""Adding an interface is one module and one `register` call: the toy below is then trained by
`pipeline train` and accepted by the experiment plan, and its label reaches the report."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.interfaces import REGISTRY, Interface, interface_label, register
from pipeline.plan import PlanError, make_plan
from tests.train_fixtures import make_er_suite


class OneLayer(Interface):
    """Toy interface: hidden state `layer` of the first upstream through one Linear."""

    name = "toy_one"
    label = "One layer"

    def __init__(self, shapes: Sequence[tuple[int, int]], frame_rates=None, layer: int = 1,
                 out_dim: int = 8):  # fmt: skip
        super().__init__()
        self.layer = layer
        self.shapes = [(int(L), int(D)) for L, D in shapes]
        self.frame_rates = list(frame_rates) if frame_rates else None
        self.out_dim = out_dim
        self.proj = nn.Linear(self.shapes[0][1], out_dim)

    def forward(self, feats: list[torch.Tensor], lengths: list[torch.Tensor]):
        """feats: N x (B, L_i, T_i, D_i) -> ((B, T_1, out_dim), (B,))."""
        return self.proj(feats[0][:, self.layer].to(self.proj.weight.dtype)), lengths[0]


@pytest.fixture
def toy_registered():
    register(OneLayer)
    yield
    REGISTRY.pop(OneLayer.name, None)


def _experiment(interfaces: list[str]) -> dict:
    return {
        "data": {"suite": "t", "synth": "tiny", "seed": 0, "import": {}},
        "paths": {"data_root": "data", "cache_root": "cache", "runs_root": "runs"},
        "upstreams": {"whisper_tiny_en": {"whisper_mode": "trim"}},
        "tasks": {"er": {"task": "er"}},
        "table": [{"section": "S", "sets": [["whisper_tiny_en"]], "interfaces": interfaces}],
    }


def test_plan_refuses_an_unregistered_interface():
    with pytest.raises(PlanError, match="toy_one"):
        make_plan(_experiment(["toy_one"]))


def test_a_registered_interface_trains_and_is_planned(tmp_path, toy_registered):
    plan = make_plan(_experiment(["ws", "toy_one"]))
    assert sorted(r.interface for r in plan.runs.values()) == ["toy_one", "ws"]
    assert interface_label("toy_one") == "One layer"

    data, cache = make_er_suite(tmp_path / "er", {"train": 32, "dev": 12, "test": 12})
    out = tmp_path / "run"
    res = CliRunner().invoke(
        app,
        ["train", "--interface", "toy_one", "--models", "up_a", "--task", "er", "--data",
         str(data), "--cache", str(cache), "--out", str(out), "--set", "train.steps=20",
         "--set", "train.eval_every=10", "--set", "train.lr=0.01"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics[0]["interface"] == "toy_one"
    test = next(m for m in metrics if m["split"] == "test")
    assert test["value"] > 0.5  # up_a's layer 1 carries the class: learned (chance 0.25)
