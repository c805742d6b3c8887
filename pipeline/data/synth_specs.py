"""The built-in suite as specs: every utterance as a `UttSpec` (text, engine, voice, prosody,
augmentation), drawn from a generator seeded by (seed, task, index) alone, so the suite is
identical whatever the pool size or order. No audio is made here (see pipeline.data.synth).

Splits are train, dev, test (one distribution: the seen voices of pipeline.data.voices,
with augmentation) and test_unseen (the unseen voices, engine voice and pitch/rate ranges,
clean audio; for asr_en also no sentence of the other splits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from itertools import combinations

import numpy as np

from pipeline.data.augment import NONE, SPEEDS, Augment, AugmentPolicy
from pipeline.data.manifest import Utterance
from pipeline.data.voices import (
    EN_ACCENTS,
    EN_ACCENTS_UNSEEN,
    FLITE_VOICES,
    FLITE_VOICES_UNSEEN,
    ML_LANGUAGES,
    PITCH,
    PITCH_UNSEEN,
    RATE,
    RATE_UNSEEN,
    UNSEEN_VARIANTS,
    VARIANTS,
    SynthError,
    espeak_voice,
    pick,
    pitch_rate,
)

SAMPLE_RATE = 16000
TASKS = ("asr_en", "ml_asr", "sv", "er")
ALL_SPLITS = ("train", "dev", "test", "test_unseen")
UNSEEN = "test_unseen"
_TASK_KEY = {"asr_en": 1, "ml_asr": 2, "sv": 3, "er": 4}  # seeds the per-task streams
_UNSPACED = {"jpn", "cmn"}  # scripts written without spaces between words

P_FLITE = 0.35  # share of English utterances (and sv speakers' chance) spoken by Flite, seen
P_FLITE_UNSEEN = 0.5  # ... and in test_unseen (slt)
# train/dev/test augmentation; ER and SV keep the speed (it is their label's cue)
AUG_ASR = AugmentPolicy(speed=SPEEDS, p_reverb=0.3, p_noise=0.5)
AUG_KEEP_SPEED = AugmentPolicy(p_reverb=0.3, p_noise=0.4)

# Emotion stand-ins: class -> mean and spread of (pitch -p 0-99, rate -s wpm, amplitude -a
# 0-200, SSML pitch range 0-100). Each class overlaps its neighbours on every single
# parameter (and the speaker's variant moves pitch further); only jointly are they separable.
EMOTIONS = ("neu", "hap", "ang", "sad")
_ER_MEAN = {
    "neu": (48, 170, 100, 45),
    "hap": (64, 195, 120, 80),
    "ang": (55, 210, 155, 62),
    "sad": (36, 140, 78, 20),
}
_ER_SPREAD = (7, 14, 14, 12)


@dataclass(frozen=True)
class Preset:
    """Sizes of one suite. Utterance counts are (train, dev, test, test_unseen)."""

    asr_en: tuple[int, int, int, int]
    ml_asr: tuple[int, int, int, int]  # round-robin over the 8 languages
    er: tuple[int, int, int, int]  # multiples of 4: classes are balanced within each split
    words: tuple[int, int]  # words per sentence, inclusive (asr_en, ml_asr)
    er_words: tuple[int, int]
    sv_speakers: tuple[int, int, int]  # (train, test, test_unseen) speakers, disjoint
    sv_train_per_speaker: int
    sv_dev: int  # held-out utterances of the train speakers, spread round-robin
    sv_test_per_speaker: int  # test and test_unseen; same-speaker pairs become target trials
    sv_words: tuple[int, int]


PRESETS = {
    # for tests: ~500 clips of 1-3 s, a few seconds to build
    "tiny": Preset(
        asr_en=(16, 12, 12, 12),
        ml_asr=(16, 16, 16, 16),
        er=(16, 12, 12, 12),
        words=(2, 4),
        er_words=(2, 4),
        sv_speakers=(30, 12, 12),
        sv_train_per_speaker=2,
        sv_dev=15,
        sv_test_per_speaker=10,
        sv_words=(2, 3),
    ),
    # the default suite for `dvc repro`: 10-30 minutes of audio per task. The ASR train sets
    # are the largest: with 256 clips the CTC heads overfit (demo dev WER 0.79 at best).
    "demo": Preset(
        asr_en=(640, 64, 64, 64),
        ml_asr=(512, 64, 64, 64),
        er=(320, 40, 40, 40),
        words=(3, 8),
        er_words=(3, 6),
        sv_speakers=(80, 20, 20),
        sv_train_per_speaker=4,
        sv_dev=40,
        sv_test_per_speaker=8,
        sv_words=(3, 5),
    ),
    # configs/gpu.yaml's suite: about 8x the demo's audio (~15 audio-hours in all), so that the
    # ASR heads see many voices and sentences; synthesis is CPU work (~10 min on 16 cores)
    "large": Preset(
        asr_en=(6000, 200, 200, 200),
        ml_asr=(4800, 200, 200, 200),
        er=(2400, 200, 200, 200),
        words=(3, 8),
        er_words=(3, 6),
        sv_speakers=(240, 40, 40),
        sv_train_per_speaker=10,
        sv_dev=200,
        sv_test_per_speaker=10,
        sv_words=(3, 5),
    ),
}


@dataclass(frozen=True)
class UttSpec:
    """Everything needed to synthesise one utterance and write its manifest line.

    pitch/rate/amplitude/pitch_range are eSpeak NG's scales for both engines (Flite maps
    them, see pipeline.data.voices)."""

    id: str
    split: str
    speak: str  # the text handed to the engine
    voice: str  # eSpeak `-v`, e.g. "en-gb+f3"; Flite `-voice`, e.g. "awb"
    pitch: int  # 0-99
    rate: int  # words per minute
    amplitude: int  # 0-200 (100 = the engine's own level)
    pitch_range: int | None = None  # SSML <prosody range>, 0-100 (50 = the voice's own)
    engine: str = "espeak"
    aug: Augment = field(default_factory=Augment)
    text: str | None = None
    language: str | None = None
    speaker: str | None = None
    emotion: str | None = None

    def utterance(self, duration: float) -> Utterance:
        """The manifest line; the wav lives at <task>/wav/<id>.wav beside the manifests."""
        labels = dict(
            text=self.text, language=self.language, speaker=self.speaker, emotion=self.emotion
        )
        return Utterance(self.id, f"wav/{self.id}.wav", duration, SAMPLE_RATE, self.split, **labels)

    @property
    def setting(self) -> tuple[str, str, int, int]:
        """(engine, voice, pitch, rate): what `test_unseen` never shares with training."""
        return self.engine, self.voice, self.pitch, self.rate


# ---------------------------------------------------------------------------- words and rngs


@cache
def words(lang: str) -> tuple[str, ...]:
    """The shipped word list pipeline/data/words/<lang>.txt (comments and blanks dropped)."""
    res = resources.files("pipeline.data") / "words" / f"{lang}.txt"
    if not res.is_file():
        raise SynthError(
            f"word list {res} is missing; reinstall the package (package-data words/*.txt)"
        )
    out = [w.strip() for w in res.read_text(encoding="utf-8").splitlines()]
    return tuple(dict.fromkeys(w for w in out if w and not w.startswith("#")))


def _rng(seed: int, task: str, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, _TASK_KEY[task], *keys])


def _sentence(
    rng: np.random.Generator, lang: str, span: tuple[int, int], letters_only: bool = False
) -> list[str]:
    vocab = [w for w in words(lang) if w.isalpha()] if letters_only else words(lang)
    n = int(rng.integers(span[0], span[1] + 1))
    return [vocab[i] for i in rng.choice(len(vocab), size=n, replace=False)]


def _split_of(index: int, counts: tuple[int, ...]) -> tuple[str, int]:
    """(split, index within split) for the index-th utterance of a task laid out in ALL_SPLITS order."""
    for split, n in zip(ALL_SPLITS, counts, strict=True):
        if index < n:
            return split, index
        index -= n
    raise IndexError(index)


def _english_voice(rng: np.random.Generator, unseen: bool, accents=None) -> tuple[str, str]:
    """(engine, voice) for English: Flite with P_FLITE (P_FLITE_UNSEEN), else eSpeak NG."""
    if rng.random() < (P_FLITE_UNSEEN if unseen else P_FLITE):
        return "flite", pick(rng, FLITE_VOICES_UNSEEN if unseen else FLITE_VOICES)
    accents = accents or (EN_ACCENTS_UNSEEN if unseen else EN_ACCENTS)
    return "espeak", espeak_voice(rng, accents, unseen)


def _spec(task: str, i: int, split: str, ws: list[str], engine_voice, prosody, aug, **labels):
    """One spec; the transcript defaults to the SUPERB form of the spoken words (upper case)."""
    engine, voice = engine_voice
    labels.setdefault("text", " ".join(ws).upper())
    labels.setdefault("speaker", f"{engine}:{voice}")
    pitch, rate, amp, *prange = prosody
    return UttSpec(
        f"{task}-{split}-{i:05d}", split, " ".join(ws), voice, pitch, rate, amp,
        pitch_range=prange[0] if prange else None, engine=engine, aug=aug, **labels,
    )  # fmt: skip


# ---------------------------------------------------------------------------- drawing specs


def draw_specs(task: str, preset: str | Preset = "demo", seed: int = 0) -> list[UttSpec]:
    """All utterance specs of one task, in ALL_SPLITS order (no audio is made)."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    if task == "asr_en":
        return _asr_en_all(seed, p)
    if task == "ml_asr":
        return [_ml_asr(seed, i, p) for i in range(sum(p.ml_asr))]
    if task == "er":
        return [_er(seed, i, p) for i in range(sum(p.er))]
    if task == "sv":
        return _sv(seed, p)
    raise ValueError(f"unknown task {task!r}; the suite has {TASKS}")


