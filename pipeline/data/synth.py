"""The built-in offline suite: four SUPERB-style tasks spoken by eSpeak NG, nothing downloaded.

    out/
      suite.json                       preset, seed, versions, utterances and seconds per split
      asr_en/{train,dev,test}.jsonl    English sentences of 3-8 real words; text in the SUPERB
                                       character set (A-Z, apostrophe, space); scored by WER
      ml_asr/{train,dev,test}.jsonl    8 ML-SUPERB languages eSpeak NG speaks (eng fra deu rus
                                       swa swe jpn cmn); text in the language's own script,
                                       lower-cased, no punctuation; every split holds them all
      sv/{train,dev,test}.jsonl        fixed synthetic speakers (voice x variant x pitch x rate);
      sv/trials.tsv                    train and test speakers disjoint, dev = held-out
                                       utterances of train speakers; trials among test utts
      er/{train,dev,test}.jsonl        four prosody classes standing in for neu/hap/ang/sad
      <task>/wav/<id>.wav              16 kHz mono PCM16

Every utterance is a `UttSpec` drawn from a generator seeded by (seed, task, index) alone, so
the suite is identical whatever the pool size or order; `render` turns one spec into a wav.
Words come from the lists shipped in pipeline/data/words/ (hand-written common words).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from itertools import combinations
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.audio import write_wav
from pipeline.data.manifest import SPLITS, Utterance, write_manifest, write_trials

SYNTH_VERSION = 1  # bump whenever a change alters the audio or the manifests
SAMPLE_RATE = 16000
TASKS = ("asr_en", "ml_asr", "sv", "er")
_TASK_KEY = {"asr_en": 1, "ml_asr": 2, "sv": 3, "er": 4}  # seeds the per-task streams

# eSpeak NG's own English accents (the mbrola ones need voices Debian does not ship).
EN_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan")
EN_VOICES += ("en-gb-x-gbcwmd", "en-029")
# Human-sounding voice variants (`--voices=variant`; names are case-sensitive and a wrong one
# is silently ignored). Each was checked to change the audio and to differ from all others;
# robots, whisper, croak, klatt (same as caleb) and the like are left out.
VARIANTS = tuple(
    """m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 Alex Alicia Andrea Andy Annie Denis Diogo Gene
    Gene2 Henrique Hugo Jacky Lee Marco Mario Michael Mike Nguyen adam anika antonio aunty
    belinda benjamin boris caleb david ed edward edward2 grandma grandpa gustave iven iven2
    iven3 iven4 john kaukovalta linda marcelo max michel miguel norbert pablo paul pedro quincy
    rob robert sandro shelby steph steph2 steph3 travis victor zac""".split()
)
# ML-SUPERB mono-1h languages eSpeak NG speaks: ISO 639-3 -> (word list, voices).
# cmn uses cmn-latn-pinyin: Debian's 1.51 `cmn` voice reads most Han characters as pinyin
# spelled out in English ("jin one tian one"); jpn is kana only (eSpeak NG cannot read kanji).
ML_LANGUAGES = {
    "eng": ("en", ("en-us", "en-gb", "en-gb-scotland", "en-029")),
    "fra": ("fr", ("fr-fr", "fr-be", "fr-ch")),
    "deu": ("de", ("de",)),
    "rus": ("ru", ("ru",)),
    "swa": ("sw", ("sw",)),
    "swe": ("sv", ("sv",)),
    "jpn": ("ja", ("ja",)),
    "cmn": ("cmn", ("cmn-latn-pinyin",)),
}
_UNSPACED = {"jpn", "cmn"}  # scripts written without spaces between words

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


class SynthError(RuntimeError):
    """eSpeak NG is missing or failed on an utterance; the message says which and what to do."""


@dataclass(frozen=True)
class Preset:
    """Sizes of one suite. Utterance counts are (train, dev, test)."""

    asr_en: tuple[int, int, int]
    ml_asr: tuple[int, int, int]  # round-robin over the 8 languages
    er: tuple[int, int, int]  # multiples of 4: classes are balanced within each split
    words: tuple[int, int]  # words per sentence, inclusive (asr_en, ml_asr)
    er_words: tuple[int, int]
    sv_speakers: tuple[int, int]  # (train, test) speakers, disjoint
    sv_train_per_speaker: int
    sv_dev: int  # held-out utterances of the train speakers, spread round-robin
    sv_test_per_speaker: int  # all same-speaker test pairs become target trials
    sv_words: tuple[int, int]


PRESETS = {
    # for tests: ~370 clips of 1-3 s, a few seconds to build
    "tiny": Preset(
        asr_en=(16, 12, 12),
        ml_asr=(16, 16, 16),
        er=(16, 12, 12),
        words=(2, 4),
        er_words=(2, 4),
        sv_speakers=(30, 12),
        sv_train_per_speaker=2,
        sv_dev=15,
        sv_test_per_speaker=10,
        sv_words=(2, 3),
    ),
    # the default suite for `dvc repro`: 10-30 minutes of audio per task. The ASR train sets
    # are the largest: with 256 clips the CTC heads overfit (demo dev WER 0.79 at best).
    "demo": Preset(
        asr_en=(640, 64, 64),
        ml_asr=(512, 64, 64),
        er=(320, 40, 40),
        words=(3, 8),
        er_words=(3, 6),
        sv_speakers=(80, 20),
        sv_train_per_speaker=4,
        sv_dev=40,
        sv_test_per_speaker=8,
        sv_words=(3, 5),
    ),
}


@dataclass(frozen=True)
class UttSpec:
    """Everything needed to synthesise one utterance and write its manifest line."""

    id: str
    split: str
    speak: str  # the text handed to eSpeak NG
    voice: str  # `-v`, e.g. "en-gb+f3"
    pitch: int  # `-p`, 0-99
    rate: int  # `-s`, words per minute
    amplitude: int  # `-a`, 0-200
    pitch_range: int | None = None  # SSML <prosody range>, 0-100 (50 = the voice's own)
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


def _split_of(index: int, counts: tuple[int, int, int]) -> tuple[str, int]:
    """(split, index within split) for the index-th utterance of a task laid out train-dev-test."""
    for split, n in zip(SPLITS, counts, strict=True):
        if index < n:
            return split, index
        index -= n
    raise IndexError(index)


def _voice(rng: np.random.Generator, voices: tuple[str, ...]) -> str:
    return f"{voices[int(rng.integers(len(voices)))]}+{VARIANTS[int(rng.integers(len(VARIANTS)))]}"


def _prosody(rng: np.random.Generator, rates: tuple[int, int]) -> tuple[int, int, int]:
    """A random (pitch 30-70, rate in `rates`, amplitude 80-120) for the ASR tasks."""
    return tuple(int(rng.integers(lo, hi + 1)) for lo, hi in ((30, 70), rates, (80, 120)))


# ---------------------------------------------------------------------------------- planning


def plan(task: str, preset: str | Preset = "demo", seed: int = 0) -> list[UttSpec]:
    """All utterance specs of one task, in train-dev-test order (no audio is made)."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    if task == "asr_en":
        return [_asr_en(seed, i, p) for i in range(sum(p.asr_en))]
    if task == "ml_asr":
        return [_ml_asr(seed, i, p) for i in range(sum(p.ml_asr))]
    if task == "er":
        return [_er(seed, i, p) for i in range(sum(p.er))]
    if task == "sv":
        return _sv(seed, p)
    raise ValueError(f"unknown task {task!r}; the suite has {TASKS}")


