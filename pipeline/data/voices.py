"""Voices of the built-in suite: two Debian synthesis engines, split into seen and unseen pools.

Engines (both called as subprocesses, one utterance a call):

- **eSpeak NG** (`espeak-ng`): a language voice (accent) plus a voice variant
  (`-v en-gb+m3`), pitch `-p` 0-99, rate `-s` words a minute, amplitude `-a` 0-200 and an
  SSML pitch range 0-100.
- **Flite** (`flite`, CMU's Festival-Lite, English only): the voices Debian's flite builds
  in, `kal16` (diphone), `awb`, `rms`, `slt` (clustergen). The same four prosody numbers
  are mapped onto it (`flite_command`): pitch -> target F0 mean (the voice's own F0 times
  2^((p-50)/60)), rate -> `duration_stretch` = 175 / rate, pitch range -> target F0 spread,
  amplitude -> a gain. `rms` ignores the F0 targets (it keeps its own pitch).

Every voice setting belongs to exactly one of two pools. Train, dev and test draw from the
SEEN pool; `test_unseen` draws only from the UNSEEN pool, so no voice, variant, engine voice
or pitch/rate value of `test_unseen` is ever heard in training:

| setting            | seen (train/dev/test)                          | unseen (test_unseen)            |
|--------------------|------------------------------------------------|---------------------------------|
| English accents    | en-us en-us-nyc en-gb en-gb-x-rp en-gb-scotland | en-029 en-gb-x-gbcwmd          |
|                    | en-gb-x-gbclan                                 |                                 |
| eSpeak variants    | 58 human-sounding variants (incl. klatt2/3/5)  | the 18 in UNSEEN_VARIANTS       |
| Flite voices       | kal16 awb rms                                  | slt                             |
| eSpeak pitch `-p`  | 25-75                                          | 8-20 or 80-92                   |
| rate (wpm)         | 135-200                                        | 110-128 or 208-230              |

Other languages (ml_asr) are spoken by eSpeak NG only (Flite speaks English only); their
unseen voices are an accent held out where eSpeak has more than one (fr-ch, ru-lv, en-029,
en-gb-x-gbcwmd), otherwise the language's own voice with a held-out variant at a held-out
pitch and rate. The ER classes are defined by prosody, so ER's unseen split keeps the class
prosody and changes only the voices.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from io import BytesIO

import numpy as np
import soundfile as sf
from pipeline.errors import UserError

ENGINES = ("espeak", "flite")

EN_ACCENTS = ("en-us", "en-us-nyc", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan")
EN_ACCENTS_UNSEEN = ("en-029", "en-gb-x-gbcwmd")
# Human-sounding voice variants (`--voices=variant`; names are case-sensitive and a wrong one
# is silently ignored). Each was checked to change the audio and to differ from all others;
# robots, whisper, croak, klatt and klatt6 (both the same as caleb) are left out.
ALL_VARIANTS = tuple(
    """m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 Alex Alicia Andrea Andy Annie Denis Diogo Gene
    Gene2 Henrique Hugo Jacky Lee Marco Mario Michael Mike Nguyen adam anika antonio aunty
    belinda benjamin boris caleb david ed edward edward2 grandma grandpa gustave iven iven2
    iven3 iven4 john kaukovalta linda marcelo max michel miguel norbert pablo paul pedro quincy
    rob robert sandro shelby steph steph2 steph3 travis victor zac klatt2 klatt3 klatt4
    klatt5""".split()
)
UNSEEN_VARIANTS = tuple(
    """m4 m8 f2 f5 Andy Annie Gene2 Jacky Mike belinda boris edward2 grandma iven3 linda
    quincy steph2 klatt4""".split()
)
VARIANTS = tuple(v for v in ALL_VARIANTS if v not in UNSEEN_VARIANTS)

FLITE_VOICES = ("kal16", "awb", "rms")
FLITE_VOICES_UNSEEN = ("slt",)
# each Flite voice's own mean F0 in Hz (measured on its default output), the pitch 50 point
FLITE_F0 = {"kal16": 100.0, "awb": 130.0, "rms": 100.0, "slt": 170.0}

# (pitch, rate) ranges, inclusive; unseen ranges lie outside the seen ones on both sides
PITCH = (25, 75)
RATE = (135, 200)
PITCH_UNSEEN = ((8, 20), (80, 92))
RATE_UNSEEN = ((110, 128), (208, 230))

# ML-SUPERB mono-1h languages eSpeak NG speaks: ISO 639-3 -> (word list, seen, unseen voices).
# cmn uses cmn-latn-pinyin: Debian's 1.51 `cmn` voice reads most Han characters as pinyin
# spelled out in English ("jin one tian one"); jpn is kana only (eSpeak NG cannot read kanji).
ML_LANGUAGES = {
    "eng": ("en", ("en-us", "en-gb", "en-gb-scotland"), ("en-029", "en-gb-x-gbcwmd")),
    "fra": ("fr", ("fr-fr", "fr-be"), ("fr-ch",)),
    "deu": ("de", ("de",), ("de",)),
    "rus": ("ru", ("ru",), ("ru-lv",)),
    "swa": ("sw", ("sw",), ("sw",)),
    "swe": ("sv", ("sv",), ("sv",)),
    "jpn": ("ja", ("ja",), ("ja",)),
    "cmn": ("cmn", ("cmn-latn-pinyin",), ("cmn-latn-pinyin",)),
}


class SynthError(UserError, RuntimeError):
    """A synthesis engine is missing or failed on an utterance; the message says which and what to do."""


def pick(rng: np.random.Generator, items: tuple) -> str:
    """One item of `items`, uniformly."""
    return items[int(rng.integers(len(items)))]


def espeak_voice(rng: np.random.Generator, accents: tuple[str, ...], unseen: bool) -> str:
    """`accent+variant` with the variant from the seen or the unseen pool."""
    return f"{pick(rng, accents)}+{pick(rng, UNSEEN_VARIANTS if unseen else VARIANTS)}"


def pitch_rate(rng: np.random.Generator, unseen: bool) -> tuple[int, int]:
    """A (pitch 0-99, rate wpm) draw from the seen ranges, or from the unseen ones."""
    if not unseen:
        return int(rng.integers(PITCH[0], PITCH[1] + 1)), int(rng.integers(RATE[0], RATE[1] + 1))
    (plo, phi), (rlo, rhi) = pick(rng, PITCH_UNSEEN), pick(rng, RATE_UNSEEN)
    return int(rng.integers(plo, phi + 1)), int(rng.integers(rlo, rhi + 1))


# ------------------------------------------------------------------------------- the engines


def _version(exe_name: str, args: list[str], package: str) -> str:
    exe = shutil.which(exe_name)
    if exe is None:
        raise SynthError(
            f"{exe_name} is not installed; the built-in suite needs it: `sudo apt-get install "
            f"{package}` (scripts/setup.sh does this)"
        )
    proc = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    return (proc.stdout + proc.stderr).strip()


@cache
def espeak_version() -> str:
    """The installed eSpeak NG version, e.g. "1.51"; raises SynthError when it is missing."""
    out = _version("espeak-ng", ["--version"], "espeak-ng")
    parts = out.split("text-to-speech:")
    return parts[1].split()[0] if len(parts) > 1 else out


@cache
def flite_version() -> str:
    """The installed Flite version, e.g. "flite-2.2-current"; raises SynthError when missing."""
    out = _version("flite", ["--version"], "flite")
    return next((w for w in out.split() if w.startswith("flite-")), out.splitlines()[0])


def espeak_command(voice: str, pitch: int, rate: int, amp: int, prange: int | None, text: str):
    """The espeak-ng argument list and the text fed on stdin."""
    cmd = ["espeak-ng", "--stdin", "--stdout", "-v", voice]
    cmd += ["-p", str(pitch), "-s", str(rate), "-a", str(amp)]
    if prange is not None:
        cmd.append("-m")
        text = f'<speak><prosody range="{prange}">{text}</prosody></speak>'
    return cmd, text


def flite_command(voice: str, pitch: int, rate: int, prange: int | None, text: str) -> list[str]:
    """The flite argument list (wav to stdout); prosody mapped as the module docstring says."""
    f0 = FLITE_F0[voice] * 2 ** ((pitch - 50) / 60)
    spread = 0.2 * f0 * ((prange if prange is not None else 50) / 50)
    cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={175 / rate:.4f}"]
    cmd += [
        "--setf",
        f"int_f0_target_mean={f0:.1f}",
        "--setf",
        f"int_f0_target_stddev={spread:.1f}",
    ]
    return cmd + ["-t", text, "-o", "/dev/stdout"]


def speak(
    engine: str,
    voice: str,
    pitch: int,
    rate: int,
    amp: int,
    prange: int | None,
    text: str,
    utt_id: str = "?",
) -> tuple[np.ndarray, int]:
    """Run one engine. Returns (samples float32 (S,), sample rate) as the engine made them."""
    if engine == "espeak":
        espeak_version()
        cmd, stdin = espeak_command(voice, pitch, rate, amp, prange, text)
        gain = 1.0
    elif engine == "flite":
        flite_version()
        cmd, stdin, gain = flite_command(voice, pitch, rate, prange, text), "", amp / 100
    else:
        raise SynthError(f"utterance {utt_id}: unknown engine {engine!r}; use one of {ENGINES}")
    proc = subprocess.run(
        cmd, input=stdin.encode("utf-8"), capture_output=True, check=False, timeout=120
    )
    if proc.returncode != 0 or len(proc.stdout) <= 44:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise SynthError(
            f"{engine} failed on utterance {utt_id} (voice {voice!r}, text {text!r}): exit "
            f"{proc.returncode}, {len(proc.stdout)} bytes out, stderr {err!r}. Check that the "
            "voice exists (`espeak-ng --voices`, `espeak-ng --voices=variant`, `flite -lv`)."
        )
    audio, sr = sf.read(BytesIO(proc.stdout), dtype="float32")
    return (audio * np.float32(gain) if gain != 1.0 else audio), int(sr)
