"""Stage one's compute side: the length-sorted batches (`make_batches`), loading a batch's audio, the
forward with a one-by-one retry of a failing batch (`_run_batch`), what happens to each upstream
output on the device (`Encoder`: layer subset, fp16, 8-bit encoding), and which batches
calibrate the 8-bit scales (`calibration_batches`). Used by pipeline/extract/engine.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.audio import AudioError, load_audio
from pipeline.data.manifest import Utterance


@dataclass
class Encoder:
    """What happens to each (T, L_full, D) output on the device: keep `layers`, round to fp16
    (the calibration's view), then encode with `scales` (None: stay fp16)."""

    layers: list[int] | None = None  # None: every state
    encoding: str = "fp16"
    scales: np.ndarray | None = None  # (L_kept, D) float32
    _dev: dict = field(default_factory=dict)

    def __call__(self, o: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """o: (L_full, T, D) on the device -> ((T, L_kept, D) stored values on the CPU, finite)."""
        if self.layers is not None:
            o = o[self.layers]
        h = o.transpose(0, 1).to(torch.float16)  # (T, L, D)
        finite = bool(torch.isfinite(h).all())
        if self.scales is None or not finite:
            return h.contiguous().cpu(), finite
        s = self._dev.get(h.device)
        if s is None:
            s = self._dev[h.device] = torch.from_numpy(self.scales).to(h.device)
        y = h.float() / s  # the same IEEE float32 ops as encoding.encode: identical bytes
        if self.encoding == "int8":
            q = y.round_().clamp_(-127.0, 127.0).to(torch.int8)
        else:
            q = y.clamp_(-448.0, 448.0).to(torch.float8_e4m3fn).view(torch.uint8)
        return q.contiguous().cpu(), finite


def calibration_batches(batches: list[list[Utterance]], seconds: float) -> list[int]:
    """Indices of evenly spaced whole batches of `batches` holding about `seconds` of audio.

    A pure function of the batches: every shard and every resumed run picks the same batches.
    """
    total = sum(u.duration for b in batches for u in b)
    if not batches:
        return []
    stride = max(1, int(np.ceil(total / max(seconds, 1e-9))))
    stride = min(stride, len(batches))
    return list(range(stride // 2, len(batches), stride))


def _effective_samples(n: int, spec, whisper_mode: str) -> int:
    """Samples an utterance costs in a batch: Whisper pad30 always runs whole 30-s windows."""
    if spec.family == "whisper" and whisper_mode == "pad30":
        w = 30 * spec.sample_rate
        return -(-n // w) * w
    return n


def make_batches(
    utts: list[Utterance], up, whisper_mode: str, batch_seconds: float, max_batch: int
) -> list[list[Utterance]]:
    """Length-sorted batches with padded cost <= batch_seconds (one utterance may exceed it).

    Pad-sensitive upstreams get batches of equal sample counts only.
    """
    sr = up.spec.sample_rate
    order = sorted(utts, key=lambda u: (round(u.duration * sr), u.id))
    budget = batch_seconds * sr
    batches: list[list[Utterance]] = []
    cur: list[Utterance] = []
    for u in order:
        n = round(u.duration * sr)
        cost = _effective_samples(n, up.spec, whisper_mode)  # longest so far: sorted ascending
        same = not cur or round(cur[0].duration * sr) == n
        if cur and (cost * (len(cur) + 1) > budget or len(cur) >= max_batch or (up.pad_sensitive and not same)):  # fmt: skip
            batches.append(cur)
            cur = []
        cur.append(u)
    if cur:
        batches.append(cur)
    return batches


def _forward(up, wavs: list[np.ndarray], device: str, enc: Encoder | None = None) -> list[tuple[torch.Tensor, bool]]:  # fmt: skip
    """[((T_i, L, D) stored values on CPU, finite)] for a batch of waveforms; raises on any model
    error. Default: every state as float16."""
    enc = enc or Encoder()
    lengths = torch.tensor([len(w) for w in wavs], dtype=torch.long)
    x = torch.zeros(len(wavs), int(lengths.max()))  # (B, S)
    for i, w in enumerate(wavs):
        x[i, : len(w)] = torch.from_numpy(w)
    amp = device.startswith("cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
        outs = up.forward(x.to(device), lengths.to(device))  # [(L, T_i, D)]
        return [enc(o) for o in outs]


def _run_batch(up, loaded: list[tuple[Utterance, np.ndarray | None, str | None]], device: str,
               enc: Encoder | None = None):  # fmt: skip
    """Features for the loadable utterances of a batch; a failing batch is retried one by one."""
    ok = [(u, w) for u, w, _ in loaded if w is not None]
    failed = [(u.id, err) for u, w, err in loaded if w is None]
    groups = {}  # pad-sensitive: split by the actual sample counts
    for u, w in ok:
        groups.setdefault(len(w) if up.pad_sensitive else 0, []).append((u, w))
    results: list[tuple[str, np.ndarray]] = []
    for members in groups.values():
        try:
            outs = _forward(up, [w for _, w in members], device, enc)
            feats, bad = [f for f, _ in outs], [not ok for _, ok in outs]
        except Exception:
            feats, bad = None, [True] * len(members)
        for j, (u, w) in enumerate(members):
            if feats is not None and not bad[j]:
                results.append((u.id, feats[j].numpy()))
                continue
            try:  # retry alone
                ((f, ok),) = _forward(up, [w], device, enc)
            except Exception as e:
                failed.append((u.id, f"{type(e).__name__}: {e}"))
                continue
            if not ok:
                failed.append((u.id, "non-finite output (NaN/inf) from the upstream"))
            else:
                results.append((u.id, f.numpy()))
    order = {u.id: k for k, (u, _, _) in enumerate(loaded)}
    results.sort(key=lambda r: order[r[0]])
    failed.sort(key=lambda r: order[r[0]])
    return results, failed


def _load(batch: list[Utterance], sr: int):
    out = []
    for u in batch:
        try:
            out.append((u, load_audio(u.path, target_sr=sr), None))
        except AudioError as e:
            out.append((u, None, f"AudioError: {e}"))
        except Exception as e:  # an unreadable file of another kind: skip it, keep going
            out.append((u, None, f"{type(e).__name__}: {e}"))
    return out