def _spec(task: str, i: int, split: str, ws: list[str], voice: str, prosody, **labels) -> UttSpec:
    """One spec; the transcript defaults to the SUPERB form of the spoken words (upper case)."""
    labels.setdefault("text", " ".join(ws).upper())
    pitch, rate, amp, *prange = prosody
    return UttSpec(
        f"{task}-{split}-{i:05d}", split, " ".join(ws), voice, pitch, rate, amp,
        pitch_range=prange[0] if prange else None, **labels,
    )  # fmt: skip


def _asr_en(seed: int, i: int, p: Preset) -> UttSpec:
    rng = _rng(seed, "asr_en", i)
    split, _ = _split_of(i, p.asr_en)
    ws, voice = _sentence(rng, "en", p.words), _voice(rng, EN_VOICES)
    return _spec("asr_en", i, split, ws, voice, _prosody(rng, (150, 200)), speaker=voice)


def _ml_asr(seed: int, i: int, p: Preset) -> UttSpec:
    rng = _rng(seed, "ml_asr", i)
    split, j = _split_of(i, p.ml_asr)
    lang = list(ML_LANGUAGES)[j % len(ML_LANGUAGES)]  # every split cycles through all languages
    wordlist, voices = ML_LANGUAGES[lang]
    ws = [w.lower() for w in _sentence(rng, wordlist, p.words, letters_only=True)]
    voice = _voice(rng, voices)
    text = ("" if lang in _UNSPACED else " ").join(ws)
    prosody = _prosody(rng, (140, 190))
    return _spec("ml_asr", i, split, ws, voice, prosody, text=text, language=lang, speaker=voice)


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
    emotion = EMOTIONS[j % len(EMOTIONS)]  # balanced within every split
    ws, voice = _sentence(rng, "en", p.er_words), _voice(rng, EN_VOICES)
    prosody = er_parameters(emotion, rng)
    return _spec("er", i, split, ws, voice, prosody, speaker=voice, emotion=emotion)


