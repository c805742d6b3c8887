"""The built-in offline suite (pipeline.data.synth) at preset `tiny`."""
# SPLITS here are all four: train, dev, test and the out-of-domain test_unseen

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from pipeline.data.manifest import read_manifest, read_trials
from pipeline.data.synth import (
    ALL_SPLITS,
    EMOTIONS,
    PRESETS,
    TASKS,
    draw_specs,
    er_parameters,
    render,
    synthesize,
    words,
)

SPLITS = ALL_SPLITS


def _manifest(suite, task, split):
    return read_manifest(suite / task / f"{split}.jsonl")


def test_every_manifest_exists_and_audio_is_16k_mono_speech(tiny_suite):
    for task in TASKS:
        for split in SPLITS:
            utts = _manifest(tiny_suite, task, split)  # also checks that every path exists
            assert len(utts) >= 10, (task, split)
            for u in utts:
                assert u.sample_rate == 16000 and u.split == split
                info = sf.info(u.path)
                assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
                assert info.frames / 16000 == pytest.approx(u.duration, abs=1e-3)
                assert 0.3 < u.duration < 6.0, u.id
                audio, _ = sf.read(u.path, dtype="float32")
                assert np.sqrt(np.mean(audio**2)) > 0.01, f"{u.id} is silent"
    meta = json.loads((tiny_suite / "suite.json").read_text())
    assert meta["preset"] == "tiny" and meta["seed"] == 0 and meta["total_seconds"] > 60


def test_asr_en_text_uses_the_superb_characters(tiny_suite):
    for split in SPLITS:
        for u in _manifest(tiny_suite, "asr_en", split):
            assert re.fullmatch(r"[A-Z']+( [A-Z']+)+", u.text), u.text


def test_ml_asr_has_all_languages_in_every_split_in_their_own_script(tiny_suite):
    scripts = {"cmn": r"[\u4e00-\u9fff]+", "rus": r"[а-яё ]+", "jpn": r"[\u3040-\u30ff]+"}
    for split in SPLITS:
        utts = _manifest(tiny_suite, "ml_asr", split)
        langs = {u.language for u in utts}
        assert len(langs) >= 7 and {"eng", "fra", "deu", "rus", "swa", "swe", "cmn"} <= langs
        for u in utts:
            assert u.text == u.text.lower() and u.text.strip() == u.text
            assert all(c.isalpha() or c == " " for c in u.text), f"punctuation in {u.text!r}"
            if u.language in scripts:
                assert re.fullmatch(scripts[u.language], u.text), (u.language, u.text)


@pytest.mark.parametrize(
    "split,trial_file", [("test", "trials.tsv"), ("test_unseen", "trials_test_unseen.tsv")]
)
def test_sv_speakers_are_disjoint_and_trials_are_balanced(tiny_suite, split, trial_file):
    spk = {s: {u.speaker for u in _manifest(tiny_suite, "sv", s)} for s in SPLITS}
    assert spk["train"].isdisjoint(spk["test"]) and spk["train"].isdisjoint(spk["test_unseen"])
    assert spk["test"].isdisjoint(spk["test_unseen"])
    assert spk["dev"] <= spk["train"]
    assert len(spk["train"] | spk["test"]) >= 40
    test = {u.id: u.speaker for u in _manifest(tiny_suite, "sv", split)}
    trials = read_trials(tiny_suite / "sv" / trial_file)
    assert len(trials) >= 1000 and len(set(trials)) == len(trials)
    labels = [t[0] for t in trials]
    assert 0.4 < np.mean(labels) < 0.6
    for label, a, b in trials:
        assert a in test and b in test and a != b
        assert label == int(test[a] == test[b])


def test_er_classes_are_balanced_and_change_the_audio(tiny_suite):
    rms = {e: [] for e in EMOTIONS}
    for split in SPLITS:
        utts = _manifest(tiny_suite, "er", split)
        counts = {e: sum(u.emotion == e for u in utts) for e in EMOTIONS}
        assert len(set(counts.values())) == 1 and sum(counts.values()) == len(utts), counts
        for u in utts:
            audio, _ = sf.read(u.path, dtype="float32")
            rms[u.emotion].append(np.sqrt(np.mean(audio**2)))
    assert np.mean(rms["ang"]) > np.mean(rms["neu"]) > np.mean(rms["sad"])  # amplitude follows


