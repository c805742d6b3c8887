"""Packed runs: one pass over the cache for K runs, each bit-identical to the run alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import pipeline.train.loop as train_mod
from pipeline.train.config import resolve_config
from pipeline.train.loop import train
from pipeline.train.pack import PackError, pack_groups, train_packed
from tests.train_fixtures import make_er_suite

# (interface, models, eval_every): fusion rows over two stores and a single-store row, with
# different evaluation schedules so that a kill leaves them at different steps
RUNS = [
    ("ws", "up_a,up_b", 8),
    ("hconv", "up_a,up_b", 6),
    ("gumd", "up_a,up_b", 8),
    ("ws", "up_a", 4),
]


@pytest.fixture(scope="module")
def er_suite(tmp_path_factory):
    return make_er_suite(tmp_path_factory.mktemp("er"), sizes={"train": 40, "dev": 16, "test": 16})


def _cfg(er_suite, out: Path, interface: str, models: str, eval_every: int, **kw):
    data, cache = er_suite
    sets = {"steps": 18, "eval_every": eval_every, "lr": 0.01, "accum": 2, "batch_size": 6, **kw}
    return resolve_config(interface=interface, models=models, task="er", data=data, cache=cache,
                          out=out, sets=[f"train.{k}={v}" for k, v in sets.items()], device="cpu")  # fmt: skip


def _cfgs(er_suite, root: Path, runs=RUNS):
    return [_cfg(er_suite, root / f"{i}-{r[0]}", *r) for i, r in enumerate(runs)]


def _tensors(ck: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a checkpoint (weights, optimizer state, RNG state), by dotted key."""
    out = {}
    for k, v in ck.items():
        key = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            out[key] = v
        elif isinstance(v, dict):
            out.update(_tensors(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out.update(_tensors(dict(enumerate(v)), key + "."))
    return out


def _log(run: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    for x in lines:
        x.pop("time")  # wall time: the one field that may differ
    return lines


def _assert_same_run(alone: Path, packed: Path) -> None:
    for name in ("best.pt", "last.pt"):
        a = torch.load(alone / "checkpoints" / name, weights_only=False)
        b = torch.load(packed / "checkpoints" / name, weights_only=False)
        ta, tb = _tensors(a), _tensors(b)
        assert ta.keys() == tb.keys() and len(ta) >= 5
        bad = [k for k in ta if not torch.equal(ta[k], tb[k])]
        assert not bad, f"{packed}/{name}: tensors differ from the run alone: {bad[:5]}"
        if "state" in a:
            sa, sb = dict(a["state"]), dict(b["state"])
            sa.pop("elapsed"), sb.pop("elapsed")
            assert sa == sb
    assert _log(alone) == _log(packed)
    assert json.loads((alone / "metrics.json").read_text()) == json.loads(
        (packed / "metrics.json").read_text()
    )
    for name in ("task_state.json", "interface_summary.json"):
        assert (alone / name).read_text() == (packed / name).read_text()


@pytest.fixture(scope="module")
def alone(er_suite, tmp_path_factory):
    root = tmp_path_factory.mktemp("alone")
    return [train(c, progress=False) for c in _cfgs(er_suite, root)]


def test_pack_groups_keeps_runs_with_other_batches_apart(er_suite, tmp_path):
    cfgs = _cfgs(er_suite, tmp_path)
    other_seed = _cfg(er_suite, tmp_path / "s", "ws", "up_a", 4, seed=1)
    other_batch = _cfg(er_suite, tmp_path / "b", "ws", "up_b", 4, batch_size=4)
    other_lr = _cfg(er_suite, tmp_path / "l", "hconv", "up_b", 4, lr=0.5, steps=3)
    groups = pack_groups([cfgs[0], other_seed, *cfgs[1:], other_batch, other_lr])
    assert [[c.out for c in g] for g in groups] == [
        [cfgs[0].out, *[c.out for c in cfgs[1:]], other_lr.out],
        [other_seed.out],
        [other_batch.out],
    ]
    with pytest.raises(PackError, match="cannot share one pass"):
        train_packed([cfgs[0], other_seed], progress=False)


def test_packed_runs_are_bit_identical_to_runs_alone(er_suite, alone, tmp_path):
    packed = train_packed(_cfgs(er_suite, tmp_path), progress=False)
    for a, p in zip(alone, packed, strict=True):
        _assert_same_run(a, p)


def test_killed_packed_runs_resume_and_catch_up(er_suite, alone, tmp_path, monkeypatch):
    real_save = train_mod.atomic_save
    saves = []

    def save_then_die(obj, path):
        real_save(obj, path)
        saves.append(path)
        if len([p for p in saves if p.name == "last.pt"]) == 5:
            raise KeyboardInterrupt("simulated kill mid-way")

    monkeypatch.setattr(train_mod, "atomic_save", save_then_die)
    cfgs = _cfgs(er_suite, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        train_packed(cfgs, progress=False)
    monkeypatch.setattr(train_mod, "atomic_save", real_save)
    steps = [torch.load(Path(c.out) / "checkpoints" / "last.pt", weights_only=False)["state"]["step"] for c in cfgs]  # fmt: skip
    assert len(set(steps)) > 1, f"the kill should leave the runs at different steps: {steps}"
    packed = train_packed(cfgs, progress=False)
    for a, p in zip(alone, packed, strict=True):
        _assert_same_run(a, p)


def test_cli_trains_config_files_in_pack_groups(er_suite, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.train.config import save_config

    files = []
    for i, (interface, models, seed) in enumerate([("ws", "up_a,up_b", 0), ("gumd", "up_a", 0), ("ws", "up_b", 1)]):  # fmt: skip
        cfg = _cfg(er_suite, tmp_path / f"run{i}", interface, models, 2, steps=2, seed=seed)
        save_config(cfg, tmp_path / f"c{i}.yaml")
        files.append(str(tmp_path / f"c{i}.yaml"))
    res = CliRunner().invoke(app, ["train-packed", *files])
    assert res.exit_code == 0, res.output
    printed = [w for w in res.output.split() if w.endswith("metrics.json")]
    assert sorted(printed) == sorted(str(tmp_path / f"run{i}" / "metrics.json") for i in range(3))  # fmt: skip
    res = CliRunner().invoke(app, ["train-packed", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 1 and "nope.yaml does not exist" in res.output