def _asr_en(seed: int, i: int, p: Preset, attempt: int = 0) -> UttSpec:
    rng = _rng(seed, "asr_en", i, attempt)
    split, _ = _split_of(i, p.asr_en)
    unseen = split == UNSEEN
    ws, ev = _sentence(rng, "en", p.words), _english_voice(rng, unseen)
    prosody = (*pitch_rate(rng, unseen), int(rng.integers(80, 121)))
    aug = (NONE if unseen else AUG_ASR).draw(rng)
    return _spec("asr_en", i, split, ws, ev, prosody, aug)


def _asr_en_all(seed: int, p: Preset) -> list[UttSpec]:
    """asr_en specs; a test_unseen sentence that another split holds is drawn again."""
    specs = [_asr_en(seed, i, p) for i in range(sum(p.asr_en))]
    seen = {s.text for s in specs if s.split != UNSEEN}
    for k, s in enumerate(specs):
        attempt = 0
        while s.split == UNSEEN and s.text in seen:
            attempt += 1
            s = specs[k] = _asr_en(seed, k, p, attempt)
    return specs


def _ml_asr(seed: int, i: int, p: Preset) -> UttSpec:
    rng = _rng(seed, "ml_asr", i)
    split, j = _split_of(i, p.ml_asr)
    unseen = split == UNSEEN
    lang = list(ML_LANGUAGES)[j % len(ML_LANGUAGES)]  # every split cycles through all languages
    wordlist, seen_voices, unseen_voices = ML_LANGUAGES[lang]
    ws = [w.lower() for w in _sentence(rng, wordlist, p.words, letters_only=True)]
    accents = unseen_voices if unseen else seen_voices
    if lang == "eng":
        ev = _english_voice(rng, unseen, accents)
    else:
        ev = ("espeak", espeak_voice(rng, accents, unseen))
    text = ("" if lang in _UNSPACED else " ").join(ws)
    prosody = (*pitch_rate(rng, unseen), int(rng.integers(80, 121)))
    aug = (NONE if unseen else AUG_ASR).draw(rng)
    return _spec("ml_asr", i, split, ws, ev, prosody, aug, text=text, language=lang)