def sv_speakers(seed: int, n: int) -> list[tuple[str, int, int]]:
    """n distinct speakers as fixed (voice+variant, pitch, rate); the first ones train, the rest test."""
    rng = _rng(seed, "sv", 0, 0)
    pairs = [f"{v}+{var}" for v in EN_VOICES for var in VARIANTS]
    if n > len(pairs):
        raise ValueError(f"at most {len(pairs)} sv speakers can be made, asked for {n}")
    chosen = rng.permutation(len(pairs))[:n]
    return [(pairs[k], int(rng.integers(25, 76)), int(rng.integers(140, 201))) for k in chosen]


def _sv(seed: int, p: Preset) -> list[UttSpec]:
    n_tr, n_te = p.sv_speakers
    spk = sv_speakers(seed, n_tr + n_te)
    layout = [("train", s) for s in range(n_tr) for _ in range(p.sv_train_per_speaker)]
    layout += [("dev", k % n_tr) for k in range(p.sv_dev)]
    layout += [("test", n_tr + s) for s in range(n_te) for _ in range(p.sv_test_per_speaker)]
    specs = []
    for i, (split, s) in enumerate(layout):
        ws = _sentence(_rng(seed, "sv", 1, i), "en", p.sv_words)
        voice, pitch, rate = spk[s]
        specs.append(_spec("sv", i, split, ws, voice, (pitch, rate, 100), speaker=f"spk{s:03d}"))
    return specs


def make_trials(test: list[UttSpec], seed: int = 0) -> list[tuple[int, str, str]]:
    """Every same-speaker pair of test utterances (label 1) and as many random different-speaker
    pairs (label 0), shuffled."""
    target = [(1, a.id, b.id) for a, b in combinations(test, 2) if a.speaker == b.speaker]
    other = [(0, a.id, b.id) for a, b in combinations(test, 2) if a.speaker != b.speaker]
    rng = _rng(seed, "sv", 2, 0)
    picked = [
        other[k]
        for k in sorted(rng.choice(len(other), size=min(len(target), len(other)), replace=False))
    ]
    trials = target + picked
    return [trials[k] for k in rng.permutation(len(trials))]


# --------------------------------------------------------------------------------- rendering


