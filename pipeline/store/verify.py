"""`verify_store`: check a whole store against what its commits recorded.

Structure (index, lengths, fingerprint, every shard complete), then every frame chunk and
index array of every part against the crc32 its commit recorded; `full` also scans every
committed value for NaN/inf. Each problem names the part, the chunk file, the utterances
affected and what to do.
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pipeline.store.checksum import index_checksums, padded_chunk
from pipeline.store.errors import StoreError
from pipeline.store.lock import is_held
from pipeline.store.meta import FINGERPRINT_FIELDS, _is_local, _local
from pipeline.store.reader import StoreReader, _Part, open_store

_SHOWN = 8  # utterance ids named per damaged chunk
_NONE = np.zeros(0, np.int64)


def verify_store(path: str, full: bool = False, workers: int = 4) -> list[str]:
    """Problems found in a store (empty when it is sound)."""
    try:
        r = open_store(path, mode="zarr")
    except (StoreError, KeyError, ValueError, OSError) as e:
        return [f"cannot open: {e}"]
    probs = _structure(r)
    for i, p in enumerate(r.parts):
        probs += _part_data(r, i, p, full, workers)
    if _is_local(path):
        probs += [f"lock {lk.name} is held: a writer is running on this store" for lk in _local(path).glob("*.lock") if is_held(lk)]  # fmt: skip
    return probs


def _structure(r: StoreReader) -> list[str]:
    probs = [f"fingerprint lacks field {k!r}" for k in FINGERPRINT_FIELDS if k not in r.fingerprint]
    if len(r.layers) != r.num_layers or r.layers != sorted(set(r.layers)):
        probs.append(f"fingerprint lists layers {r.layers} for num_layers {r.num_layers}")
    if r.fingerprint.get("dtype") != str(r.stored_dtype):
        probs.append(f"fingerprint dtype {r.fingerprint.get('dtype')!r} does not match encoding {r.encoding} ({r.stored_dtype})")  # fmt: skip
    if r.scales is not None:
        if r.scales.shape != (r.num_layers, r.dim):
            probs.append(f"scales have shape {r.scales.shape}, expected ({r.num_layers}, {r.dim})")
        elif not (np.isfinite(r.scales).all() and (r.scales > 0).all()):
            probs.append("scales hold zero, negative or non-finite values: rebuild with --force")
    probs += [f"part {n} is missing (its shard never ran, or its metadata was deleted): run that shard (--shard i/n); it builds the part" for n in r.missing_parts]  # fmt: skip
    for p in r.parts:
        k, where = len(p.ids), f"part {p.name}"
        if not p.attrs.get("complete"):
            probs.append(f"{where} is not complete ({k} utterances committed): rerun the same `pipeline extract` command to finish it")  # fmt: skip
        if (p.L, p.D) != (r.num_layers, r.dim) or p.zarr.dtype != r.stored_dtype:
            probs.append(f"{where}: frames are {p.zarr.dtype} (.., {p.L}, {p.D}), fingerprint says {r.stored_dtype} (.., {r.num_layers}, {r.dim})")  # fmt: skip
        if k and (p.offsets[0] != 0 or np.any(p.offsets[1:] != np.cumsum(p.lengths)[:-1])):
            probs.append(f"{where}: offsets are not the running sum of lengths")
        if np.any(p.lengths <= 0):
            probs.append(f"{where}: {int(np.sum(p.lengths <= 0))} utterance(s) of length 0")
        if int(p.lengths.sum()) != p.F:
            probs.append(f"{where}: lengths sum to {int(p.lengths.sum())} frames, committed {p.F}")
        if p.attrs.get("complete") and p.index_len != k:
            probs.append(f"{where}: index arrays hold {p.index_len} entries, {k} committed")
        if p.attrs.get("complete") and p.zarr.shape[0] != p.F:
            probs.append(f"{where}: frames array holds {p.zarr.shape[0]} frames, index says {p.F}")
    return probs


def _affected(p: _Part, c: int) -> list[str]:
    """Ids of the utterances with frames in chunk c."""
    lo, hi = c * p.C, (c + 1) * p.C
    ends = p.offsets + p.lengths
    return [p.ids[j] for j in np.nonzero((p.offsets < hi) & (ends > lo))[0]]


def _nonfinite(x: np.ndarray, encoding: str) -> np.ndarray:
    """Row indices of (rows, L, D) stored values that hold NaN/inf (by their bits)."""
    if encoding == "int8":
        return _NONE
    # magnitude bits at or above the first NaN/inf code: fp8 e4m3fn 0x7f (NaN, no infinities),
    # float16 0x7c00 (exponent bits all ones)
    u, mask, top = (x.view(np.uint8), 0x7F, 0x7F) if encoding == "fp8" else (x.view(np.uint16), 0x7FFF, 0x7C00)  # fmt: skip
    mag = np.bitwise_and(u, mask, out=np.empty(u.shape, u.dtype))
    if not len(mag) or mag.max() < top:  # the common case: one pass, no per-row work
        return _NONE
    return np.nonzero((mag >= top).reshape(len(x), -1).any(axis=1))[0]


def _part_data(r: StoreReader, i: int, p: _Part, full: bool, workers: int) -> list[str]:
    where = f"part {p.name}"
    sums = p.attrs.get("checksums")
    rebuild = f"rebuild it: rerun the `pipeline extract` command with --force{f' --shard {i}/{r.num_parts}' if r.num_parts > 1 else ''}"  # fmt: skip
    want: list[int] | None = None
    probs = []
    if not sums:
        if p.F:
            probs.append(f"{where} has no checksums (written by an older pipeline): its chunks cannot be checked; {rebuild} to add them")  # fmt: skip
    else:
        for a, crc in index_checksums(p.ids, p.offsets, p.lengths).items():
            if sums.get(a) != crc:
                probs.append(f"{where}: index array `{a}` disagrees with its checksum (its committed entries were altered); {rebuild}")  # fmt: skip
        want = [int(c) for c in sums.get("frames", [])]
        if len(want) != p.nchunks:
            return probs + [f"{where}: {len(want)} chunk checksums recorded for {p.nchunks} committed chunks; {rebuild}"]  # fmt: skip
    if want is None and not full:
        return probs
    size = p.C * p.L * p.D * np.dtype(r.stored_dtype).itemsize
    raw = p.dir is not None and [c.to_dict()["name"] for c in p.zarr.metadata.codecs] == ["bytes"]

    def check(c: int) -> tuple[str | None, np.ndarray]:
        """(what is wrong with chunk c or None, frames of c holding NaN/inf when `full`)."""
        if raw:
            f = p.chunk_file(c)
            try:
                data = f.read_bytes()
            except FileNotFoundError:
                return "missing", _NONE
            if len(data) != size:
                return f"{len(data)} bytes, expected {size}", _NONE
            x = np.frombuffer(data, r.stored_dtype).reshape(p.C, p.L, p.D)
        else:
            try:
                x = padded_chunk(p.zarr, c)
            except Exception as e:
                return f"unreadable: {type(e).__name__}: {e}", _NONE
        n = min(p.C, p.F - c * p.C)
        if n < p.C and x[n:].any():  # an unfinished part's tail: rows past the commit are garbage
            x = x.copy()
            x[n:] = 0
        if want is not None and zlib.crc32(x) != want[c]:
            return "its bytes disagree with the checksum recorded at commit", _NONE
        if not full:
            return None, _NONE
        return None, c * p.C + _nonfinite(x[:n], r.encoding)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(check, range(p.nchunks)))
    for c, (what, _) in enumerate(results):
        if what is None:
            continue
        name = p.chunk_file(c) if p.dir is not None else f"{p.name}/frames chunk {c}"
        kind = "frame chunk file" if what == "missing" else "frame chunk"
        probs.append(f"{where}: {kind} {name} is damaged ({what}); utterance(s) affected: {_ids(_affected(p, c))}; {rebuild}")  # fmt: skip
    bad = np.concatenate([np.zeros(0, np.int64), *(rows for _, rows in results)])
    if len(bad):
        hit = [p.ids[x] for x in np.unique(np.searchsorted(p.offsets, bad, side="right") - 1)]
        probs.append(f"{where}: NaN/inf values in {len(hit)} utterance(s): {_ids(hit)}; they were stored so (their checksums match): re-extract them, or drop them from the manifest")  # fmt: skip
    return probs


def _ids(ids: list[str]) -> str:
    more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
    return (", ".join(ids[:_SHOWN]) + more) or "none"


def store_bytes(path: str | Path) -> int:
    """Bytes of every file under a local store."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
