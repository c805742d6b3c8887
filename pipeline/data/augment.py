"""Augmentation of synthesized speech: speed perturbation, room reverberation, additive noise.

All three are pure numpy/scipy functions of the audio and of parameters drawn at planning
time (an `Augment` per utterance, seeded by the utterance), so a suite is byte-identical
for one seed. Order: speed, then reverberation, then noise.

- speed: Kaldi-style speed perturbation by resampling (tempo and pitch move together),
  a factor from SPEEDS; 1.1 plays 10 % faster.
- reverberation: convolution with a synthetic room impulse response: a direct path, then
  Gaussian noise under an exponential envelope that falls 60 dB in RT60 seconds, with a
  few milliseconds of pre-delay; the result keeps the dry signal's peak level.
- noise: white, pink (1/f) or brown (1/f^2) Gaussian noise added at an SNR in dB relative to
  the speech's mean power.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import fftconvolve, resample_poly

SR = 16000
SPEEDS = (0.9, 1.0, 1.1)
NOISES = ("white", "pink", "brown")


@dataclass(frozen=True)
class Augment:
    """What is done to one utterance; the defaults do nothing."""

    speed: float = 1.0
    rt60: float | None = None  # seconds; None = dry
    noise: str | None = None  # one of NOISES; None = clean
    snr_db: float | None = None
    seed: int = 0  # seeds the impulse response and the noise

    @property
    def is_identity(self) -> bool:
        return self.speed == 1.0 and self.rt60 is None and self.noise is None


@dataclass(frozen=True)
class AugmentPolicy:
    """Probabilities and ranges from which `draw` picks an utterance's `Augment`."""

    speed: tuple[float, ...] = (1.0,)  # drawn uniformly
    p_reverb: float = 0.0
    rt60: tuple[float, float] = (0.15, 0.6)
    p_noise: float = 0.0
    snr_db: tuple[float, float] = (5.0, 30.0)

    def draw(self, rng: np.random.Generator) -> Augment:
        """One utterance's augmentation; always consumes the same number of draws."""
        u = rng.random(5)
        speed = self.speed[int(u[0] * len(self.speed))]
        rt60 = round(self.rt60[0] + u[1] * (self.rt60[1] - self.rt60[0]), 3)
        snr = round(self.snr_db[0] + u[2] * (self.snr_db[1] - self.snr_db[0]), 1)
        noise = NOISES[int(rng.integers(len(NOISES)))]
        seed = int(rng.integers(2**31))
        return Augment(
            speed=speed,
            rt60=rt60 if u[3] < self.p_reverb else None,
            noise=noise if u[4] < self.p_noise else None,
            snr_db=snr if u[4] < self.p_noise else None,
            seed=seed,
        )


NONE = AugmentPolicy()


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play `audio` (S,) `factor` times as fast by resampling: returns about S / factor samples."""
    if factor == 1.0:
        return audio
    ratio = Fraction(factor).limit_denominator(100)  # 1.1 -> 11/10: resample by 10/11
    return resample_poly(audio, ratio.denominator, ratio.numerator).astype(np.float32)


def room_impulse_response(rt60: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A synthetic RIR (N,): unit direct path, pre-delay 2-10 ms, exponentially decaying noise tail."""
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * 10 ** (-3 * t / rt60)  # -60 dB at t = rt60
    delay = int(rng.integers(int(0.002 * sr), int(0.010 * sr)))
    rir = np.zeros(n + delay)
    rir[0] = 1.0
    rir[delay:] += 0.3 * tail
    return rir / np.sqrt(np.sum(rir**2))


def reverberate(audio: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """`audio` (S,) convolved with a fresh RIR, cut to its length plus the tail, dry peak kept."""
    wet = fftconvolve(audio.astype(np.float64), room_impulse_response(rt60, rng))
    wet = wet[: len(audio) + int(0.3 * rt60 * SR)]
    peak = np.max(np.abs(wet)) or 1.0
    return (wet * (np.max(np.abs(audio)) / peak)).astype(np.float32)


def coloured_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power Gaussian noise (n,), white, pink (1/f power) or brown (1/f^2 power)."""
    if kind not in NOISES:
        raise ValueError(f"unknown noise {kind!r}; use one of {NOISES}")
    white = rng.standard_normal(n)
    if kind != "white":
        spec = np.fft.rfft(white)
        f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)  # flat below 20 Hz
        spec /= f ** (0.5 if kind == "pink" else 1.0)
        white = np.fft.irfft(spec, n)
    return white / (np.sqrt(np.mean(white**2)) or 1.0)


def add_noise(audio: np.ndarray, kind: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """`audio` (S,) plus `kind` noise at `snr_db` dB below its mean power."""
    power = float(np.mean(audio.astype(np.float64) ** 2)) or 1e-8
    noise = coloured_noise(kind, len(audio), rng) * np.sqrt(power / 10 ** (snr_db / 10))
    return (audio + noise).astype(np.float32)


def apply(audio: np.ndarray, aug: Augment) -> np.ndarray:
    """Speed, reverberation and noise of `aug` on 16 kHz `audio` (S,); clipped-safe float32 out."""
    if aug.is_identity:
        return audio
    rng = np.random.default_rng(aug.seed)
    out = change_speed(audio, aug.speed)
    if aug.rt60 is not None:
        out = reverberate(out, aug.rt60, rng)
    if aug.noise is not None:
        out = add_noise(out, aug.noise, float(aug.snr_db), rng)
    peak = float(np.max(np.abs(out)))
    return out * np.float32(0.99 / peak) if peak > 0.99 else out
