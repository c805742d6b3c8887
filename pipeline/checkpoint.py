"""Run checkpoints as plain data: saved atomically, loaded with `weights_only=True` only.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts (module and optimizer
state dicts, the run's counters, the resolved config, the RNG states). Nothing in it needs
pickle to run code when it is read, so `load_checkpoint` refuses any file that would (an
older checkpoint holding numpy objects, or a planted one).

Writes: `atomic_save` (a checkpoint) and `atomic_write_text` (a run's JSON records) write
`NAME.tmp` beside the file, fsync it and rename it over NAME, so a kill leaves the old file or
the new one, never half of one (a stale NAME.tmp may remain: the trainer removes it on its next
start, pipeline/train/run_dir.py). A full disk raises OSError(ENOSPC, ..., NAME), which
pipeline/errors.py prints as its one line; torch.save's own wrapping of it (`RuntimeError:
[enforce fail at inline_container.cc:...]`) is translated first, and the temp file is removed.

Crash tests: `crash_point(NAME)` marks the steps of a checkpoint write (`best_tmp`,
`best_renamed`, `last_tmp`, `last_renamed`; the trainer adds `logged`, CRASH_POINTS);
`SFM_TRAIN_KILL_AT=NAME[:N]` ends the process with os._exit(KILL_EXIT) the N-th time (default 1)
it gets there (tests/test_crash_train.py). Unset, it costs one dict lookup.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from pipeline.errors import UserError
from pipeline.store.faults import KILL_EXIT, reached


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read safely or at all; the message names it and what to do."""


KILL_ENV = "SFM_TRAIN_KILL_AT"
CRASH_POINTS = (
    "best_tmp",  # best.pt.tmp written, not yet renamed
    "best_renamed",  # best.pt in place; the log line not yet written
    "logged",  # the evaluation's log.jsonl line appended; last.pt not yet written
    "last_tmp",  # last.pt.tmp written, not yet renamed
    "last_renamed",  # last.pt in place
)
_hits: dict[str, int] = {}
# torch.save's messages when a write fails under it (it wraps the OSError in a RuntimeError)
_WRITE_FAILED = ("inline_container", "file write failed", "unexpected pos", "No space left")


def _kill() -> None:
    os._exit(KILL_EXIT)


def crash_point(name: str) -> None:
    """Mark that a checkpoint write reached `name`; the end of the process if SFM_TRAIN_KILL_AT asks."""
    if reached(KILL_ENV, name, _hits):
        _kill()


def _disk_full(e: BaseException, folder: Path) -> bool:
    """Whether `e` (or an error it wraps) is a full disk under `folder`."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        seen = seen.__cause__ or seen.__context__
    if isinstance(e, RuntimeError) and any(m in str(e) for m in _WRITE_FAILED):
        try:
            return shutil.disk_usage(folder).free < (1 << 20)
        except OSError:
            return False
    return False


def _write_tmp(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write `path`.tmp with `write(file)`, fsync it; on failure remove it (a full disk: ENOSPC)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, Exception) and _disk_full(e, path.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        raise
    return tmp


def atomic_save(obj: dict, path: Path) -> None:
    """torch.save to `path`.tmp in the same folder, fsync, then rename over `path`.

    A full disk raises OSError(ENOSPC, ..., str(path)) and leaves no temp file; the crash
    points `<stem>_tmp` and `<stem>_renamed` (best.pt: best_tmp, ...) mark the two steps."""
    path = Path(path)
    tmp = _write_tmp(path, lambda f: torch.save(obj, f))
    crash_point(f"{path.stem}_tmp")
    tmp.replace(path)
    crash_point(f"{path.stem}_renamed")


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file (a run's JSON record) as `atomic_save` writes a checkpoint."""
    path = Path(path)
    _write_tmp(path, lambda f: f.write(text.encode("utf-8"))).replace(path)


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
