"""Layer-wise probes: a layer that carries the label is found, a layer of noise stays at chance."""

import json

import numpy as np
import pytest
from fakes import FakeStore

from pipeline.analysis.probe import ProbeConfig, probe_store, run_probes, write_probe
from pipeline.data.manifest import Utterance
from pipeline.tasks.asr import EN_CHARS

D = 16


def utt(uid: str, split: str, **kw) -> Utterance:
    return Utterance(id=uid, path=f"{uid}.wav", duration=1.0, sample_rate=16000, split=split, **kw)


def signal_and_noise(rng, signal: np.ndarray, T: int) -> np.ndarray:
    """(T, 2, D): layer 0 = signal + noise, layer 1 = noise only."""
    x = rng.standard_normal((T, 2, D)) * 1.5
    x[:, 0] += signal
    return x.astype(np.float16)


def er_data(seed=0):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((4, D))
    labels = ("neu", "hap", "ang", "sad")
    splits, arrays = {}, {}
    for split, n in (("train", 80), ("dev", 40), ("test", 80)):
        splits[split] = []
        for i in range(n):
            c = i % 4
            u = utt(f"{split}{i:03d}", split, emotion=labels[c])
            arrays[u.id] = signal_and_noise(rng, means[c], int(rng.integers(20, 40)))
            splits[split].append(u)
    return FakeStore(arrays), splits


def test_er_probe_finds_the_label_layer_and_noise_stays_at_chance(tmp_path):
    store, splits = er_data()
    doc = run_probes({"fake": store}, "er", splits, None, ProbeConfig(steps=150))
    layers = doc["models"]["fake"]["layers"]
    assert doc["chance"] == 0.25 and doc["metric"] == "accuracy"
    assert layers[0]["test"]["value"] > 0.9
    assert layers[1]["test"]["value"] < 0.45  # 4 classes, 80 test utterances: chance ± noise
    assert doc["models"]["fake"]["best_layer"] == {
        "split": "dev",
        "metric": "accuracy",
        "layer": 0,
        "value": layers[0]["dev"]["value"],
    }
    assert [r["depth"] for r in layers] == [0.0, 1.0]
    again = run_probes({"fake": store}, "er", splits, None, ProbeConfig(steps=150))
    assert again["models"]["fake"]["layers"] == layers  # fixed seeds: the same numbers
    js, png = write_probe(doc, tmp_path)
    assert json.loads(js.read_text())["models"]["fake"]["num_layers"] == 2
    assert png.stat().st_size > 1000


def test_sv_probe_embeddings_generalise_to_new_speakers():
    rng = np.random.default_rng(1)
    splits, arrays = {"train": [], "test": []}, {}
    for split, spks, per in (("train", range(0, 16), 6), ("test", range(100, 108), 6)):
        for s in spks:
            mean = rng.standard_normal(D) * 1.5
            for k in range(per):
                u = utt(f"{split}_s{s}_{k}", split, speaker=f"spk{s}")
                arrays[u.id] = signal_and_noise(rng, mean, int(rng.integers(20, 40)))
                splits[split].append(u)
    res = probe_store(FakeStore(arrays), "fake", "sv", splits, None, ProbeConfig(steps=150))
    eers = [r["test"]["value"] for r in res["layers"]]
    assert res["layers"][0]["test"]["metric"] == "eer"
    assert eers[0] < 0.15
    assert eers[1] > 0.3
    assert res["layers"][0]["train"]["accuracy"] > 0.9


def test_ctc_probe_reads_characters_from_the_right_layer():
    rng = np.random.default_rng(2)
    letters = EN_CHARS[1:6]  # A..E
    emb = {c: rng.standard_normal(D) * 2.0 for c in letters}
    silence = rng.standard_normal(D) * 2.0
    splits, arrays = {}, {}
    for split, n in (("train", 48), ("test", 16)):
        splits[split] = []
        for i in range(n):
            text = "".join(rng.choice(letters, size=int(rng.integers(3, 6))))
            frames = [silence] * 2
            for ch in text:
                frames += [emb[ch]] * 3 + [silence] * 2
            sig = np.stack(frames)  # (T, D)
            u = utt(f"{split}{i:03d}", split, text=text)
            x = rng.standard_normal((len(sig), 2, D)) * 0.5
            x[:, 0] += sig
            arrays[u.id] = x.astype(np.float16)
            splits[split].append(u)
    res = probe_store(
        FakeStore(arrays), "fake", "asr_en", splits, None, ProbeConfig(steps=300, lr=2e-2)
    )
    assert res["best_layer"]["metric"] == "cer" and res["best_layer"]["layer"] == 0
    cer_signal = res["layers"][0]["test"]["cer"]
    cer_noise = res["layers"][1]["test"]["cer"]
    assert cer_signal < 0.3
    assert cer_noise > 0.6


def test_probe_names_a_missing_utterance():
    store, splits = er_data()
    del store.arrays["test005"]
    with pytest.raises(KeyError, match="test005"):
        probe_store(store, "fake", "er", splits, None, ProbeConfig(steps=5))
