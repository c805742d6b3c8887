"""Where torch work runs: the one `resolve_device` of stage one (extraction) and stage two (training)."""

from __future__ import annotations

import torch

from pipeline.errors import UserError


class DeviceUnavailable(UserError, RuntimeError):
    """A device was asked for that this machine does not have or torch does not know."""


def resolve_device(name: str) -> str:
    """A device name as torch takes it: `auto` -> "cuda" when a GPU is visible, else "cpu";
    `cpu`, `cuda`, `cuda:N` as given, refusing a CUDA device this machine does not have."""
    name = str(name).strip()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceUnavailable(
            f"device {name!r} is not a device torch knows: use auto, cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {name!r}: no CUDA device is visible; use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    return name
