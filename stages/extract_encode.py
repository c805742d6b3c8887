"""Stage one's 8-bit path: what happens to each upstream output on the device (`Encoder`), and
which batches calibrate the scales (`calibration_batches`). Used by stages/extract.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

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


def calibration_batches(plan: list[list[Utterance]], seconds: float) -> list[int]:
    """Indices of evenly spaced whole batches of `plan` holding about `seconds` of audio.

    A pure function of the plan: every shard and every resumed run picks the same batches.
    """
    total = sum(u.duration for b in plan for u in b)
    if not plan:
        return []
    stride = max(1, int(np.ceil(total / max(seconds, 1e-9))))
    stride = min(stride, len(plan))
    return list(range(stride // 2, len(plan), stride))
