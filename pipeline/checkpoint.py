"""Run checkpoints as plain data: saved atomically, loaded with `weights_only=True` only.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts (module and optimizer
state dicts, the run's counters, the resolved config, the RNG states). Nothing in it needs
pickle to run code when it is read, so `load_checkpoint` refuses any file that would (an
older checkpoint holding numpy objects, or a planted one).
"""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read safely or at all; the message names it and what to do."""


def atomic_save(obj: dict, path: Path) -> None:
    """torch.save to a temp file in the same folder, then rename over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", mmap: bool = False
) -> dict:
    """torch.load(path, weights_only=True); refuses (CheckpointError) what is not plain data.

    The one reader of .pt files in this package (run checkpoints, openai-whisper checkpoints);
    tests/test_checkpoints.py fails on any other torch.load or pickle use.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain data, so it is not loaded "
            f"(written by an older pipeline, or not by this pipeline at all: {first}). "
            "Retrain the run with --force, or delete the file if you did not write it."
        ) from None
    except (EOFError, RuntimeError) as e:
        raise CheckpointError(
            f"{path} cannot be read ({type(e).__name__}: {str(e)[:200]}); it is truncated or "
            "not a checkpoint. Delete it and rerun (training resumes from last.pt when that "
            "one is intact), or retrain with --force."
        ) from None


def rng_state() -> dict:
    """The torch, numpy, random (and CUDA) generator states as tensors, ints and lists."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    st: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "random": {"version": int(version), "internal": list(internal), "gauss": gauss_next},
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(st["torch"].cpu())
    n = st["numpy"]
    keys = n["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    r = st["random"]
    random.setstate((r["version"], tuple(r["internal"]), r["gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in st["cuda"]])


def json_default(x: Any) -> Any:
    """`default=` for json.dumps of run records: tensors and arrays as lists, numpy scalars as numbers."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


def plain(obj: Any) -> Any:
    """A JSON round trip: dicts, lists, strings, numbers only (paths become strings)."""
    return json.loads(json.dumps(obj, default=json_default))