def er_parameters(emotion: str, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """One draw of (pitch, rate, amplitude, pitch_range) for an emotion class, clipped to eSpeak's ranges."""
    mean = np.asarray(_ER_MEAN[emotion], dtype=float)
    x = mean + rng.normal(size=4) * np.asarray(_ER_SPREAD)
    lo, hi = np.array([0, 80, 10, 0]), np.array([99, 400, 200, 100])
    pitch, rate, amp, prange = np.clip(np.round(x), lo, hi).astype(int).tolist()
    return pitch, rate, amp, prange


def _er(seed: int, i: int, p: Preset) -> UttSpec:
    rng = _rng(seed, "er", i)
    split, j = _split_of(i, p.er)
    unseen = split == UNSEEN
    emotion = EMOTIONS[j % len(EMOTIONS)]  # balanced within every split
    ws, ev = _sentence(rng, "en", p.er_words), _english_voice(rng, unseen)
    prosody = er_parameters(emotion, rng)
    aug = (NONE if unseen else AUG_KEEP_SPEED).draw(rng)
    return _spec("er", i, split, ws, ev, prosody, aug, emotion=emotion)


def sv_speakers(seed: int, n: int, unseen: bool = False) -> list[tuple[str, str, int, int]]:
    """n distinct speakers as fixed (engine, voice, pitch, rate), from the seen or unseen pool.

    eSpeak speakers are accent x variant at a random pitch and rate; Flite speakers are one
    Flite voice at one of six pitch levels (the engine has one speaker a voice)."""
    rng = _rng(seed, "sv", 0, int(unseen))
    accents, variants = (EN_ACCENTS_UNSEEN, UNSEEN_VARIANTS) if unseen else (EN_ACCENTS, VARIANTS)
    pool = [("espeak", f"{a}+{v}", -1) for a in accents for v in variants]
    if unseen:
        levels = [lo + k * (hi - lo) // 2 for lo, hi in PITCH_UNSEEN for k in range(3)]
    else:
        levels = list(np.linspace(PITCH[0], PITCH[1], 6).round().astype(int))
    flite_voices = FLITE_VOICES_UNSEEN if unseen else FLITE_VOICES
    flite = [("flite", f, int(lv)) for f in flite_voices for lv in levels]
    if n > len(pool) + len(flite):
        raise ValueError(f"at most {len(pool) + len(flite)} sv speakers can be made, asked for {n}")
    n_flite = min(len(flite), int(round(n * (P_FLITE_UNSEEN if unseen else P_FLITE) / 2)))
    chosen = [pool[k] for k in rng.permutation(len(pool))[: n - n_flite]]
    chosen += [flite[k] for k in rng.permutation(len(flite))[:n_flite]]
    out = []
    for engine, voice, level in [chosen[k] for k in rng.permutation(len(chosen))]:
        pitch, rate = pitch_rate(rng, unseen)
        out.append((engine, voice, level if level >= 0 else pitch, rate))
    return out


def _sv(seed: int, p: Preset) -> list[UttSpec]:
    n_tr, n_te, n_un = p.sv_speakers
    spk = sv_speakers(seed, n_tr + n_te) + sv_speakers(seed, n_un, unseen=True)
    layout = [("train", s) for s in range(n_tr) for _ in range(p.sv_train_per_speaker)]
    layout += [("dev", k % n_tr) for k in range(p.sv_dev)]
    layout += [("test", n_tr + s) for s in range(n_te) for _ in range(p.sv_test_per_speaker)]
    first_un = n_tr + n_te
    layout += [(UNSEEN, first_un + s) for s in range(n_un) for _ in range(p.sv_test_per_speaker)]
    specs = []
    for i, (split, s) in enumerate(layout):
        rng = _rng(seed, "sv", 1, i)
        ws = _sentence(rng, "en", p.sv_words)
        engine, voice, pitch, rate = spk[s]
        aug = (NONE if split == UNSEEN else AUG_KEEP_SPEED).draw(rng)
        spec = _spec(
            "sv", i, split, ws, (engine, voice), (pitch, rate, 100), aug, speaker=f"spk{s:03d}"
        )
        specs.append(spec)
    return specs


def make_trials(test: list[UttSpec], seed: int = 0, key: int = 2) -> list[tuple[int, str, str]]:
    """Every same-speaker pair of `test` utterances (label 1) and as many random different-speaker
    pairs (label 0), shuffled; `key` separates the streams of different trial lists."""
    target = [(1, a.id, b.id) for a, b in combinations(test, 2) if a.speaker == b.speaker]
    other = [(0, a.id, b.id) for a, b in combinations(test, 2) if a.speaker != b.speaker]
    rng = _rng(seed, "sv", key, 0)
    picked = [
        other[k]
        for k in sorted(rng.choice(len(other), size=min(len(target), len(other)), replace=False))
    ]
    trials = target + picked
    return [trials[k] for k in rng.permutation(len(trials))]


def voice_table() -> dict:
    """Which voices and settings each split draws from, for suite.json."""
    seen = {
        "espeak_accents": list(EN_ACCENTS),
        "espeak_variants": list(VARIANTS),
        "flite_voices": list(FLITE_VOICES),
        "pitch": list(PITCH),
        "rate_wpm": list(RATE),
        "flite_share": P_FLITE,
        "augmentation": {"asr": vars(AUG_ASR), "er_sv": vars(AUG_KEEP_SPEED)},
    }
    unseen = {
        "espeak_accents": list(EN_ACCENTS_UNSEEN),
        "espeak_variants": list(UNSEEN_VARIANTS),
        "flite_voices": list(FLITE_VOICES_UNSEEN),
        "pitch": [list(r) for r in PITCH_UNSEEN],
        "rate_wpm": [list(r) for r in RATE_UNSEEN],
        "flite_share": P_FLITE_UNSEEN,
        "augmentation": None,
    }
    ml = {lang: {"seen": list(s), "unseen": list(u)} for lang, (_, s, u) in ML_LANGUAGES.items()}
    return {"train/dev/test": seen, "test_unseen": unseen, "ml_asr_accents": ml}
