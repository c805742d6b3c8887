"""Creating a store and its parts so that a kill at any moment leaves something the same
command finishes: the root metadata in one atomic write under the store's metadata lock, a
part's skeleton built in a temporary folder and renamed into place (local stores)."""

from __future__ import annotations

import contextlib
import logging
import math
import mmap
import os
import shutil

import numpy as np
import zarr

from pipeline.store.checksum import ALGORITHM, index_checksums
from pipeline.store.errors import StoreError
from pipeline.store.faults import step as fault
from pipeline.store.lock import FileLock
from pipeline.store.meta import (
    FORMAT,
    FORMAT_VERSION,
    META_LOCK,
    _is_local,
    _local,
    check_fingerprint,
    fsync_path,
    part_name,
    part_tmp_name,
    store_exists,
)

CHUNK_BYTES = 8 << 20  # target bytes per frame chunk (cache/README.md: bench/bench_store.py)
INDEX_CHUNK = 4096  # entries per index chunk (32 KiB of int64: small stores stay small)
INDEX_ARRAYS = ("ids", "offsets", "lengths")
WRITE_CFG = {"write_empty_chunks": True}  # an all-zero chunk is still a file: memmap-able
log = logging.getLogger("pipeline.store")


def chunk_frames_for(frame_bytes: int, target: int = CHUNK_BYTES) -> int:
    """Frames per chunk near `target` bytes, with chunk bytes a multiple of the page size."""
    step = mmap.ALLOCATIONGRANULARITY // math.gcd(frame_bytes, mmap.ALLOCATIONGRANULARITY)
    return max(step, (target // frame_bytes) // step * step)


def init_root(path: str, fingerprint: dict, n: int, scales: np.ndarray | None) -> zarr.Group:
    """Check the store's metadata, or write it (one atomic write), under the metadata lock;
    8-bit stores: write or check the root array `scales` (L, D) too."""
    local = _is_local(path)
    meta = FileLock(_local(path) / META_LOCK) if local else contextlib.nullcontext()
    with meta:
        if store_exists(path):
            check_fingerprint(path, fingerprint)
            root = zarr.open_group(path, mode="r+")
            if root.attrs.get("num_parts") != n:
                raise StoreError(
                    f"{path} was written in {root.attrs.get('num_parts')} part(s), this run asks for {n} (--shard i/n or --cluster size)",  # fmt: skip
                    "use the same n, or --force to rebuild",
                )
        else:
            attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, "fingerprint": fingerprint, "num_parts": n}  # fmt: skip
            root = zarr.create_group(path, attributes=attrs)
            if local:
                fsync_path(_local(path) / "zarr.json")
                fsync_path(_local(path))
            fault("root_created")
        if scales is not None:
            _put_scales(root, scales, path)
    return root


def part_ok(root: zarr.Group, name: str) -> bool:
    """The part exists with its attributes and all four arrays."""
    try:
        g = root[name]
        ok = isinstance(g, zarr.Group) and "committed" in g.attrs
        return ok and all(isinstance(g[a], zarr.Array) for a in ("frames", *INDEX_ARRAYS))
    except (KeyError, FileNotFoundError, ValueError):
        return False


def build_part(path: str, root: zarr.Group, shard: tuple[int, int], L: int, D: int, dtype: np.dtype,
               compressor: str | None, chunk_frames: int | None) -> None:  # fmt: skip
    """Create part `shard` empty, frames (0, L, D) in `dtype`: in a temporary folder renamed
    into place when local (a broken part of that name is replaced)."""
    name = part_name(*shard)
    if _is_local(path):
        top = _local(path)
        where, tmp = top / name, top / part_tmp_name(*shard)
        for p in (tmp, where):
            if p.exists():
                shutil.rmtree(p)
        target = str(tmp)
    else:
        if name in root:
            log.warning("%s: rebuilding the unfinished part %s", path, name)
            del root[name]
        target = f"{path.rstrip('/')}/{name}"
    attrs = {"shard": list(shard), "committed": {"utterances": 0, "frames": 0}, "complete": False, "failed": [],
             "checksums": {"algorithm": ALGORITHM, "frames": [], **index_checksums([], [], [])}}  # fmt: skip
    g = zarr.create_group(target, attributes=attrs)
    fault("part_tmp")
    C = chunk_frames or chunk_frames_for(L * D, CHUNK_BYTES // 2)  # same for every encoding
    comp = None if compressor is None else zarr.codecs.ZstdCodec(level=3)
    g.create_array("frames", shape=(0, L, D), chunks=(C, L, D), dtype=dtype,
                   fill_value=0, compressors=comp, config=WRITE_CFG,
                   chunk_key_encoding={"name": "default", "separator": "."})  # fmt: skip
    fault("part_frames")
    g.create_array("ids", shape=(0,), chunks=(INDEX_CHUNK,), dtype=str, compressors=None)
    for a in ("offsets", "lengths"):
        g.create_array(a, shape=(0,), chunks=(INDEX_CHUNK,), dtype="int64", fill_value=0, compressors=None)  # fmt: skip
    if _is_local(path):
        for f in sorted(tmp.rglob("*"), reverse=True):
            fsync_path(f)
        fsync_path(tmp)
        fault("part_built")
        os.rename(tmp, where)
        fsync_path(top)
    fault("part_renamed")


def _put_scales(root: zarr.Group, scales: np.ndarray, path: str) -> None:
    """Write the root array `scales` once (under the metadata lock); refuse other scales."""
    if "scales" in root:
        have = np.asarray(root["scales"][...])
        if have.shape == scales.shape and not have.any():  # created, not yet filled: finish it
            root["scales"][...] = scales
        elif have.shape != scales.shape or not np.array_equal(have, scales):
            raise StoreError(
                f"{path} holds other int8/fp8 scales than this run computed (another calibration sample, or another upstream build)",  # fmt: skip
                "rebuild it with --force",
            )
        else:
            return
    else:
        a = root.create_array("scales", shape=scales.shape, dtype="float32", compressors=None, fill_value=0)  # fmt: skip
        fault("scales_created")
        a[...] = scales
    if _is_local(path):
        for f in (_local(path) / "scales").rglob("*"):
            fsync_path(f)