def test_er_classes_overlap_on_each_parameter_but_separate_jointly():
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(1)
    y = np.arange(2000) % 4
    x = np.array([er_parameters(EMOTIONS[k], rng) for k in y], dtype=float)  # (N, 4)
    joint = cross_val_score(QuadraticDiscriminantAnalysis(), x, y, cv=3).mean()
    assert joint > 0.9
    for j in range(4):
        single = cross_val_score(QuadraticDiscriminantAnalysis(), x[:, [j]], y, cv=3).mean()
        assert single < 0.8, f"parameter {j} alone gives the class away ({single:.2f})"


def test_same_seed_gives_identical_files(tiny_suite, tmp_path):
    for task in TASKS:
        specs = draw_specs(task, "tiny", seed=0)
        assert specs == draw_specs(task, "tiny", seed=0)
        assert specs != draw_specs(task, "tiny", seed=1)
        # every engine, and augmented as well as clean specs, render byte-identically again
        picks = {(s.engine, s.aug.is_identity, s.aug.noise is None): s for s in specs}
        for spec in list(picks.values()) + specs[:: max(1, len(specs) // 3)]:
            mine = tmp_path / f"{spec.id}.wav"
            render(spec, mine)
            assert mine.read_bytes() == (tiny_suite / task / "wav" / f"{spec.id}.wav").read_bytes()


def test_same_seed_builds_byte_identical_suites(tmp_path, monkeypatch):
    """Two builds of one small suite: every manifest, trial list and wav is byte-identical
    (whatever the worker count); another seed changes them."""
    import dataclasses

    import pipeline.data.synth as synth

    small = dataclasses.replace(
        PRESETS["tiny"], asr_en=(3, 2, 2, 2), ml_asr=(8, 2, 2, 2), er=(4, 4, 4, 4),
        sv_speakers=(4, 3, 3), sv_dev=2, sv_test_per_speaker=2,
    )  # fmt: skip
    monkeypatch.setitem(synth.PRESETS, "small", small)

    def files(root):
        return {
            p.relative_to(root): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "suite.json"
        }

    a = files(synthesize(tmp_path / "a", preset="small", seed=0, workers=2))
    b = files(synthesize(tmp_path / "b", preset="small", seed=0, workers=1))
    c = files(synthesize(tmp_path / "c", preset="small", seed=1, workers=2))
    assert a.keys() == b.keys() and len(a) > 50
    assert [k for k in a if a[k] != b[k]] == []
    assert any(p.suffix == ".jsonl" and a[p] != c[p] for p in a)
    assert any(p.suffix == ".wav" and p in c and a[p] != c[p] for p in a)


def test_finished_suite_is_not_rebuilt(tiny_suite):
    wav = next((tiny_suite / "er" / "wav").iterdir())
    before = wav.stat().st_mtime_ns
    assert synthesize(tiny_suite, preset="tiny", seed=0) == tiny_suite
    assert wav.stat().st_mtime_ns == before


def test_resized_preset_is_rebuilt(tiny_suite, tmp_path, monkeypatch):
    """Regression: suite.json recorded the preset's name only, so new sizes kept the old suite."""
    import dataclasses

    import pipeline.data.synth as synth

    out = tmp_path / "suite"
    out.mkdir()
    (out / "suite.json").write_text((tiny_suite / "suite.json").read_text())
    built = []

    def fake_build(folder, specs, seed, pool):
        built.append((folder.name, len(specs)))
        return {s: {"utterances": 0, "seconds": 0.0} for s in SPLITS}

    monkeypatch.setattr(synth, "_build_task", fake_build)
    synthesize(out, preset="tiny", seed=0)
    assert built == []  # same sizes: nothing to do
    bigger = dataclasses.replace(PRESETS["tiny"], asr_en=(20, 12, 12, 12))
    monkeypatch.setitem(synth.PRESETS, "tiny", bigger)
    synthesize(out, preset="tiny", seed=0)
    assert ("asr_en", 56) in built
    meta = json.loads((out / "suite.json").read_text())
    assert meta["preset_sizes"]["asr_en"] == [20, 12, 12, 12]


def test_word_lists_ship_enough_real_words():
    for lang in ("en", "fr", "de", "ru", "sw", "sv", "ja", "cmn"):
        ws = words(lang)
        assert 150 <= len(ws) <= 300, lang
        assert not any(w.startswith("#") or " " in w for w in ws)


def test_presets_are_consistent():
    for p in PRESETS.values():
        assert all(n % len(EMOTIONS) == 0 for n in p.er)
        assert sum(p.sv_speakers) >= 40
