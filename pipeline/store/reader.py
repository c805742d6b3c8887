"""Reading feature stores: `open_store(path)[id] -> (T, L, D)` float16, zero-copy when local.

For a local uncompressed store the chunk files of each part (raw C-order bytes) are mapped side
by side into one contiguous range of virtual memory, so every utterance is a numpy view, even
one that spans chunks; compressed or remote stores are read through zarr. Format: cache/README.md.

8-bit stores (fingerprint `encoding` int8 or fp8): `reader.raw(id)` is the stored (T, L, D)
int8 / uint8 view (what the loader ships to the device), `reader.decode(raw)` turns stored
values into floats with the store's `scales` (L, D), and `reader[id]` is `decode(raw(id))` as
float16, so code written for fp16 stores reads them unchanged.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import zarr

from pipeline.encoding import decode, is_8bit, stored_dtype
from pipeline.store.checksum import padded_chunk
from pipeline.store.errors import StoreCorrupt, StoreError
from pipeline.store.h5 import H5StoreReader, is_h5_path, open_h5_store
from pipeline.store.meta import (
    FORMAT,
    FORMAT_VERSION,
    _is_local,
    _local,
    normalize_fingerprint,
    part_name,
    store_exists,
)

_PAGE = mmap.ALLOCATIONGRANULARITY
_MAP_FIXED = 0x10  # same value on Linux and macOS


def _libc():
    if sys.platform not in ("linux", "darwin"):
        return None
    lib = ctypes.CDLL(None, use_errno=True)
    lib.mmap.restype = ctypes.c_void_p
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int64]  # fmt: skip
    lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return lib


_LIBC = _libc()


def _stitch(files: list[Path | None], chunk_bytes: int) -> np.ndarray:
    """Map equally sized chunk files side by side into one contiguous read-only-by-default region.

    Returns a uint8 array of len(files) * chunk_bytes bytes that owns the mapping (unmapped when
    the last view of it is garbage-collected). Pages are copy-on-write: writing to a view never
    reaches the files. A missing file (None) reads as zeros.
    """
    lib, total = _LIBC, len(files) * chunk_bytes
    prot = mmap.PROT_READ | mmap.PROT_WRITE
    base = lib.mmap(None, total, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if base in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap reserve failed")
    try:
        for k, f in enumerate(files):
            addr = base + k * chunk_bytes
            if f is not None:
                fd = os.open(f, os.O_RDONLY)
                try:
                    got = lib.mmap(addr, chunk_bytes, prot, mmap.MAP_PRIVATE | _MAP_FIXED, fd, 0)
                finally:
                    os.close(fd)
            else:
                got = lib.mmap(addr, chunk_bytes, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_FIXED, -1, 0)  # fmt: skip
            if got != addr:
                raise OSError(ctypes.get_errno(), f"mmap of {f} failed")
    except BaseException:
        lib.munmap(base, total)
        raise

    class _Mapped(ctypes.c_char * total):
        def __del__(self) -> None:
            lib.munmap(base, total)

    owner = _Mapped.from_address(base)
    arr = np.frombuffer(owner, dtype=np.uint8)
    arr.flags.writeable = False
    return arr


VERIFY_READS_ENV = "PIPELINE_VERIFY_READS"


def verify_reads_requested() -> bool:
    """PIPELINE_VERIFY_READS set to a true value (`pipeline --verify-reads` sets it)."""
    return os.environ.get(VERIFY_READS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class _Part:
    """One part's committed index and a way to read its frames."""

    def __init__(self, root_path: str, group, mode: str, dtype: np.dtype) -> None:
        com = group.attrs.get("committed", {"utterances": 0, "frames": 0})
        k, self.F = int(com["utterances"]), int(com["frames"])
        self.name, self.attrs = group.basename, dict(group.attrs)
        self.index_len = int(group["ids"].shape[0])  # == k once the part is complete
        self.ids = [str(x) for x in group["ids"][:k]] if k else []
        self.offsets = np.asarray(group["offsets"][:k], dtype=np.int64) if k else np.zeros(0, np.int64)  # fmt: skip
        self.lengths = np.asarray(group["lengths"][:k], dtype=np.int64) if k else np.zeros(0, np.int64)  # fmt: skip
        self.zarr = group["frames"]
        self.C, self.L, self.D = int(self.zarr.chunks[0]), int(self.zarr.shape[1]), int(self.zarr.shape[2])  # fmt: skip
        self.nchunks = -(-self.F // self.C)
        self.dir = _local(root_path) / group.path / "frames" if _is_local(root_path) else None
        self.flat: np.ndarray | None = None  # (F_mapped, L, D) view when memory-mapped
        self.mode = "zarr"
        codecs = [c.to_dict()["name"] for c in self.zarr.metadata.codecs]
        chunk_bytes = self.C * self.L * self.D * dtype.itemsize
        nchunks = self.nchunks
        self.bad: dict[int, str] = {}  # committed chunk -> what is wrong with its file
        self.verify_reads = verify_reads_requested()
        self.verified: set[int] = set()  # chunks whose crc32 this process checked
        if (mode in ("auto", "mmap") and _is_local(root_path) and codecs == ["bytes"]
                and self.zarr.dtype == dtype and _LIBC is not None
                and chunk_bytes % _PAGE == 0 and 0 < nchunks < 30000):  # fmt: skip
            files: list[Path | None] = []
            for c in range(nchunks):
                f = self.chunk_file(c)
                size = f.stat().st_size if f.is_file() else None
                if size != chunk_bytes:  # mapped as zeros, refused on read
                    self.bad[c] = (
                        "missing" if size is None else f"{size} bytes, expected {chunk_bytes}"
                    )
                files.append(None if size != chunk_bytes else f)
            raw = _stitch(files, chunk_bytes)
            self.flat = raw.view(dtype).reshape(nchunks * self.C, self.L, self.D)
            self.mode = "mmap"
        if mode == "mmap" and self.mode != "mmap" and self.F:
            raise StoreError(f"{root_path}/{self.name}: cannot be memory-mapped (remote, compressed, or chunks not a multiple of the page size)")  # fmt: skip
        self.root_path = root_path

    def chunk_file(self, c: int) -> Path:
        """Local file of frame chunk c."""
        return self.dir / self.zarr.metadata.encode_chunk_key((c, 0, 0))

    def read(self, offset: int, length: int) -> np.ndarray:
        """(length, L, D) stored values from frame `offset`; StoreCorrupt for a damaged chunk.

        With PIPELINE_VERIFY_READS=1 (`pipeline --verify-reads ...`) each chunk a read touches
        is first checked against the crc32 its commit recorded, once per chunk and process.
        """
        first, last = offset // self.C, (offset + max(length, 1) - 1) // self.C
        bad = [c for c in range(first, last + 1) if c in self.bad]
        if bad:
            raise self._corrupt(bad[0], self.bad[bad[0]])
        if self.verify_reads:
            for c in range(first, last + 1):
                if c not in self.verified:
                    self._verify_chunk(c)
        if self.flat is not None:
            return self.flat[offset : offset + length]
        try:
            return self.zarr[offset : offset + length]
        except Exception as e:  # a truncated or garbled chunk: zarr cannot decode it
            raise self._corrupt(first if first == last else f"{first}-{last}", f"{type(e).__name__}: {e}") from None  # fmt: skip

    def _verify_chunk(self, c: int) -> None:
        """Check frame chunk c (zero-padded past the commit) against its recorded crc32."""
        sums = [int(x) for x in (self.attrs.get("checksums") or {}).get("frames", [])]
        if c >= len(sums):
            raise self._corrupt(c, "no checksum recorded for it (written by an older pipeline?)")
        try:
            x = padded_chunk(self.zarr, c)
        except Exception as e:
            raise self._corrupt(c, f"{type(e).__name__}: {e}") from None
        n = min(self.C, self.F - c * self.C)
        if n < self.C and x[n:].any():  # rows past the commit are not covered by the checksum
            x = x.copy()
            x[n:] = 0
        if zlib.crc32(x) != sums[c]:
            raise self._corrupt(c, "its bytes disagree with the checksum recorded at commit")
        self.verified.add(c)

    def _corrupt(self, chunk, what: str) -> StoreCorrupt:
        where = self.chunk_file(chunk) if self.dir is not None and isinstance(chunk, int) else f"{self.name}/frames chunk {chunk}"  # fmt: skip
        return StoreCorrupt(
            f"feature store {self.root_path}: frame chunk {where} cannot be read ({what})",
            f"run `pipeline cache verify {self.root_path}` to list every damaged chunk and the utterances in it",  # fmt: skip
        )


class StoreReader:
    """Read-only access to a finished or partly written store, by utterance id.

    `reader[id] -> np.ndarray (T, L, D)` float16: a zero-copy view for local uncompressed fp16
    stores (mode "mmap"), else read through zarr; decoded from the stored bytes for 8-bit stores.
    `reader.raw(id)`: the stored values (T, L, D) (float16, int8, or uint8 fp8 bits), a view when
    memory-mapped. `encoding`, `scales` ((L, D) float32 or None), `layers` (the upstream's states
    the store holds, in order). Only committed utterances are visible.
    """

    def __init__(self, path: str | Path, mode: str = "auto") -> None:
        self.path, self._mode = str(path), mode
        if not store_exists(path):
            raise StoreError(f"no feature store at {path}; create it with `pipeline extract`")
        root = zarr.open_group(self.path, mode="r")
        attrs = dict(root.attrs)
        if attrs.get("format") != FORMAT:
            raise StoreError(f"{path} is not a feature store (attribute format != {FORMAT!r})")
        if int(attrs.get("format_version", 0)) > FORMAT_VERSION:
            raise StoreError(f"{path} has format version {attrs['format_version']}; upgrade the pipeline")  # fmt: skip
        self.attrs = attrs
        self.fingerprint: dict = normalize_fingerprint(attrs["fingerprint"])
        self.encoding: str = str(self.fingerprint["encoding"])
        self.stored_dtype = stored_dtype(self.encoding)
        self.layers: list[int] = [int(i) for i in self.fingerprint["layers"]]
        self.num_layers = int(self.fingerprint["num_layers"])
        self.dim = int(self.fingerprint["dim"])
        self.frame_rate = float(self.fingerprint["frame_rate"])
        self.num_parts = int(attrs["num_parts"])
        names = [part_name(i, self.num_parts) for i in range(self.num_parts)]
        self.scales: np.ndarray | None = None
        if is_8bit(self.encoding):
            if "scales" not in root:
                raise StoreError(f"{path}: {self.encoding} store without its `scales` array (killed before calibration finished?); rerun the same `pipeline extract` command")  # fmt: skip
            self.scales = np.asarray(root["scales"][...], dtype=np.float32)
        self.parts = []
        for n in names:
            if n in root:
                try:
                    self.parts.append(_Part(self.path, root[n], mode, self.stored_dtype))
                except KeyError as e:  # an index array (ids, offsets, lengths, frames) is gone
                    raise StoreError(
                        f"{path}: part {n} has lost its index array {e}; the store is damaged",
                        "rebuild it: rerun the `pipeline extract` command with --force",
                    ) from None
        self.missing_parts = [n for n in names if n not in root]
        self._index: dict[str, tuple[int, int, int]] = {}
        for p_i, p in enumerate(self.parts):
            if "" in p.ids:  # zarr reads a deleted index chunk as its fill value, ""
                raise StoreError(
                    f"{path}: part {p.name} has {p.ids.count('')} empty utterance id(s) in its "
                    "index: its index chunks were deleted or damaged",
                    "rebuild it: rerun the `pipeline extract` command with --force",
                )
            for uid, o, n in zip(p.ids, p.offsets.tolist(), p.lengths.tolist(), strict=True):
                if uid in self._index:
                    where = "twice in its part" if self._index[uid][0] == p_i else "in two parts"
                    raise StoreError(f"{path}: utterance {uid} appears {where}; rebuild with --force")  # fmt: skip
                self._index[uid] = (p_i, o, n)
        self.ids: list[str] = list(self._index)
        self.failed: list[dict] = [f for p in self.parts for f in p.attrs.get("failed", [])]

    @property
    def complete(self) -> bool:
        """Every part written to the end."""
        return not self.missing_parts and all(p.attrs.get("complete") for p in self.parts)

    @property
    def total_frames(self) -> int:
        return sum(p.F for p in self.parts)

    def length(self, uid: str) -> int:
        """Frames of utterance `uid`."""
        return self._loc(uid)[2]

    def _loc(self, uid: str) -> tuple[int, int, int]:
        try:
            return self._index[uid]
        except KeyError:
            raise KeyError(f"utterance {uid!r} is not in store {self.path}: the store was extracted from another manifest or the utterance failed (`pipeline cache info` lists failures); re-extract with --force from the manifest you train on") from None  # fmt: skip

    def __contains__(self, uid: object) -> bool:
        return uid in self._index

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, uid: str) -> np.ndarray:
        """(T, L, D) float16 hidden states of utterance `uid` (frames-major)."""
        if self.scales is None:
            return self.raw(uid)
        return self.decode(self.raw(uid), np.float16)

    def raw(self, uid: str) -> np.ndarray:
        """(T, L, D) stored values of `uid` in the stored dtype (zero-copy when memory-mapped)."""
        p, o, n = self._loc(uid)
        return self.parts[p].read(o, n)

    def decode(self, raw: np.ndarray, dtype=np.float32) -> np.ndarray:
        """(..., L, D) stored values -> floats of `dtype` (x = value * scales for 8-bit stores)."""
        return decode(raw, self.scales, self.encoding, dtype)

    def get_many(self, uids: Iterable[str]) -> list[np.ndarray]:
        """[(T_i, L, D)] for each id, in order."""
        return [self[u] for u in uids]

    @property
    def mode(self) -> str:
        """'mmap' when every non-empty part is memory-mapped, else 'zarr'."""
        return "mmap" if all(p.mode == "mmap" for p in self.parts if p.F) else "zarr"

    def __getstate__(self) -> dict:  # reopen in worker processes instead of pickling mappings
        return {"path": self.path, "mode": self._mode}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["mode"])


def open_store(path: str | Path, mode: str = "auto") -> StoreReader | H5StoreReader:
    """Open a store for reading. mode: "auto" (mmap where possible), "mmap" (required), "zarr".

    A `.h5` / `.hdf5` file written by `pipeline cache export` opens read-only through h5py with
    the same reading interface (docs/HDF5.md), so stage two trains from it as from a store."""
    if is_h5_path(path):
        return open_h5_store(path)
    return StoreReader(path, mode)
