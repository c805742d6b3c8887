"""The feature store: every hidden state of one upstream over one manifest, in Zarr v3.

Layout (full description for researchers in cache/README.md)::

    STORE.zarr/                     group; attrs: format, format_version, fingerprint, num_parts
      scales   (L, D) float32       8-bit encodings only: x = stored value * scale
      part-00000-of-00001/          one part per writer (`--shard i/n` -> n parts)
        frames   (F, L, D) float16  frames-major, chunked along frames only: (C, L, D); int8 or
                                    uint8 (fp8 e4m3 bits) for the 8-bit encodings
        ids      (N,) string        utterance ids, in write order
        offsets  (N,) int64         first frame of each utterance in `frames`
        lengths  (N,) int64         frames of each utterance
        attrs: committed {utterances, frames}, complete, failed [{id, reason}], shard [i, n]

Writers never share a chunk: each part has its own arrays, so N processes need no coordination.
The commit protocol makes a part crash-safe: frame chunks are written (atomically, by zarr's
rename) and fsynced first, then the index arrays, and last the `committed` attribute. A restart
trusts only `committed`, truncates everything past it, and continues; the finished bytes equal
an uninterrupted run's because every chunk is always written whole (zero-padded at the end).

Reading: `open_store(path)[id] -> (T, L, D)`. For local uncompressed stores the chunk files
(raw C-order bytes) are mapped side by side into one contiguous address range, so every
utterance is a zero-copy view, even one that spans chunks; other stores are read through zarr
(pipeline/store_reader.py; `from pipeline.store import open_store` works).
"""

from __future__ import annotations

import math
import mmap
import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr

from pipeline.encoding import encode, is_8bit, stored_dtype
from pipeline.store_meta import (  # noqa: F401  (re-exported: pipeline.store is the one import)
    CODE_VERSION,
    FINGERPRINT_FIELDS,
    FORMAT,
    FORMAT_VERSION,
    FingerprintMismatch,
    StoreError,
    StoreLocked,
    _acquire,
    _alive,
    _fsync,
    _is_local,
    _local,
    _lock_owner,
    check_fingerprint,
    make_fingerprint,
    manifest_hash,
    normalize_fingerprint,
    part_name,
    remove_store,
    store_exists,
)

if TYPE_CHECKING:
    from pipeline.store_reader import StoreReader, open_store  # noqa: F401  (see __getattr__)

CHUNK_BYTES = 8 << 20  # target bytes per frame chunk (cache/README.md: bench/bench_store.py)
INDEX_CHUNK = 4096  # entries per index chunk (32 KiB of int64: small stores stay small)
_WRITE_CFG = {"write_empty_chunks": True}  # an all-zero chunk is still a file: memmap-able


