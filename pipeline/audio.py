"""Audio I/O: every stage reads a file through `load_audio` and gets 16 kHz mono float32.

soundfile decodes wav and flac (no FFmpeg needed); other sample rates are resampled with
torchaudio.functional.resample (imported only when a file needs it). Anything that cannot
be used as speech — a missing, empty, corrupt or non-audio file, or NaN/inf samples — raises
`AudioError` naming the file and what to do about it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.errors import UserError

TARGET_SR = 16000


class AudioError(UserError, ValueError):
    """A file that cannot be read as audio; the message names the file and what to do."""


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise AudioError(
            f"audio file {path} does not exist; fix the path in the manifest or re-import the corpus"
        )
    if not path.is_file():
        raise AudioError(f"audio path {path} is not a file; manifests must name wav/flac files")


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """(num_frames, sample_rate, channels) of a file, read from its header without decoding."""
    path = Path(path)
    _check_exists(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise AudioError(
            f"cannot read audio header of {path} ({_reason(e)}); the file is corrupt, truncated or "
            "not a wav/flac file: replace it or drop it from the manifest"
        ) from e
    return int(info.frames), int(info.samplerate), int(info.channels)


def load_audio(path: str | Path, target_sr: int = TARGET_SR) -> np.ndarray:
    """Decode a wav/flac file to mono float32 at `target_sr`.

    Returns:
        audio: np.ndarray float32, shape (S,) with S = samples at `target_sr`; stereo and
        multi-channel files are down-mixed by the mean of their channels.
    Raises:
        AudioError: missing, unreadable, corrupt, non-audio or empty files, or NaN/inf samples.
    """
    path = Path(path)
    _check_exists(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (S, C)
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise AudioError(
            f"cannot decode {path} ({_reason(e)}); the file is corrupt, truncated or not a wav/flac "
            "file: replace it or drop it from the manifest"
        ) from e
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioError(f"audio file {path} holds 0 samples; drop it from the manifest")
    audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # (S,)
    if not np.isfinite(audio).all():
        bad = int((~np.isfinite(audio)).sum())
        raise AudioError(f"audio file {path} holds {bad} NaN/inf sample(s); re-encode or drop it")
    if sr != target_sr:
        audio = resample(audio, sr, target_sr)
    return np.ascontiguousarray(audio, dtype=np.float32)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling of a 1-D signal (S,) -> (round(S * target_sr / orig_sr),)."""
    import torch
    import torchaudio.functional as F

    out = F.resample(
        torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), orig_sr, target_sr
    )
    return out.numpy()


def write_wav(path: str | Path, audio: np.ndarray, sr: int = TARGET_SR) -> Path:
    """Write a mono (S,) or multi-channel (S, C) float signal in [-1, 1] as 16-bit PCM wav."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = np.asarray(audio, dtype=np.float32)
    if not np.isfinite(audio).all():
        raise AudioError(f"refusing to write {path}: the signal holds NaN/inf samples")
    sf.write(str(path), np.clip(audio, -1.0, 1.0), sr, subtype="PCM_16")
    return path


def _reason(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
