"""Deleting stores for `--force`: only what the store format owns, never while a writer runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import zarr

from pipeline.store.errors import StoreError, StoreLocked
from pipeline.store.lock import FileLock
from pipeline.store.meta import (
    FORMAT,
    META_LOCK,
    _is_local,
    _local,
    foreign_group,
    part_name,
    part_tmp_name,
    unexpected_entries,
)


def _remove_entry(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink(missing_ok=True)


def remove_store(path: str | Path) -> None:
    """Delete a store's own entries (zarr.json, scales, part-* folders, locks) and then its
    folder if that is empty. Refuses, deleting nothing, when the folder holds anything else
    (naming it) or while a live process writes one of its parts."""
    if not _is_local(path):
        fs = zarr.storage.FsspecStore.from_url(str(path)).fs
        if fs.exists(str(path)):
            fs.rm(str(path), recursive=True)
        return
    p = _local(path)
    if not p.exists():
        return
    if not p.is_dir():
        raise StoreError(f"--force refused: {p} is a file, not a feature store; nothing was deleted",
                         "pick another --out (a store is a folder, e.g. cache/<suite>/<task>/<upstream>.zarr)")  # fmt: skip
    extra = unexpected_entries(p)
    if extra:
        shown = ", ".join(extra[:8]) + (f" and {len(extra) - 8} more" if len(extra) > 8 else "")
        raise StoreError(
            f"--force refused: {p} holds entries that are not part of a feature store ({shown}); nothing was deleted",  # fmt: skip
            "if it is the store you meant, move those entries out first; else pick another --out",
        )
    other = foreign_group(p)
    if other is not None:
        raise StoreError(
            f"--force refused: {p} is a zarr group of something else ({other}); nothing was deleted",  # fmt: skip
            "pick another --out; --force deletes feature stores only (their zarr.json says "
            f"format: {FORMAT})",
        )
    held: list[FileLock] = []
    try:
        with FileLock(p / META_LOCK):
            for lock in sorted(p.glob("part-*.lock")):
                lk = FileLock(lock)
                if not lk.acquire():
                    raise StoreLocked(
                        f"cannot rebuild {p}: {lock.name} is held by {lk.owner()}",
                        "stop that process first (or let it finish)",
                    )
                held.append(lk)
            for e in sorted(p.iterdir()):
                if e.name != META_LOCK and not e.name.endswith(".lock"):
                    _remove_entry(e)
    finally:
        for lk in held:
            lk.release()
    try:
        p.rmdir()
    except OSError:  # a writer started meanwhile (its lock file is there): leave the folder
        pass


def remove_part(path: str | Path, i: int, n: int) -> None:
    """Delete part i of n of a store (--force on one shard); refuses while it is being written."""
    if not _is_local(path):
        fs = zarr.storage.FsspecStore.from_url(str(path)).fs
        target = f"{str(path).rstrip('/')}/{part_name(i, n)}"
        if fs.exists(target):
            fs.rm(target, recursive=True)
        return
    p = _local(path)
    lk = FileLock(p / f"{part_name(i, n)}.lock")
    if not lk.acquire():
        raise StoreLocked(f"cannot rebuild part {part_name(i, n)} of {p}: it is being written by {lk.owner()}", "stop that process first")  # fmt: skip
    try:
        for e in (p / part_name(i, n), p / part_tmp_name(i, n)):
            if e.exists():
                shutil.rmtree(e)
    finally:
        lk.release()
