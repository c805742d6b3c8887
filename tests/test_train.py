"""The training engine: a run directory, resume after a kill, config refusal, early stopping, config."""

from __future__ import annotations

import json

import pytest
import torch

import pipeline.train.loop as train_mod
from pipeline.train.config import (
    ConfigError,
    RunConfig,
    TrainSettings,
    load_run_config,
    resolve_config,
)
from pipeline.train.loop import RunDirError, train
from tests.train_fixtures import make_er_suite


@pytest.fixture(scope="module")
def er_suite(tmp_path_factory):
    return make_er_suite(tmp_path_factory.mktemp("er"))


def _cfg(er_suite, out, interface="ws", **train_kw):
    data, cache = er_suite
    sets = [
        f"train.{k}={v}" for k, v in {"steps": 24, "eval_every": 8, "lr": 0.01, **train_kw}.items()
    ]
    return resolve_config(
        interface=interface,
        models="up_a,up_b",
        task="er",
        data=data,
        cache=cache,
        out=out,
        sets=sets,
    )


def _weights(run_dir, name="last.pt"):
    ck = torch.load(run_dir / "checkpoints" / name, weights_only=True)
    return {
        **{f"i.{k}": v for k, v in ck["interface"].items()},
        **{f"h.{k}": v for k, v in ck["head"].items()},
    }


def test_run_dir_holds_config_log_metrics_and_summary(er_suite, tmp_path, capsys):
    run = train(_cfg(er_suite, tmp_path / "run"), progress=False)
    err = capsys.readouterr().err
    assert "trainable parameters: interface" in err
    assert (run / "config.yaml").exists() and load_run_config(run / "config.yaml").models == [
        "up_a",
        "up_b",
    ]
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [8, 16, 24]
    assert all("train_loss" in x and "dev_accuracy" in x for x in log)
    metrics = json.loads((run / "metrics.json").read_text())
    assert [m["split"] for m in metrics] == ["dev", "test"]
    for m in metrics:
        assert m["task"] == "er" and m["metric"] == "accuracy" and m["direction"] == "higher"
        assert m["value"] > 0.6  # chance 0.25: the class sits in layer 1 of up_a
        # the run records which stored states (and encoding) it saw, one entry per store
        assert len(m["stores"]) == 2 and all(s["layers"] for s in m["stores"])
    assert isinstance(json.loads((run / "interface_summary.json").read_text()), dict)
    assert (run / "checkpoints" / "best.pt").exists()


def test_killed_run_resumes_and_matches_uninterrupted(er_suite, tmp_path, monkeypatch, capsys):
    full = train(_cfg(er_suite, tmp_path / "full", interface="gumd"), progress=False)

    real_save = train_mod.atomic_save

    def save_then_die(obj, path):
        real_save(obj, path)
        if path.name == "last.pt":
            raise KeyboardInterrupt("simulated kill after the first checkpoint")

    monkeypatch.setattr(train_mod, "atomic_save", save_then_die)
    cfg = _cfg(er_suite, tmp_path / "killed", interface="gumd")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    assert not (tmp_path / "killed" / "metrics.json").exists()
    monkeypatch.setattr(train_mod, "atomic_save", real_save)
    capsys.readouterr()
    resumed = train(cfg, progress=False)
    assert "resumed from step 8" in capsys.readouterr().err
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (full / "log.jsonl").read_text().count("\n") == (
        resumed / "log.jsonl"
    ).read_text().count("\n")
    assert json.loads((full / "metrics.json").read_text())[1]["value"] == pytest.approx(
        json.loads((resumed / "metrics.json").read_text())[1]["value"]
    )


def test_other_config_in_run_dir_is_refused_unless_forced(er_suite, tmp_path):
    train(_cfg(er_suite, tmp_path / "run", steps=8), progress=False)
    with pytest.raises(RunDirError, match="different config"):
        train(_cfg(er_suite, tmp_path / "run", steps=8, lr=0.02), progress=False)
    run = train(_cfg(er_suite, tmp_path / "run", steps=8, lr=0.02), force=True, progress=False)
    assert load_run_config(run / "config.yaml").train.lr == 0.02


def test_early_stopping_after_patience_evaluations(er_suite, tmp_path):
    # lr 1e-12 (0 is refused): updates far below float32 rounding, the dev metric never improves
    run = train(_cfg(er_suite, tmp_path / "run", lr=1e-12, patience=1, steps=80), progress=False)
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [8, 16]


def test_config_overrides_resolve(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  steps: 77\n  lr: 1e-3\ninterface_args:\n  layer_norm: true\n")
    cfg = resolve_config(
        interface="hconv",
        models="a,b",
        task="er",
        config=f,
        sets=["lr=3e-4", "train.accum=2", "task_args.hidden=64", "models=c"],
        device="cpu",
    )
    assert isinstance(cfg, RunConfig) and isinstance(cfg.train, TrainSettings)
    assert cfg.train.steps == 77  # file over task defaults
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(
        cfg.train.lr, float
    )  # --set over file
    assert cfg.train.accum == 2 and cfg.task_args["hidden"] == 64
    assert cfg.interface_args == {"layer_norm": True}
    assert cfg.models == ["a", "b"]  # the command line over --set
    assert cfg.train.device == "cpu" and cfg.train.batch_size == 8  # er default
    with pytest.raises(ConfigError, match="unknown key"):
        resolve_config(models="a", sets=["train.nope=1"])
    with pytest.raises(ConfigError, match="not a valid int"):
        resolve_config(models="a", sets=["steps=many"])


def test_onthefly_mode_runs_the_upstream_inside_the_step(tmp_path, monkeypatch):
    import numpy as np

    import pipeline.upstreams.registry as registry
    from pipeline.audio import write_wav
    from pipeline.data.manifest import Utterance, write_manifest
    from pipeline.upstreams.hf import tiny_random_hf

    rng = np.random.default_rng(0)
    for split, n in {"train": 8, "dev": 4, "test": 4}.items():
        utts = []
        for i in range(n):
            wav = write_wav(tmp_path / "wav" / f"{split}{i}.wav", 0.1 * rng.standard_normal(8000 + 800 * i).astype(np.float32))  # fmt: skip
            utts.append(Utterance(f"{split}{i}", str(wav), 0.5 + 0.05 * i, 16000, split, emotion=["neu", "sad"][i % 2]))  # fmt: skip
        write_manifest(tmp_path / "data" / f"{split}.jsonl", utts)
    calls = []

    def fake_load(name, device="cpu", whisper_mode="pad30", **kw):
        calls.append(name)
        return tiny_random_hf("wavlm", device=device)

    monkeypatch.setattr(registry, "load_upstream", fake_load)
    cfg = resolve_config(
        interface="ws", models="tiny_wavlm", task="er", data=tmp_path / "data", cache=tmp_path / "no-cache",
        out=tmp_path / "run", sets=["steps=4", "eval_every=2", "batch_size=4", "features=onthefly"],
    )  # fmt: skip
    run = train(cfg, progress=False)
    assert calls == ["tiny_wavlm"]  # no store was opened: the cache dir does not even exist
    metrics = json.loads((run / "metrics.json").read_text())
    assert [m["split"] for m in metrics] == ["dev", "test"] and all(
        0 <= m["value"] <= 1 for m in metrics
    )
