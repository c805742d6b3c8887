"""The out-of-domain split test_unseen shares no voice or engine setting with training.

Checked on the plans of both presets (planning makes no audio, so `demo` is cheap here).
"""

from __future__ import annotations

import json

import pytest

from pipeline.data.synth import TASKS, draw_specs
from pipeline.data.voices import (
    ALL_VARIANTS,
    FLITE_VOICES,
    FLITE_VOICES_UNSEEN,
    PITCH,
    RATE,
    UNSEEN_VARIANTS,
    VARIANTS,
)


def _parts(spec) -> tuple[str, str | None]:
    """(engine voice or eSpeak accent, eSpeak variant or None)."""
    if spec.engine == "flite":
        return f"flite:{spec.voice}", None
    accent, variant = spec.voice.split("+")
    return f"espeak:{accent}", variant


@pytest.mark.parametrize("preset", ["tiny", "demo"])
@pytest.mark.parametrize("task", TASKS)
def test_unseen_split_shares_no_voice_or_setting_with_training(task, preset):
    specs = draw_specs(task, preset, seed=0)
    train = [s for s in specs if s.split == "train"]
    unseen = [s for s in specs if s.split == "test_unseen"]
    assert train and unseen
    train_variants = {_parts(s)[1] for s in train} - {None}
    unseen_variants = {_parts(s)[1] for s in unseen} - {None}
    assert train_variants.isdisjoint(unseen_variants)
    assert {s.setting for s in train}.isdisjoint({s.setting for s in unseen})
    assert {s.speaker for s in train}.isdisjoint({s.speaker for s in unseen})
    flite_unseen = {s.voice for s in unseen if s.engine == "flite"}
    assert {s.voice for s in train if s.engine == "flite"}.isdisjoint(flite_unseen)
    if task != "ml_asr":  # English only: every accent is held out, not just the variants
        assert {_parts(s)[0] for s in train}.isdisjoint({_parts(s)[0] for s in unseen})
    if task != "er":  # ER's prosody is its label, so only its voices change
        for s in unseen:
            in_pitch = PITCH[0] <= s.pitch <= PITCH[1]
            assert not in_pitch and not RATE[0] <= s.rate <= RATE[1], s
        assert all(s.aug.is_identity for s in unseen)


@pytest.mark.parametrize("preset", ["tiny", "demo"])
def test_asr_unseen_sentences_are_in_no_other_split(preset):
    specs = draw_specs("asr_en", preset, seed=0)
    unseen = [s.text for s in specs if s.split == "test_unseen"]
    others = {s.text for s in specs if s.split != "test_unseen"}
    assert len(unseen) == len(set(unseen))
    assert others.isdisjoint(unseen)


def test_voice_pools_are_disjoint_and_demo_uses_both_engines_everywhere():
    assert set(VARIANTS).isdisjoint(UNSEEN_VARIANTS)
    assert set(VARIANTS) | set(UNSEEN_VARIANTS) == set(ALL_VARIANTS)
    assert set(FLITE_VOICES).isdisjoint(FLITE_VOICES_UNSEEN)
    specs = draw_specs("asr_en", "demo", seed=0)
    for split in ("train", "dev", "test", "test_unseen"):
        engines = [s.engine for s in specs if s.split == split]
        assert 0.2 < engines.count("flite") / len(engines) < 0.65, split
    train = [s for s in specs if s.split == "train"]
    assert len({s.voice for s in train}) > 150  # far more voices than eSpeak's defaults
    assert sum(not s.aug.is_identity for s in train) > len(train) / 2


def test_suite_json_documents_the_voices_per_split(tiny_suite):
    meta = json.loads((tiny_suite / "suite.json").read_text())
    voices = meta["voices"]
    assert voices["test_unseen"]["flite_voices"] == list(FLITE_VOICES_UNSEEN)
    assert voices["train/dev/test"]["espeak_variants"] == list(VARIANTS)
    assert voices["ml_asr_accents"]["fra"] == {"seen": ["fr-fr", "fr-be"], "unseen": ["fr-ch"]}
    assert meta["flite"].startswith("flite-")
    for task in TASKS:
        assert meta["tasks"][task]["test_unseen"]["augmented"] == 0
        assert (tiny_suite / task / "test_unseen.jsonl").is_file()
    assert meta["tasks"]["sv"]["trials_test_unseen"]["file"] == "trials_test_unseen.tsv"