# ----------------------------------------------------------------------------- writer
def chunk_frames_for(frame_bytes: int, target: int = CHUNK_BYTES) -> int:
    """Frames per chunk near `target` bytes, with chunk bytes a multiple of the page size."""
    step = mmap.ALLOCATIONGRANULARITY // math.gcd(frame_bytes, mmap.ALLOCATIONGRANULARITY)
    return max(step, (target // frame_bytes) // step * step)


class StoreWriter:
    """Appends utterances to one part of a store; resumes a killed writer of the same part.

    Args:
        path: the store (a local folder `.../name.zarr`, or a URL zarr accepts).
        fingerprint: `make_fingerprint(...)`; a store with another one is refused.
        shard: (i, n): this writer owns part i of n.
        compressor: None (default, raw chunks, memory-mappable) or "zstd".
        chunk_frames: frames per chunk; default about CHUNK_BYTES per chunk at fp16 (the same
            frames per chunk for every encoding, so 8-bit stores pad in proportion).
        scales: (L, D) float32, required by the 8-bit encodings (fingerprint `encoding`); written
            once as the root array `scales`; a store holding other scales is refused.
    Use: `append(id, feats (T, L, D))`, `fail(id, reason)`, `commit()`, `close()`.
    """

    def __init__(
        self,
        path: str | Path,
        fingerprint: dict,
        shard: tuple[int, int] = (0, 1),
        compressor: str | None = None,
        chunk_frames: int | None = None,
        scales: np.ndarray | None = None,
    ) -> None:
        i, n = shard
        if not 0 <= i < n:
            raise StoreError(f"shard {i}/{n}: need 0 <= i < n")
        fingerprint = normalize_fingerprint(fingerprint)
        self.path, self.fingerprint, self.shard = str(path), fingerprint, (i, n)
        self.local = _is_local(path)
        check_fingerprint(path, fingerprint)
        L, D = int(fingerprint["num_layers"]), int(fingerprint["dim"])
        self.L, self.D = L, D
        self.encoding = fingerprint["encoding"]
        self.dtype = stored_dtype(self.encoding)
        self.scales = None
        if is_8bit(self.encoding):
            if scales is None or np.shape(scales) != (L, D):
                raise StoreError(f"{path}: a {self.encoding} store needs scales of shape ({L}, {D}), got {None if scales is None else np.shape(scales)}")  # fmt: skip
            self.scales = np.ascontiguousarray(scales, dtype=np.float32)
        root = zarr.open_group(self.path, mode="a")
        if root.attrs.get("format") != FORMAT:
            root.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "fingerprint": fingerprint, "num_parts": n})  # fmt: skip
        elif root.attrs.get("num_parts") != n:
            raise StoreError(
                f"{path} was written in {root.attrs.get('num_parts')} part(s), this run asks for {n} "
                "(--shard i/n or --cluster size); use the same n, or --force to rebuild"
            )
        if self.scales is not None:
            _put_scales(root, self.scales, self.path)
        self._lock = None
        if self.local:
            self._lock = _local(path) / f"{part_name(i, n)}.lock"
            _acquire(self._lock)
        try:
            self._open_part(root, compressor, chunk_frames)
        except BaseException:
            self._release()
            raise

    # -- opening and recovery
    def _open_part(self, root, compressor: str | None, chunk_frames: int | None) -> None:
        name = part_name(*self.shard)
        L, D = self.L, self.D
        if name not in root:
            g = root.create_group(name)
            C = chunk_frames or chunk_frames_for(L * D, CHUNK_BYTES // 2)  # same for every encoding
            comp = None if compressor is None else zarr.codecs.ZstdCodec(level=3)
            if compressor not in (None, "zstd"):
                raise StoreError(f"unknown compressor {compressor!r}; use none or zstd")
            g.create_array("frames", shape=(0, L, D), chunks=(C, L, D), dtype=self.dtype,
                           fill_value=0, compressors=comp, config=_WRITE_CFG,
                           chunk_key_encoding={"name": "default", "separator": "."})  # fmt: skip
            g.create_array("ids", shape=(0,), chunks=(INDEX_CHUNK,), dtype=str, compressors=None)
            for a in ("offsets", "lengths"):
                g.create_array(a, shape=(0,), chunks=(INDEX_CHUNK,), dtype="int64", fill_value=0, compressors=None)  # fmt: skip
            g.attrs.update({"shard": list(self.shard), "committed": {"utterances": 0, "frames": 0}, "complete": False, "failed": []})  # fmt: skip
        self.group = g = root[name]
        if self.local:  # leftovers of a killed zarr write
            for tmp in _local(self.path).joinpath(name).rglob("*.partial"):
                tmp.unlink()
        self.frames = zarr.open_array(store=g.store, path=f"{g.path}/frames", mode="r+", config=_WRITE_CFG)  # fmt: skip
        self.C = int(self.frames.chunks[0])
        com = g.attrs["committed"]
        k, F = int(com["utterances"]), int(com["frames"])
        self.ids = list(g["ids"][:k]) if k else []
        self.offsets = [int(x) for x in g["offsets"][:k]] if k else []
        self.lengths = [int(x) for x in g["lengths"][:k]] if k else []
        self.failed = list(g.attrs.get("failed", []))
        if g.attrs.get("complete", False):
            g.attrs.update({"complete": False})  # set again by close()
        self.complete = False
        # truncate everything past the commit, and reload the committed head of the tail chunk
        self._committed_k, self._frames_done = k, F
        for a in ("ids", "offsets", "lengths"):
            g[a].resize((k,))
        self._rewrite_index(max(k - 1, 0))
        nchunks = -(-F // self.C)
        self.frames.resize((nchunks * self.C, self.L, self.D))
        # raw local chunks are written as files directly (zarr's encode path is ~7x slower)
        meta = self.frames.metadata
        self._fdir = _local(self.path) / g.path / "frames" if self.local else None
        self._direct = (
            self.local and sys.byteorder == "little"
            and [c.to_dict()["name"] for c in meta.codecs] == ["bytes"]
            and meta.encode_chunk_key((0, 0, 0)) == "c.0.0.0"
        )  # fmt: skip
        if self._direct:  # chunk files past the commit (written before the kill) go
            for f in self._fdir.glob("c.*.0.0"):
                if int(f.name.split(".")[1]) >= nchunks:
                    f.unlink()
        if self.frames.dtype != self.dtype:
            raise StoreError(f"{self.path}/{name}: frames are {self.frames.dtype}, encoding {self.encoding} stores {self.dtype}; rebuild with --force")  # fmt: skip
        self._buf = np.zeros((self.C, L, D), self.dtype)  # the chunk being filled
        self._chunk = F // self.C
        self._fill = F - self._chunk * self.C
        if self._fill:
            self._buf[: self._fill] = self.frames[self._chunk * self.C : F]
        self._syncs: list = []  # fsync futures of chunks written since the last commit
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fsync")
        self._pending_failed: list[dict] = []

    @property
    def done_ids(self) -> set[str]:
        """Ids committed or recorded as failed in this part (a resumed run skips them)."""
        return (
            set(self.ids) | {f["id"] for f in self.failed} | {f["id"] for f in self._pending_failed}
        )

    # -- appending
    def append(self, uid: str, feats: np.ndarray) -> None:
        """Add one utterance. feats: (T, L, D) floats (encoded here), or values already in the
        stored dtype (float16; int8 / uint8 from `encoding.encode` with this store's scales)."""
        if feats.ndim != 3 or feats.shape[1:] != (self.L, self.D):
            raise StoreError(f"{uid}: features of shape {feats.shape}, store expects (T, {self.L}, {self.D})")  # fmt: skip
        if feats.dtype != self.dtype:
            if not np.issubdtype(feats.dtype, np.floating):
                raise StoreError(f"{uid}: {feats.dtype} features for a {self.encoding} store; pass floats or {self.dtype}")  # fmt: skip
            feats = encode(feats, self.scales, self.encoding)
        T = int(feats.shape[0])
        self.ids.append(uid)
        self.offsets.append(self._frames_done)
        self.lengths.append(T)
        self._frames_done += T
        pos = 0
        while pos < T:
            take = min(T - pos, self.C - self._fill)
            self._buf[self._fill : self._fill + take] = feats[pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == self.C:
                self._write_chunk()
                self._chunk += 1
                self._fill = 0

    def fail(self, uid: str, reason: str) -> None:
        """Record an utterance that could not be extracted (kept in the part's `failed` attribute)."""
        self._pending_failed.append({"id": uid, "reason": reason})

    def _write_chunk(self) -> None:
        k, C = self._chunk, self.C
        if self._fill < C:
            self._buf[self._fill :] = 0  # deterministic padding of the tail chunk
        if self._direct:  # the same bytes zarr writes: raw C-order little-endian, atomic rename
            path = self._fdir / f"c.{k}.0.0"
            tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
            with open(tmp, "wb") as f:
                f.write(memoryview(self._buf).cast("B"))
            os.replace(tmp, path)
        else:
            if self.frames.shape[0] < (k + 1) * C:
                self.frames.resize(((k + 1) * C, self.L, self.D))
            self.frames[k * C : (k + 1) * C] = self._buf
        if (
            self.local
        ):  # durable in the background, overlapping the next chunks (waited on in commit)
            key = self.frames.metadata.encode_chunk_key((k, 0, 0))
            self._syncs.append(self._pool.submit(_fsync, self._fdir / key))

    def _rewrite_index(self, start: int) -> None:
        """Write index entries [k0, k) from the start of k0's chunk: zarr then writes whole chunks."""
        k = self._committed_k
        g = self.group
        chunk = int(g["ids"].chunks[0])  # stores written before INDEX_CHUNK changed keep theirs
        start = start // chunk * chunk
        for a, vals, dt in (("ids", self.ids, object), ("offsets", self.offsets, np.int64), ("lengths", self.lengths, np.int64)):  # fmt: skip
            g[a].resize((k,))
            if k > start:
                g[a][start:k] = np.asarray(vals[start:k], dtype=dt)

    def commit(self) -> None:
        """Make everything appended so far durable: frames first, then the index, then `committed`."""
        k0, k = self._committed_k, len(self.ids)
        if k == k0 and not self._pending_failed:
            return
        if self._fill:
            self._write_chunk()
        if self.local:
            for f in self._syncs:
                f.result()
            _fsync(self._fdir)
        self._syncs.clear()
        cap = -(-self._frames_done // self.C) * self.C
        if self.frames.shape[0] < cap:
            self.frames.resize((cap, self.L, self.D))
        self._committed_k = k
        self._rewrite_index(k0)
        if self.local:
            gdir = _local(self.path) / self.group.path
            files = [f for a in ("ids", "offsets", "lengths") for f in (gdir / a).rglob("*")]
            list(self._pool.map(_fsync, files))
        self.failed.extend(self._pending_failed)
        self._pending_failed = []
        self.group.attrs.update({"committed": {"utterances": k, "frames": self._frames_done}, "failed": self.failed})  # fmt: skip
        if self.local:
            _fsync(_local(self.path) / self.group.path / "zarr.json")

    def close(self, complete: bool = True) -> None:
        """Commit; with `complete`, trim `frames` to its exact length and mark the part complete."""
        try:
            self.commit()
            if complete:
                self.frames.resize((self._frames_done, self.L, self.D))
                self.group.attrs.update({"complete": True})
                self.complete = True
        finally:
            self._release()

    def _release(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._lock is not None:
            self._lock.unlink(missing_ok=True)
            self._lock = None

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, et, ev, tb) -> None:
        if et is None:
            self.close()
        else:
            self._release()  # leave what was committed; a rerun resumes from there


def _put_scales(root, scales: np.ndarray, path: str) -> None:
    """Write the root array `scales` once; refuse a store that holds different ones."""
    if "scales" in root:
        have = np.asarray(root["scales"][...])
        if have.shape == scales.shape and not have.any():  # created, not yet filled: finish it
            root["scales"][...] = scales
            return
        if have.shape != scales.shape or not np.array_equal(have, scales):
            raise StoreError(
                f"{path} holds other int8/fp8 scales than this run computed (another calibration "
                "sample, or another upstream build); rebuild it with --force"
            )
        return
    try:
        a = root.create_array("scales", shape=scales.shape, dtype="float32", compressors=None, fill_value=0)  # fmt: skip
    except Exception:  # another shard created it at the same moment: compare with its values
        return _put_scales(zarr.open_group(path, mode="r+"), scales, path)
    a[...] = scales
    if _is_local(path):
        for f in (_local(path) / "scales").rglob("*"):
            _fsync(f)


def __getattr__(name: str):
    """`open_store` and `StoreReader` live in pipeline/store_reader.py; `pipeline.store` is the one import."""
    if name in ("StoreReader", "open_store"):
        from pipeline import store_reader

        return getattr(store_reader, name)
    raise AttributeError(f"module 'pipeline.store' has no attribute {name!r}")
