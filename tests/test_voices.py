"""The engines and voice pools (pipeline.data.voices)."""

from __future__ import annotations

import hashlib

import numpy as np

from pipeline.data.voices import ALL_VARIANTS, flite_command, speak

SR = 16000


def test_every_espeak_variant_exists_and_sounds_different():
    """eSpeak NG ignores a misspelt variant silently: each must change the audio, and no two
    may sound the same (klatt and klatt6 were left out for being caleb)."""
    digests = {}
    for variant in ("", *ALL_VARIANTS):
        voice = f"en-us+{variant}" if variant else "en-us"
        audio, _ = speak("espeak", voice, 50, 175, 100, None, "one two three", variant or "plain")
        digests.setdefault(hashlib.sha1(audio.tobytes()).hexdigest(), []).append(voice)
    same = [v for v in digests.values() if len(v) > 1]
    assert same == []


def test_flite_prosody_mapping():
    cmd = flite_command("slt", 50, 175, None, "hello")
    assert "duration_stretch=1.0000" in cmd and "int_f0_target_mean=170.0" in cmd
    high = flite_command("slt", 80, 100, 100, "hello")
    assert "int_f0_target_mean=240.4" in high and "duration_stretch=1.7500" in high


def test_flite_speaks_and_its_pitch_follows():
    low, sr = speak("flite", "awb", 20, 175, 100, None, "a cat and a dog", "t-low")
    high, _ = speak("flite", "awb", 80, 175, 100, None, "a cat and a dog", "t-high")
    assert sr == SR and len(low) > SR // 2 and np.sqrt(np.mean(low**2)) > 0.01

    def f0(x: np.ndarray) -> float:  # median autocorrelation pitch of the voiced frames
        out = []
        for s in range(0, len(x) - 640, 320):
            w = x[s : s + 640].astype(np.float64)
            if np.sqrt(np.mean(w**2)) < 0.02:
                continue
            ac = np.correlate(w, w, "full")[639:]
            out.append(SR / (40 + np.argmax(ac[40:267])))
        return float(np.median(out))

    assert f0(high) > 1.5 * f0(low)
