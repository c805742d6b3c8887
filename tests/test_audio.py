"""pipeline.audio: down-mixing, resampling, and errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import AudioError, audio_info, load_audio, write_wav


def sine(freq: float, sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


def test_mono_wav_round_trip(tmp_path):
    x = sine(440, 16000, 0.5)
    p = write_wav(tmp_path / "a.wav", x)
    y = load_audio(p)
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) == len(x)
    np.testing.assert_allclose(y, x, atol=1e-4)  # PCM16 quantisation
    assert audio_info(p) == (8000, 16000, 1)


def test_stereo_is_downmixed_by_mean(tmp_path):
    left, right = sine(300, 16000, 0.25), sine(700, 16000, 0.25)
    p = tmp_path / "st.flac"
    sf.write(p, np.stack([left, right], axis=1), 16000, subtype="PCM_16")
    y = load_audio(p)
    assert y.shape == left.shape
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-4)
    assert audio_info(p)[2] == 2


@pytest.mark.parametrize("sr", [8000, 44100])
def test_resample_to_16k_keeps_length_and_frequency(tmp_path, sr):
    p = write_wav(tmp_path / f"s{sr}.wav", sine(1000, sr, 1.0), sr=sr)
    y = load_audio(p)
    assert abs(len(y) - 16000) <= 1
    assert abs(peak_hz(y, 16000) - 1000) < 5
    assert audio_info(p)[:2] == (sr, sr)


def test_missing_file(tmp_path):
    p = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="nope.wav.*does not exist"):
        load_audio(p)
    with pytest.raises(AudioError, match="nope.wav"):
        audio_info(p)


def test_zero_byte_and_zero_sample_files(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav"):
        load_audio(empty)
    silent = tmp_path / "zero.wav"
    sf.write(silent, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="zero.wav.*0 samples"):
        load_audio(silent)


def test_corrupt_bytes_and_text_file(tmp_path):
    good = write_wav(tmp_path / "good.wav", sine(440, 16000, 0.2)).read_bytes()
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(good[:4] + bytes(range(256)) * 4)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    for p in (corrupt, text):
        with pytest.raises(AudioError, match=p.name) as e:
            load_audio(p)
        assert "replace it or drop it" in str(e.value)
        with pytest.raises(AudioError, match=p.name):
            audio_info(p)


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="not a file"):
        load_audio(tmp_path)


def test_nan_samples(tmp_path):
    p = tmp_path / "nan.wav"
    x = sine(440, 16000, 0.1)
    x[10] = np.nan
    sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav.*NaN"):
        load_audio(p)
    with pytest.raises(AudioError):
        write_wav(tmp_path / "out.wav", x)
