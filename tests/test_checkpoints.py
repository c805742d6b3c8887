"""Checkpoints are plain data read with weights_only=True: a planted pickle runs no code."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.checkpoint import CheckpointError, load_checkpoint, rng_state, set_rng_state
from pipeline.train.config import resolve_config
from pipeline.train.evaluate import evaluate
from pipeline.train.loop import train
from tests.train_fixtures import make_er_suite


class Planted:
    """Unpickling this writes a marker file: what a malicious .pt would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_rng_state_round_trips_as_plain_data(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    st = rng_state()
    torch.save(st, tmp_path / "rng.pt")
    a = (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn())
    set_rng_state(load_checkpoint(tmp_path / "rng.pt"))
    assert (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn()) == a


def test_a_planted_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "marker"
    bad = tmp_path / "bad.pt"
    torch.save({"interface": Planted(marker)}, bad)
    with pytest.raises(CheckpointError, match=r"bad\.pt holds objects other than tensors"):
        load_checkpoint(bad)
    assert not marker.exists()
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(bad)


def test_resume_and_evaluate_refuse_planted_checkpoints(tmp_path):
    data, cache = make_er_suite(tmp_path, sizes={"train": 16, "dev": 8, "test": 8})
    cfg = resolve_config(
        interface="ws", models="up_a,up_b", task="er", data=data, cache=cache,
        out=tmp_path / "run", sets=["steps=2", "eval_every=2", "device=cpu"],
    )  # fmt: skip
    run = train(cfg, progress=False)
    for name in ("last.pt", "best.pt"):  # what this pipeline writes loads with weights_only
        assert "interface" in torch.load(run / "checkpoints" / name, weights_only=True)
    marker = tmp_path / "marker"
    for name in ("last.pt", "best.pt"):
        ck = torch.load(run / "checkpoints" / name, weights_only=True)
        ck["task_state"] = Planted(marker)
        torch.save(ck, run / "checkpoints" / name)
    with pytest.raises(CheckpointError, match=r"last\.pt holds objects"):
        train(cfg, progress=False)
    with pytest.raises(CheckpointError, match=r"best\.pt holds objects"):
        evaluate(run, device="cpu")
    assert not marker.exists()


def test_report_and_train_packed_refuse_planted_checkpoints(tmp_path, caplog):
    """The report's state importance and `pipeline train-packed` read best.pt / last.pt through
    the one safe loader: the planted code never runs (the report logs why it skipped)."""
    from pipeline.report.importance import run_importance
    from pipeline.report.runs import load_runs
    from pipeline.train.pack import train_packed

    data, cache = make_er_suite(tmp_path, sizes={"train": 16, "dev": 8, "test": 8})
    cfg = resolve_config(
        interface="hconv", models="up_a,up_b", task="er", data=data, cache=cache,
        out=tmp_path / "runs" / "run", sets=["steps=2", "eval_every=2", "device=cpu"],
    )  # fmt: skip
    run = train(cfg, progress=False)
    (result,) = load_runs(tmp_path / "runs").values()
    assert run_importance(result) is not None  # the genuine checkpoint is read
    marker = tmp_path / "marker"
    for name in ("last.pt", "best.pt"):
        torch.save({"interface": Planted(marker)}, run / "checkpoints" / name)
    assert run_importance(result) is None and "holds objects other than tensors" in caplog.text
    with pytest.raises(CheckpointError, match=r"last\.pt holds objects"):
        train_packed([cfg], progress=False)
    assert not marker.exists()


def test_no_other_reader_of_pickles_in_the_package():
    """Every .pt read goes through pipeline/checkpoint.py's load_checkpoint (weights_only)."""
    root = Path(__file__).resolve().parents[1]
    found = []
    for f in sorted([*(root / "pipeline").rglob("*.py"), *(root / "stages").rglob("*.py")]):
        if f.name == "checkpoint.py" and f.parent.name == "pipeline":
            continue
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            if "torch.load(" in code or "import pickle" in code or "pickle.load" in code:
                found.append(f"{f.relative_to(root)}:{i}: {line.strip()}")
    assert found == []