@cache
def espeak_version() -> str:
    """The installed eSpeak NG version, e.g. "1.51"; raises SynthError when it is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SynthError(
            "espeak-ng is not installed; the built-in suite needs it: `sudo apt-get install "
            "espeak-ng` (scripts/setup.sh does this)"
        )
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    parts = out.split("text-to-speech:")
    return parts[1].split()[0] if len(parts) > 1 else out.strip()


def espeak_command(spec: UttSpec) -> tuple[list[str], str]:
    """The espeak-ng argument list and the text fed on stdin for one spec."""
    cmd = ["espeak-ng", "--stdin", "--stdout", "-v", spec.voice]
    cmd += ["-p", str(spec.pitch), "-s", str(spec.rate), "-a", str(spec.amplitude)]
    text = spec.speak
    if spec.pitch_range is not None:
        cmd.append("-m")
        text = f'<speak><prosody range="{spec.pitch_range}">{text}</prosody></speak>'
    return cmd, text


def speak(spec: UttSpec) -> tuple[np.ndarray, int]:
    """Run eSpeak NG for one spec. Returns (samples float32 (S,), sample rate) as eSpeak made them."""
    espeak_version()
    cmd, text = espeak_command(spec)
    proc = subprocess.run(
        cmd, input=text.encode("utf-8"), capture_output=True, check=False, timeout=120
    )
    if proc.returncode != 0 or len(proc.stdout) <= 44:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise SynthError(
            f"espeak-ng failed on utterance {spec.id} (voice {spec.voice!r}, text {text!r}): "
            f"exit {proc.returncode}, {len(proc.stdout)} bytes out, stderr {err!r}. Check that "
            "`espeak-ng --voices` lists the voice and the variant exists."
        )
    from io import BytesIO

    audio, sr = sf.read(BytesIO(proc.stdout), dtype="float32")
    return audio, int(sr)


def render(spec: UttSpec, path: str | Path) -> float:
    """Synthesise one utterance into a 16 kHz mono PCM16 wav at `path`; returns its duration (s)."""
    audio, sr = speak(spec)
    if sr != SAMPLE_RATE:
        # polyphase FIR (22050 -> 16000 is 320/441): exact, single-threaded and deterministic;
        # 20x cheaper than torchaudio's resample here, whose threads fight the espeak pool
        from scipy.signal import resample_poly

        g = gcd(sr, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, sr // g).astype(np.float32)
    write_wav(path, audio, SAMPLE_RATE)
    return round(len(audio) / SAMPLE_RATE, 4)


# --------------------------------------------------------------------------------- the suite


def synthesize(
    out: str | Path, preset: str = "demo", seed: int = 0, workers: int | None = None
) -> Path:
    """Build the whole suite under `out` (layout in the module docstring) and return `out`.

    Returns at once when out/suite.json records the same preset, seed, code and eSpeak
    versions. `workers` espeak-ng processes run at a time (default: min(4, CPUs)); the files
    do not depend on it.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    out = Path(out)
    key = {
        "preset": preset,
        "seed": seed,
        "synth_version": SYNTH_VERSION,
        "espeak_ng": espeak_version(),
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
            task: _build_task(out / task, plan(task, preset, seed), seed, pool) for task in TASKS
        }
    total = sum(t[s]["seconds"] for t in tasks.values() for s in SPLITS)
    meta = {**key, "sample_rate": SAMPLE_RATE}
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
    for split in SPLITS:
        part = [u for u in utts if u.split == split]
        write_manifest(folder / f"{split}.jsonl", part)
        seconds = round(sum(u.duration for u in part), 2)
        info[split] = {"utterances": len(part), "seconds": seconds}
    if any(u.language for u in utts):
        info["languages"] = sorted({u.language for u in utts if u.language})
    if folder.name == "sv":
        trials = make_trials([s for s in specs if s.split == "test"], seed)
        write_trials(folder / "trials.tsv", trials)
        info["trials"] = {"total": len(trials), "target": sum(t[0] for t in trials)}
        info["speakers"] = {k: len({u.speaker for u in utts if u.split == k}) for k in SPLITS}
    return info
