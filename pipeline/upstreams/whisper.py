"""openai-whisper's audio encoder as an upstream that returns every hidden state.

States (L = n_audio_layer + 1), each (T, D) with D = n_audio_state:
  state 0      the encoder input: GELU(conv2(GELU(conv1(mel)))) + positional embedding
  state i ≥ 1  the raw output of encoder block i, *before* ``ln_post`` (the last state too:
               openai-whisper's hooks give raw block outputs; transformers' WhisperEncoder
               returns its last state after the final LayerNorm, so do not mix the two).

Frames: log-mel at 100 Hz (hop 160, ``S // 160`` frames), halved by conv2 (stride 2, padding 1):
``T = ceil((S // 160) / 2)`` ≈ 50 Hz. Audio longer than 30 s is cut into 30-s windows that are
encoded one by one and concatenated along T (a 30-s window gives exactly 1500 frames).

Modes:
  pad30  each window's *audio* is zero-padded to 30 s before the mel (as whisper.transcribe and
         Whisper's training did), the full 1500-frame encoder runs, and the output is cropped to
         the utterance's T. Independent of the batch: pad_sensitive = False.
  trim   the encoder runs on the utterance's own mel with positional_embedding[:T] (as ESPnet's
         whisper frontend does): ~3-5× faster on short clips, slightly different states. In a
         batch all utterances are padded to the longest and Whisper's attention has no mask, so
         padded utterances change: pad_sensitive = True (batch equal lengths only).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F

from .base import UpstreamSpec, UpstreamUnavailable

WINDOW_SAMPLES = 480_000  # 30 s at 16 kHz: one Whisper input window
HOP = 160  # mel hop (100 Hz)
MODES = ("pad30", "trim")


def whisper_num_frames(num_samples: int) -> int:
    """Encoder frames for `num_samples` samples: ceil((num_samples // 160) / 2)."""
    return -(-(int(num_samples) // HOP) // 2)


def load_whisper_model(source: str, device: str = "cpu"):
    """whisper.load_model for a checkpoint path or an openai-whisper name ("small", ...)."""
    import whisper

    try:
        return whisper.load_model(source, device=device)
    except Exception as e:  # download failures, missing files
        where = "checkpoint" if Path(source).suffix == ".pt" else "model name"
        raise UpstreamUnavailable(
            f"could not load Whisper {where} {source!r} ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__}): "
            "fetch it once with network access, or pass an openai-whisper .pt checkpoint or a "
            "CTranslate2 directory"
        ) from e


def encoder_states(encoder: torch.nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """All hidden states of a whisper AudioEncoder for a mel of any length ≤ 3000 frames.

    mel: (B, n_mels, N). Returns (L, B, T, D) with T = ceil(N / 2), L = len(blocks) + 1.
    With N = 3000 this equals the stock forward (its last state + ln_post == encoder(mel)).
    """
    x = F.gelu(encoder.conv1(mel))
    x = F.gelu(encoder.conv2(x))
    x = x.permute(0, 2, 1)  # (B, T, D)
    if x.shape[1] > encoder.positional_embedding.shape[0]:
        raise ValueError(f"mel of {mel.shape[-1]} frames exceeds Whisper's 30-s window")
    x = (x + encoder.positional_embedding[: x.shape[1]]).to(x.dtype)
    states = [x]
    for block in encoder.blocks:
        x = block(x)
        states.append(x)
    return torch.stack(states)  # (L, B, T, D)


class WhisperUpstream:
    """All encoder states of an openai-whisper model (see the module docstring)."""

    def __init__(
        self,
        spec: UpstreamSpec,
        model,
        mode: str = "pad30",
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        if mode not in MODES:
            raise ValueError(f"whisper_mode {mode!r}: choose one of {MODES}")
        self.spec, self.mode, self.device, self.dtype = spec, mode, torch.device(device), dtype
        # weights stay float32: whisper's Linear/Conv1d cast them to the input's dtype and its
        # LayerNorm runs in float32, so a float16 mel gives float16 states (as whisper does)
        self.model = model.to(self.device).eval().requires_grad_(False)  # the full model
        self.n_mels = model.dims.n_mels
        self.pad_sensitive = mode == "trim"
        self._hash: str | None = None

    def num_frames(self, num_samples: int) -> int:
        return whisper_num_frames(num_samples)

    def weights_hash(self) -> str:
        """sha256 over the state dict (names, dtypes, shapes, bytes), first 16 hex; cached."""
        if self._hash is None:
            self._hash = state_dict_hash(self.model.state_dict())
        return self._hash

    def _mel(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (B, S) float32 -> (B, n_mels, S // 160); each row on its own (whisper clamps
        the log-mel to 8 below *its input's* maximum, so a joint call would mix utterances)."""
        import whisper

        mels = [whisper.log_mel_spectrogram(a, n_mels=self.n_mels) for a in audio]
        return torch.stack(mels)

    @torch.inference_mode()
    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """waveforms: (B, S) float at 16 kHz, zero-padded; lengths: (B,) samples.

        Returns B tensors (L, T_i, D), T_i = num_frames(lengths[i]), in self.dtype on self.device.
        """
        waveforms = waveforms.to(self.device, torch.float32)
        lengths = [int(n) for n in lengths]
        pieces: list[list[torch.Tensor]] = [[] for _ in lengths]
        longest = max(lengths)
        for start in range(0, max(longest, 1), WINDOW_SAMPLES):
            rows = [i for i, n in enumerate(lengths) if start == 0 or n > start]
            n_in = [min(max(lengths[i] - start, 0), WINDOW_SAMPLES) for i in rows]
            width = WINDOW_SAMPLES if self.mode == "pad30" else max(max(n_in), HOP * 2)
            audio = torch.zeros(len(rows), width, device=self.device)
            for r, (i, n) in enumerate(zip(rows, n_in, strict=True)):
                audio[r, :n] = waveforms[i, start : start + n]
            mel = self._mel(audio).to(self.dtype)  # (b, n_mels, width // 160)
            states = encoder_states(self.model.encoder, mel)  # (L, b, T, D)
            for r, (i, n) in enumerate(zip(rows, n_in, strict=True)):
                pieces[i].append(states[:, r, : whisper_num_frames(n)])
        return [torch.cat(p, dim=1) for p in pieces]


def state_dict_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and bytes; first 16 hex digits."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def whisper_spec(name: str, source: str, dims) -> UpstreamSpec:
    """The spec of a loaded Whisper model (dims: whisper.ModelDimensions or a dict)."""
    d = dims if isinstance(dims, dict) else vars(dims)
    return UpstreamSpec(
        name=name,
        family="whisper",
        source=source,
        sample_rate=16000,
        frame_rate=50.0,
        num_layers=d["n_audio_layer"] + 1,
        dim=d["n_audio_state"],
        extra={"n_mels": d["n_mels"], "n_vocab": d["n_vocab"]},
    )
