"""The built-in offline suite: four SUPERB-style tasks spoken by eSpeak NG and Flite, nothing downloaded.

    out/
      suite.json                       preset, seed, versions, voices per split, utterances and
                                       seconds per split
      asr_en/{train,dev,test,test_unseen}.jsonl
                                       English sentences of 3-8 real words; text in the SUPERB
                                       character set (A-Z, apostrophe, space); scored by WER
      ml_asr/<same splits>.jsonl       8 ML-SUPERB languages eSpeak NG speaks (eng fra deu rus
                                       swa swe jpn cmn); text in the language's own script,
                                       lower-cased, no punctuation; every split holds them all
      sv/<same splits>.jsonl           fixed synthetic speakers (engine x voice x pitch x rate);
      sv/trials.tsv                    train, test and test_unseen speakers disjoint, dev =
      sv/trials_test_unseen.tsv        held-out utterances of train speakers; trials among the
                                       test (test_unseen) utterances
      er/<same splits>.jsonl           four prosody classes standing in for neu/hap/ang/sad
      <task>/wav/<id>.wav              16 kHz mono PCM16

Voices (pipeline.data.voices has the full table): train, dev and test are one distribution:
six eSpeak NG English accents x 58 voice variants and three Flite voices (kal16, awb, rms;
35 % of the English utterances), eSpeak pitch 25-75 and 135-200 words a minute, with
augmentation (pipeline.data.augment): speed 0.9/1.0/1.1 (ASR tasks only), room
reverberation (30 %), white/pink/brown noise at 5-30 dB SNR (40-50 %). `test_unseen` is the
out-of-domain split: only voices never used in the other splits (eSpeak accents en-029 and
en-gb-x-gbcwmd with 18 held-out variants, Flite's slt for half the English utterances),
pitch 8-20 or 80-92 and 110-128 or 208-230 words a minute, no augmentation; asr_en's
test_unseen sentences appear in no other split. ml_asr's other languages are eSpeak-only:
their unseen voices are a held-out accent (fr-ch, ru-lv) or the language's voice with a
held-out variant, pitch and rate. ER keeps its class prosody in test_unseen (it is the label)
and changes only the voices.

How hard test_unseen is (demo, seed 0, measured): the full Whisper base model (encoder and
decoder) transcribes asr_en's test_unseen at WER 0.55 (Flite slt 0.40, the held-out eSpeak
voices at extreme pitch and rate 0.71); the sentences are random word strings, so no
language model helps. `pipeline data synth --preset demo` (93 minutes of audio) took 46 s
on 2 busy cores.

Every utterance is drawn as a spec by pipeline.data.synth_specs (deterministic for a seed);
`render` turns one spec into a wav. Words come from pipeline/data/words/ (hand-written).
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from pipeline.audio import write_wav
from pipeline.data.augment import apply
from pipeline.data.manifest import write_manifest, write_trials
from pipeline.data.synth_specs import (
    ALL_SPLITS,
    EMOTIONS,
    PRESETS,
    SAMPLE_RATE,
    TASKS,
    UNSEEN,
    Preset,
    UttSpec,
    draw_specs,
    er_parameters,
    make_trials,
    sv_speakers,
    voice_table,
    words,
)
from pipeline.data.voices import SynthError, espeak_version, flite_version, speak

__all__ = [
    "ALL_SPLITS", "EMOTIONS", "PRESETS", "SAMPLE_RATE", "SYNTH_VERSION", "TASKS", "Preset",
    "SynthError", "UttSpec", "draw_specs", "er_parameters", "make_trials", "render", "sv_speakers",
    "synthesize", "words",
]  # fmt: skip

SYNTH_VERSION = 2  # bump whenever a change alters the audio or the manifests


def render(spec: UttSpec, path: str | Path) -> float:
    """Synthesise one utterance into a 16 kHz mono PCM16 wav at `path`; returns its duration (s)."""
    audio, sr = speak(
        spec.engine, spec.voice, spec.pitch, spec.rate, spec.amplitude, spec.pitch_range,
        spec.speak, spec.id,
    )  # fmt: skip
    if sr != SAMPLE_RATE:
        # polyphase FIR (22050 -> 16000 is 320/441): exact, single-threaded and deterministic;
        # 20x cheaper than torchaudio's resample here, whose threads fight the engine pool
        g = gcd(sr, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, sr // g).astype(np.float32)
    audio = apply(audio, spec.aug)
    write_wav(path, audio, SAMPLE_RATE)
    return round(len(audio) / SAMPLE_RATE, 4)


def synthesize(
    out: str | Path, preset: str = "demo", seed: int = 0, workers: int | None = None
) -> Path:
    """Build the whole suite under `out` (layout in the module docstring) and return `out`.

    Returns at once when out/suite.json records the same preset, sizes, seed, code and engine
    versions. `workers` engine processes run at a time (default: min(4, CPUs)); the files do
    not depend on it.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    out = Path(out)
    key = {
        "preset": preset,
        "seed": seed,
        "synth_version": SYNTH_VERSION,
        "espeak_ng": espeak_version(),
        "flite": flite_version(),
        "preset_sizes": asdict(PRESETS[preset]),  # a resized preset is a different suite
    }
    key = json.loads(json.dumps(key))  # tuples -> lists, as suite.json holds them
    meta_path = out / "suite.json"
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            old = {}
        if all(old.get(k) == v for k, v in key.items()):
            return out
        meta_path.unlink()  # a different suite: rebuild
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        tasks = {
            task: _build_task(out / task, draw_specs(task, preset, seed), seed, pool)
            for task in TASKS
        }
    total = sum(t[s]["seconds"] for t in tasks.values() for s in ALL_SPLITS)
    meta = {**key, "sample_rate": SAMPLE_RATE, "voices": voice_table()}
    meta |= {"tasks": tasks, "total_seconds": round(total, 2)}
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(meta_path)
    return out


def _build_task(folder: Path, specs: list[UttSpec], seed: int, pool: ThreadPoolExecutor) -> dict:
    """Render one task's wavs, write its manifests (and sv trials); returns its suite.json entry."""
    wav_dir = folder / "wav"
    if wav_dir.exists():
        shutil.rmtree(wav_dir)  # leftovers of another preset
    wav_dir.mkdir(parents=True)
    durations = list(pool.map(lambda s: render(s, wav_dir / f"{s.id}.wav"), specs))
    utts = [s.utterance(d) for s, d in zip(specs, durations, strict=True)]
    info: dict = {}
    for split in ALL_SPLITS:
        part = [u for u in utts if u.split == split]
        split_specs = [s for s in specs if s.split == split]
        write_manifest(folder / f"{split}.jsonl", part)
        info[split] = {
            "utterances": len(part),
            "seconds": round(sum(u.duration for u in part), 2),
            "engines": {e: sum(s.engine == e for s in split_specs) for e in ("espeak", "flite")},
            "augmented": sum(not s.aug.is_identity for s in split_specs),
        }
    if any(u.language for u in utts):
        info["languages"] = sorted({u.language for u in utts if u.language})
    if folder.name == "sv":
        for split, name, key in (("test", "trials.tsv", 2), (UNSEEN, f"trials_{UNSEEN}.tsv", 3)):
            trials = make_trials([s for s in specs if s.split == split], seed, key)
            write_trials(folder / name, trials)
            info[f"trials_{split}"] = {
                "file": name,
                "total": len(trials),
                "target": sum(t[0] for t in trials),
            }
        info["speakers"] = {k: len({u.speaker for u in utts if u.split == k}) for k in ALL_SPLITS}
    return info
