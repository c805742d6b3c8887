"""Writing a feature store: `StoreWriter` appends utterances to one part and commits them.

Creation (local stores): take the part's lock (pipeline/store/lock.py), then, under the
store's metadata lock, check the root metadata or write it in one atomic file write; then
build the part's skeleton (group, frames, ids, offsets, lengths) in a temporary folder and
rename it into place. A part that is missing, half-built or lacks its metadata is rebuilt
empty, so a kill at any moment of creation leaves a store the same command finishes.

Commit protocol: frame chunks are written whole (temp file + rename) and fsynced first, then
the index arrays, and last the part attributes `committed` and `checksums` (crc32 of every
frame chunk and of each committed index array) in one atomic write. A restart trusts only
`committed`: it truncates everything past it, checks the committed tail chunk and index against
their checksums, and continues; the finished bytes equal an uninterrupted run's because every
chunk is always written whole (zero-padded at the end).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr

from pipeline.encoding import encode, is_8bit, stored_dtype
from pipeline.store.checksum import ALGORITHM, index_checksums, padded_chunk
from pipeline.store.create import (
    INDEX_ARRAYS,
    WRITE_CFG,
    build_part,
    init_root,
    part_ok,
)
from pipeline.store.errors import StoreCorrupt, StoreError, StoreFull, StoreLocked
from pipeline.store.faults import step as fault
from pipeline.store.lock import FileLock
from pipeline.store.meta import (
    _is_local,
    _local,
    check_adoptable,
    fsync_path,
    normalize_fingerprint,
    part_name,
)

_FULL = (errno.ENOSPC, errno.EDQUOT)
log = logging.getLogger("pipeline.store")


def _disk_full(e: BaseException) -> bool:
    while e is not None:
        if isinstance(e, OSError) and e.errno in _FULL:
            return True
        e = e.__cause__ or e.__context__
    return False


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
    Raises StoreLocked when another process writes the same part, StoreFull on a full disk.
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
        if compressor not in (None, "zstd"):
            raise StoreError(f"unknown compressor {compressor!r}", "use none or zstd")
        fingerprint = normalize_fingerprint(fingerprint)
        self.path, self.fingerprint, self.shard = str(path), fingerprint, (i, n)
        self.name = part_name(i, n)
        self.local = _is_local(path)
        self.L, self.D = L, D = int(fingerprint["num_layers"]), int(fingerprint["dim"])
        self.encoding = fingerprint["encoding"]
        self.dtype = stored_dtype(self.encoding)
        self.scales = None
        if is_8bit(self.encoding):
            if scales is None or np.shape(scales) != (L, D):
                raise StoreError(f"{path}: a {self.encoding} store needs scales of shape ({L}, {D}), got {None if scales is None else np.shape(scales)}")  # fmt: skip
            self.scales = np.ascontiguousarray(scales, dtype=np.float32)
        self._lock: FileLock | None = None
        self._pool: ThreadPoolExecutor | None = None
        if self.local:
            check_adoptable(path)
            self._lock = FileLock(_local(path) / f"{self.name}.lock")
            if not self._lock.acquire():
                who = self._lock.owner()
                self._lock = None
                raise StoreLocked(
                    f"{path}: part {self.name} is being written by {who}",
                    "wait for it to finish or stop it (the lock ends with its process: a dead "
                    "writer's lock is taken over by the next run)",
                )
        try:
            fault("part_locked")
            with self._disk_errors():
                root = init_root(self.path, self.fingerprint, n, self.scales)
                self._open_part(root, compressor, chunk_frames)
        except BaseException:
            self._release()
            raise

    # -- creation and recovery
    def _open_part(self, root: zarr.Group, compressor: str | None, chunk_frames: int | None) -> None:  # fmt: skip
        name, L, D = self.name, self.L, self.D
        if not part_ok(root, name):
            if self.local and (_local(self.path) / name).exists():
                log.warning("%s: part %s lacks its metadata or an array (killed while it was created, or a file was deleted); rebuilding it", self.path, name)  # fmt: skip
            build_part(self.path, root, self.shard, L, D, self.dtype, compressor, chunk_frames)
        self.group = g = zarr.open_group(self.path, mode="r+")[name]
        if self.local:  # leftovers of a killed zarr write
            for tmp in _local(self.path).joinpath(name).rglob("*.partial"):
                tmp.unlink()
        self.frames = zarr.open_array(store=g.store, path=f"{g.path}/frames", mode="r+", config=WRITE_CFG)  # fmt: skip
        if self.frames.dtype != self.dtype:
            raise StoreError(f"{self.path}/{name}: frames are {self.frames.dtype}, encoding {self.encoding} stores {self.dtype}", "rebuild with --force")  # fmt: skip
        self.C = int(self.frames.chunks[0])
        com = g.attrs["committed"]
        k, F = int(com["utterances"]), int(com["frames"])
        self.ids = [str(x) for x in g["ids"][:k]] if k else []
        self.offsets = [int(x) for x in g["offsets"][:k]] if k else []
        self.lengths = [int(x) for x in g["lengths"][:k]] if k else []
        sums = dict(g.attrs.get("checksums") or {})
        nchunks = -(-F // self.C)
        self._crcs: list[int] = [int(c) for c in sums.get("frames", [])][:nchunks]
        self._checked = bool(sums) and len(self._crcs) == nchunks  # written with checksums
        if not self._checked:  # a part written before checksums: take them from the disk once
            self._crcs = [zlib.crc32(padded_chunk(self.frames, c)) for c in range(nchunks)]
        if self._checked and any(sums[a] != v for a, v in index_checksums(self.ids, self.offsets, self.lengths).items()):  # fmt: skip
            raise StoreCorrupt(f"{self.path}/{name}: the committed index disagrees with its checksum", "run `pipeline cache verify` on it; rebuild this part with --force")  # fmt: skip
        self.failed = list(g.attrs.get("failed", []))
        if g.attrs.get("complete", False):
            g.update_attributes({"complete": False})  # set again by close()
        self.complete = False
        # truncate everything past the commit, and reload the committed head of the tail chunk
        self._committed_k, self._frames_done = k, F
        for a in INDEX_ARRAYS:
            g[a].resize((k,))
        self._rewrite_index(max(k - 1, 0))
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
        self._buf = np.zeros((self.C, L, D), self.dtype)  # the chunk being filled
        self._chunk = F // self.C
        self._fill = F - self._chunk * self.C
        if self._fill:
            tail = self.frames[self._chunk * self.C : (self._chunk + 1) * self.C]
            self._buf[: self._fill] = tail[: self._fill]  # rows past it: uncommitted, or padding
            if self._checked and zlib.crc32(self._buf) != self._crcs[self._chunk]:
                raise StoreCorrupt(f"{self.path}/{name}: frame chunk {self._chunk} disagrees with its checksum", "run `pipeline cache verify` on the store; rebuild this part with --force")  # fmt: skip
        self._syncs: list = []  # fsync futures of chunks written since the last commit
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fsync")
        self._pending_failed: list[dict] = []

    @contextlib.contextmanager
    def _disk_errors(self):
        """A full disk becomes one StoreFull naming the store; nothing committed is touched."""
        try:
            yield
        except StoreError:
            raise
        except Exception as e:
            if not _disk_full(e):
                raise
            k = getattr(self, "_committed_k", 0)
            raise StoreFull(
                f"{self.path}: the disk is full (writing part {self.name}); the {k} utterance(s) committed before are intact",  # fmt: skip
                "free some space and rerun the same command: it resumes from the last commit",
            ) from None

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
        with self._disk_errors():
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
        crc = zlib.crc32(self._buf)
        self._crcs[k:] = [crc]
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
        fault("chunk_written")
        if (
            self.local
        ):  # durable in the background, overlapping the next chunks (waited on in commit)
            key = self.frames.metadata.encode_chunk_key((k, 0, 0))
            self._syncs.append(self._pool.submit(fsync_path, self._fdir / key))

    def _rewrite_index(self, start: int) -> None:
        """Write index entries [k0, k) from the start of k0's chunk: zarr then writes whole chunks."""
        k = self._committed_k
        g = self.group
        chunk = int(g["ids"].chunks[0])  # stores written before INDEX_CHUNK changed keep theirs
        start = start // chunk * chunk
        for a in INDEX_ARRAYS:
            g[a].resize((k,))
        fault("index_resized")
        for a, vals, dt in (("ids", self.ids, object), ("offsets", self.offsets, np.int64), ("lengths", self.lengths, np.int64)):  # fmt: skip
            if k > start:
                g[a][start:k] = np.asarray(vals[start:k], dtype=dt)

    def commit(self) -> None:
        """Make everything appended so far durable: frames first, then the index, then
        `committed` with the checksums, in one write."""
        k0, k = self._committed_k, len(self.ids)
        if k == k0 and not self._pending_failed:
            return
        with self._disk_errors():
            if self._fill:
                self._write_chunk()
            if self.local:
                for f in self._syncs:
                    f.result()
                fsync_path(self._fdir)
            self._syncs.clear()
            fault("chunks_synced")
            cap = -(-self._frames_done // self.C) * self.C
            if self.frames.shape[0] < cap:
                self.frames.resize((cap, self.L, self.D))
            self._committed_k = k
            self._rewrite_index(k0)
            if self.local:
                gdir = _local(self.path) / self.group.path
                files = [f for a in INDEX_ARRAYS for f in (gdir / a).rglob("*")]
                list(self._pool.map(fsync_path, files))
            fault("index_written")
            failed = self.failed + self._pending_failed
            nchunks = -(-self._frames_done // self.C)
            sums = {"algorithm": ALGORITHM, "frames": self._crcs[:nchunks], **index_checksums(self.ids, self.offsets, self.lengths)}  # fmt: skip
            self.group.update_attributes({"committed": {"utterances": k, "frames": self._frames_done}, "failed": failed, "checksums": sums})  # fmt: skip
            self.failed, self._pending_failed = failed, []
            self._checked = True
            if self.local:
                fsync_path(_local(self.path) / self.group.path / "zarr.json")
            fault("committed")

    def close(self, complete: bool = True) -> None:
        """Commit; with `complete`, trim `frames` to its exact length and mark the part complete."""
        try:
            self.commit()
            if complete:
                with self._disk_errors():
                    self.frames.resize((self._frames_done, self.L, self.D))
                    fault("trimmed")
                    self.group.update_attributes({"complete": True})
                    fault("completed")
                self.complete = True
        finally:
            self._release()

    def _release(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, et, ev, tb) -> None:
        if et is None:
            self.close()
        else:
            self._release()  # leave what was committed; a rerun resumes from there
