"""Augmentation (pipeline.data.augment): speed, reverberation, noise, and their seeded draws."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.augment import (
    Augment,
    AugmentPolicy,
    add_noise,
    apply,
    change_speed,
    coloured_noise,
    reverberate,
    room_impulse_response,
)

SR = 16000


def _tone(seconds: float = 1.0, hz: float = 200.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(spec)])


def test_speed_perturbation_shortens_and_raises_pitch():
    x = _tone()
    fast, slow = change_speed(x, 1.1), change_speed(x, 0.9)
    assert len(fast) == pytest.approx(len(x) / 1.1, abs=2)
    assert len(slow) == pytest.approx(len(x) / 0.9, abs=2)
    assert _peak_hz(fast) == pytest.approx(220, abs=3) and _peak_hz(slow) == pytest.approx(
        180, abs=3
    )
    assert change_speed(x, 1.0) is x


def test_impulse_response_decays_by_60_db_over_rt60():
    rng = np.random.default_rng(0)
    rir = room_impulse_response(0.5, rng)
    assert rir[0] == np.max(np.abs(rir))  # the direct path leads
    energy = rir[1:] ** 2
    first, last = energy[: SR // 20].mean(), energy[int(0.45 * SR) :].mean()
    assert 10 * np.log10(first / last) > 40


def test_reverb_keeps_the_peak_and_smears_in_time():
    x = np.zeros(SR, dtype=np.float32)
    x[100] = 0.5
    wet = reverberate(x, 0.4, np.random.default_rng(1))
    assert np.max(np.abs(wet)) == pytest.approx(0.5, rel=1e-5)
    assert np.sum(np.abs(wet) > 0.005) > 500  # one click became a tail


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_noise_is_added_at_the_requested_snr(snr):
    x = _tone(2.0)
    y = add_noise(x, "pink", snr, np.random.default_rng(2))
    noise = y.astype(np.float64) - x
    measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2))
    assert measured == pytest.approx(snr, abs=0.05)


def test_noise_colours_tilt_the_spectrum():
    rng = np.random.default_rng(3)
    tilt = {}
    for kind in ("white", "pink", "brown"):
        p = np.abs(np.fft.rfft(coloured_noise(kind, 4 * SR, rng))) ** 2
        f = np.fft.rfftfreq(4 * SR, 1 / SR)
        tilt[kind] = 10 * np.log10(p[(f > 100) & (f < 200)].mean() / p[f > 4000].mean())
    assert abs(tilt["white"]) < 1 and 10 < tilt["pink"] < 25 and tilt["brown"] > 25
    with pytest.raises(ValueError, match="unknown noise"):
        coloured_noise("blue", 10, rng)


def test_policy_draws_are_seeded_and_respect_probabilities():
    policy = AugmentPolicy(speed=(0.9, 1.0, 1.1), p_reverb=0.3, p_noise=0.5)
    draws = [policy.draw(np.random.default_rng([7, k])) for k in range(400)]
    assert draws == [policy.draw(np.random.default_rng([7, k])) for k in range(400)]
    assert 0.2 < np.mean([d.rt60 is not None for d in draws]) < 0.4
    assert 0.4 < np.mean([d.noise is not None for d in draws]) < 0.6
    assert {d.speed for d in draws} == {0.9, 1.0, 1.1}
    assert all(5 <= d.snr_db <= 30 for d in draws if d.snr_db is not None)
    assert all(AugmentPolicy().draw(np.random.default_rng(k)).is_identity for k in range(20))


def test_apply_is_deterministic_and_never_clips():
    x = _tone() * 3  # peaks at 0.9
    aug = Augment(speed=1.1, rt60=0.3, noise="white", snr_db=0.0, seed=5)
    y = apply(x, aug)
    assert np.array_equal(y, apply(x, aug)) and np.max(np.abs(y)) <= 0.99 + 1e-6
    assert apply(x, Augment()) is x
