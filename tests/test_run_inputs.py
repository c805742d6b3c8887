"""A run knows what it was trained on: inputs.json, refusals of changed stores and manifests."""

from __future__ import annotations

import json
import shutil

import pytest

from pipeline.data.manifest import read_manifest, write_manifest
from pipeline.feed.run_inputs import InputsChanged, ManifestStoreMismatch
from pipeline.train.config import resolve_config
from pipeline.train.evaluate import evaluate
from pipeline.train.loop import train
from tests.train_fixtures import make_er_suite

SIZES = {"train": 24, "dev": 8, "test": 8, "test_unseen": 6}


def _suite(root, **kw):
    data, cache = make_er_suite(root, sizes=SIZES, **kw)
    for p in data.glob("*.jsonl"):  # real audio files, so their sizes enter the split hash
        for u in read_manifest(p, check_files=False):
            with open(u.path, "wb") as f:
                f.write(b"\0" * 100)
    return data, cache


def _cfg(data, cache, out, steps=4):
    return resolve_config(
        interface="ws", models="up_a,up_b", task="er", data=data, cache=cache, out=out,
        sets=[f"train.steps={steps}", "train.eval_every=2", "train.lr=0.01", "train.device=cpu"],
    )  # fmt: skip


def _rebuild_store(root, cache, model, sizes=SIZES, seed=0):
    """Replace cache/<model>.zarr by a store of the same frames with another weights_hash."""
    _, other = make_er_suite(root / "rebuilt", sizes=sizes, seed=seed, weights_hash="1")
    shutil.rmtree(cache / f"{model}.zarr")
    shutil.copytree(other / f"{model}.zarr", cache / f"{model}.zarr")


def test_inputs_are_recorded_and_every_non_train_split_is_scored(tmp_path):
    data, cache = _suite(tmp_path)
    run = train(_cfg(data, cache, tmp_path / "run"), progress=False)
    inputs = json.loads((run / "inputs.json").read_text())
    assert set(inputs["stores"]) == {"up_a", "up_b"}
    assert inputs["stores"]["up_b"]["fingerprint"]["dim"] == 6
    assert set(inputs["splits"]) == set(SIZES)
    assert inputs["splits"]["test_unseen"]["utterances"] == 6
    metrics = json.loads((run / "metrics.json").read_text())
    assert [m["split"] for m in metrics] == ["dev", "test", "test_unseen"]
    assert metrics[2]["num_utts"] == 6 and metrics[2]["inputs"] == inputs


def test_resume_refuses_a_rebuilt_store_and_force_retrains(tmp_path):
    data, cache = _suite(tmp_path)
    cfg = _cfg(data, cache, tmp_path / "run")
    run = train(cfg, progress=False)
    _rebuild_store(tmp_path, cache, "up_b")
    with pytest.raises(InputsChanged, match=r"(?s)up_b\.zarr \(up_b\): weights_hash was '0'.*now '1'.*--force"):  # fmt: skip
        train(cfg, progress=False)
    train(cfg, force=True, progress=False)  # from scratch on the new store
    inputs = json.loads((run / "inputs.json").read_text())
    assert inputs["stores"]["up_b"]["fingerprint"]["weights_hash"] == "1"
    assert [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()] == [2, 4]


def test_resume_refuses_swapped_audio_and_changed_manifests(tmp_path):
    data, cache = _suite(tmp_path)
    cfg = _cfg(data, cache, tmp_path / "run")
    train(cfg, progress=False)
    wav = read_manifest(data / "test.jsonl", check_files=False)[3].path
    with open(wav, "wb") as f:  # another recording under the same id and duration
        f.write(b"\0" * 120)
    with pytest.raises(InputsChanged, match=r"manifest .*test\.jsonl: its utterances"):
        train(cfg, progress=False)


def test_training_refuses_a_manifest_that_disagrees_with_the_store(tmp_path):
    data, cache = _suite(tmp_path)
    dev = read_manifest(data / "dev.jsonl", check_files=False)
    for u in dev[:3]:
        u.duration += 1.0
    write_manifest(data / "dev.jsonl", dev)
    with pytest.raises(ManifestStoreMismatch) as e:
        train(_cfg(data, cache, tmp_path / "run"), progress=False)
    msg = str(e.value)
    assert "3 utterance(s) of" in msg and "dev.jsonl" in msg and "up_a.zarr" in msg
    assert all(u.id in msg for u in dev[:3]) and dev[3].id not in msg
    # ids the store does not hold: named, with the right advice
    extra = dev[0].__class__("dev-999", "x.wav", 0.3, 16000, "dev", emotion="neu")
    write_manifest(data / "dev.jsonl", [*dev[3:], extra])
    with pytest.raises(ManifestStoreMismatch, match=r"(?s)lacks 1 of the 6 utterances.*dev-999.*--force"):  # fmt: skip
        train(_cfg(data, cache, tmp_path / "run2"), progress=False)


def test_evaluate_refuses_a_store_whose_fingerprint_changed(tmp_path):
    data, cache = _suite(tmp_path)
    run = train(_cfg(data, cache, tmp_path / "run"), progress=False)
    assert evaluate(run, split="test_unseen", device="cpu").name == "eval_test_unseen.json"
    _rebuild_store(tmp_path, cache, "up_a")
    with pytest.raises(InputsChanged, match=r"(?s)up_a.zarr \(up_a\): weights_hash.*retrain"):
        evaluate(run, device="cpu")
    # another dataset's stores: manifest_hash may differ, the upstream's fields may not
    data2, cache2 = make_er_suite(tmp_path / "two", sizes={"train": 4, "test": 6}, seed=3)
    evaluate(run, data=data2, cache=cache2, device="cpu")
    _rebuild_store(tmp_path / "x", cache2, "up_a", sizes={"train": 4, "test": 6}, seed=3)
    with pytest.raises(InputsChanged, match="weights_hash"):
        evaluate(run, data=data2, cache=cache2, device="cpu")
