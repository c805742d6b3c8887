"""DDP: `torchrun -m pipeline.cli train` over 2 gloo processes follows the one-process run.

Tolerance: per-evaluation train loss and final weights agree to rtol 1e-4 / atol 1e-6 (the
ranks' partial sums reorder float additions; nothing else differs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pipeline.train.loop as train_mod
from pipeline.feed.loader import BucketBatchSampler, DistributedBucketSampler
from pipeline.train.config import resolve_config
from pipeline.train.loop import train
from tests.train_fixtures import make_er_suite

SETS = {"steps": 10, "eval_every": 2, "lr": 0.01, "batch_size": 8, "threads": 1}


@pytest.fixture(scope="module")
def er_suite(tmp_path_factory):
    return make_er_suite(tmp_path_factory.mktemp("er"), sizes={"train": 45, "dev": 8, "test": 8})


def _args(er_suite, out: Path) -> dict:
    data, cache = er_suite
    return dict(interface="gumd", models="up_a,up_b", task="er", data=data, cache=cache, out=out)


def _cfg(er_suite, out: Path):
    return resolve_config(**_args(er_suite, out), sets=[f"train.{k}={v}" for k, v in SETS.items()],
                          device="cpu")  # fmt: skip


def _torchrun(er_suite, out: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "pipeline.cli", "train", "--device", "cpu"]  # fmt: skip
    for k, v in _args(er_suite, out).items():
        cmd += [f"--{k}", str(v)]
    for k, v in SETS.items():
        cmd += ["--set", f"train.{k}={v}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DDP over 2 processes (gloo)" in proc.stderr


def _losses(run: Path) -> np.ndarray:
    return np.array([json.loads(x)["train_loss"] for x in (run / "log.jsonl").read_text().splitlines()])  # fmt: skip


def _assert_close_runs(one: Path, ddp: Path) -> None:
    a, b = _losses(one), _losses(ddp)
    assert len(a) == len(b) == SETS["steps"] // SETS["eval_every"]
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    wa = torch.load(one / "checkpoints" / "last.pt", weights_only=False)
    wb = torch.load(ddp / "checkpoints" / "last.pt", weights_only=False)
    for part in ("interface", "head"):
        for k, v in wa[part].items():
            torch.testing.assert_close(wb[part][k], v, rtol=1e-4, atol=1e-6)
    assert wb["state"]["step"] == SETS["steps"] and (ddp / "metrics.json").exists()


@pytest.fixture(scope="module")
def one_process(er_suite, tmp_path_factory):
    return train(_cfg(er_suite, tmp_path_factory.mktemp("one") / "run"), progress=False)


def test_distributed_sampler_splits_each_global_batch_disjointly():
    durations = np.random.default_rng(0).uniform(1, 9, size=37)
    base = BucketBatchSampler(durations, 8, shuffle=True, seed=3, bucket_batches=2)
    ranks = [DistributedBucketSampler(durations, 8, True, 3, 2, rank=r, world=3) for r in range(3)]
    for epoch in (0, 1):
        parts = [s.batches(epoch) for s in ranks]
        glob = [b for b in base.batches(epoch) if len(b) >= 3]  # the 5-utterance tail is kept
        assert all(len(p) == len(glob) == len(ranks[0]) for p in parts)
        for i, b in enumerate(glob):
            assert sum((p[i] for p in parts), []) == b  # disjoint, complete, in order
    assert ranks[0].batches(0) != ranks[0].batches(1)  # the epoch seeds the order
    with pytest.raises(ValueError, match="outside a world"):
        DistributedBucketSampler(durations, 8, True, rank=2, world=2)


def test_two_gloo_processes_follow_the_one_process_loss(er_suite, one_process, tmp_path):
    _torchrun(er_suite, tmp_path / "ddp")
    _assert_close_runs(one_process, tmp_path / "ddp")


def test_ddp_resumes_a_killed_run(er_suite, one_process, tmp_path, monkeypatch):
    real_save = train_mod.atomic_save
    saved = []

    def save_then_die(obj, path):
        real_save(obj, path)
        saved.append(path.name)
        if saved.count("last.pt") == 2:
            raise KeyboardInterrupt("simulated kill at step 4")

    monkeypatch.setattr(train_mod, "atomic_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(er_suite, tmp_path / "run"), progress=False)
    _torchrun(er_suite, tmp_path / "run")  # resumes step 4's last.pt on both ranks
    _assert_close_runs(one_process, tmp_path / "run")
