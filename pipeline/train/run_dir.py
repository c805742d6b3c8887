"""A training run's directory: one trainer at a time, create it, refuse or clear another run in
it, check its inputs, and leave it as an uninterrupted run would after a kill.

RUN_DIR holds config.yaml (the resolved config), inputs.json (pipeline/feed/run_inputs.py) and what
training writes (RUN_OUTPUTS). A run resumes from checkpoints/last.pt when its config and its
inputs are unchanged; `--force` discards a run whose config or inputs changed.

One trainer per run dir: `hold_run(RUN_DIR)` takes an flock (pipeline/store/lock.py's FileLock)
on `RUN_DIR.train.lock`, a sibling of the directory (never inside it: clearing or removing the
run dir, as `--force`, the grid and DVC do, must not drop the lock), for as long as the run
trains. `pipeline train`, `train-packed`, DDP's rank 0 and every grid worker take it; a second
trainer of the same run dir gets RunLocked, one line naming the run dir and the holder's pid
and host. The kernel drops the lock when its holder dies, so a killed run never blocks a rerun.

After a kill (`prepare_run_dir`): a stale `*.tmp` of an interrupted checkpoint write is removed;
without checkpoints/last.pt the run starts from scratch and what a killed first attempt wrote
(log.jsonl lines, best.pt, metrics) is dropped; with it, the trainer cuts log.jsonl back to
last.pt's step (`truncate_log`), so the log holds each evaluation once.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.console import console
from pipeline.errors import UserError
from pipeline.feed.run_inputs import InputsChanged, compare_inputs, read_inputs
from pipeline.store.lock import FileLock, is_held
from pipeline.train.config import RunConfig, identity, load_run_config, save_config

RUN_OUTPUTS = ("checkpoints", "log.jsonl", "metrics.json", "interface_summary.json", "inputs.json")
RUN_LOCK_SUFFIX = ".train.lock"  # RUN_DIR.train.lock, beside the run dir
CHANGED_INPUTS_ADVICE = (
    "Restore the stores and manifests the run was trained on, or retrain it from scratch "
    "with --force (discards its checkpoints), or train into another --out."
)


class RunDirError(UserError, RuntimeError):
    """A run directory that cannot be used as asked; the message says what to do."""


class RunLocked(RunDirError):
    """Another live process trains the run directory (it holds RUN_DIR.train.lock)."""

    def __init__(self, run_dir: str | Path, holder: str, lock: str | Path) -> None:
        self.run_dir, self.holder, self.lock = str(run_dir), holder, str(lock)
        super().__init__(
            f"{run_dir} is being trained by {holder} (it holds {lock}); wait for it to finish "
            "or stop it, then rerun: the run resumes from its last checkpoint"
        )


def run_lock_path(run_dir: str | Path) -> Path:
    """The lock file of a run dir: `RUN_DIR.train.lock` beside it (the real path: two spellings
    of one directory share one lock)."""
    d = Path(run_dir).resolve()
    return d.with_name(d.name + RUN_LOCK_SUFFIX)


def run_holder(run_dir: str | Path) -> str | None:
    """'pid P on HOST' of the live process that trains `run_dir`, or None when none does."""
    lock = run_lock_path(run_dir)
    return FileLock(lock).owner() if is_held(lock) else None


@contextmanager
def hold_run(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run dir's lock while the block trains it; RunLocked when another process holds
    it (or this process, through another `hold_run`: the lock is not reentrant)."""
    lock = FileLock(run_lock_path(run_dir))
    if not lock.acquire(blocking=False):
        raise RunLocked(run_dir, lock.owner(), lock.path)
    try:
        yield lock.path
    finally:
        lock.release()


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def prepare_run_dir(cfg: RunConfig, force: bool = False) -> bool:
    """Create RUN_DIR and write config.yaml. Returns True when last.pt should be resumed.

    An existing run dir with another config is refused unless `force`, which clears it. What a
    killed attempt left is tidied (`discard_partial`). Call it holding the run (`hold_run`).
    """
    run_dir = Path(cfg.out)
    cfg_path = run_dir / "config.yaml"
    if cfg_path.exists():
        old = load_run_config(cfg_path)
        if identity(old) != identity(cfg):
            if not force:
                a, b = _flat(identity(old)), _flat(identity(cfg))
                diff = [
                    f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
                    for k in sorted(set(a) | set(b))
                    if a.get(k) != b.get(k)
                ]
                raise RunDirError(
                    f"{run_dir} holds a run with a different config (differs in {diff}); "
                    "use another --out, or --force to discard it"
                )
            clear_run(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_config(cfg, cfg_path)
    return discard_partial(run_dir)


def discard_partial(run_dir: Path) -> bool:
    """Tidy what a killed attempt left; True when checkpoints/last.pt is there to resume from.

    Removes stale `*.tmp` files (a checkpoint or record write cut short); without last.pt
    clears the run's outputs (`clear_run`): a rerun from scratch must not append to the log,
    or keep the best.pt, of an attempt killed before its first checkpoint."""
    for tmp in [*run_dir.glob("*.tmp"), *(run_dir / "checkpoints").glob("*.tmp")]:
        tmp.unlink(missing_ok=True)
    if (run_dir / "checkpoints" / "last.pt").exists():
        return True
    if any((run_dir / n).exists() for n in RUN_OUTPUTS if n != "checkpoints") or any(
        (run_dir / "checkpoints").iterdir()
    ):
        console.print(f"no checkpoint in {run_dir / 'checkpoints'}: training from scratch")
        clear_run(run_dir)
    return False


def clear_run(run_dir: Path) -> None:
    """Delete what a training run wrote (checkpoints, log, metrics, inputs); keeps config.yaml."""
    for name in RUN_OUTPUTS:
        p = run_dir / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)


def _step(line: str) -> int | None:
    """The step of one log line; None for a line cut short (a kill or a full disk mid-write)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from (and any torn line);
    rewritten through a temp file and a rename, so a kill here loses nothing."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [ln for ln in lines if (s := _step(ln)) is not None and s <= step]
    if kept == lines:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")
    os.replace(tmp, path)


def inputs_unchanged(run_dir: Path, inputs: dict, force: bool) -> bool:
    """True when the run may resume: its recorded inputs match. With `force` a changed run is cleared."""
    recorded = read_inputs(run_dir)
    if recorded is None:
        return True  # written before inputs were recorded: nothing to compare
    try:
        compare_inputs(recorded, inputs, CHANGED_INPUTS_ADVICE)
    except InputsChanged as e:
        if not force:
            raise
        console.print(f"--force: {str(e).splitlines()[1].strip()} ...; training from scratch")
        clear_run(run_dir)
        return False
    return True
