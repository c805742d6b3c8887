"""Store layout benchmark: write speed, random utterance reads and bytes, against a plain np.memmap.

    python bench/bench_store.py [--total-mb 400] [--layers 13 --dim 768] [--dir /tmp]

Writes the same synthetic utterances (2-15 s at 50 Hz, fp16) as (a) one raw file (numpy tofile +
fsync, read back with np.memmap: the speed limit) and (b) feature stores with several chunk
sizes, uncompressed and zstd. Reads 200 random utterances (warm page cache) and copies each into
a fresh array, as a loader building a batch does. Prints times and ratios against the raw file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.store import StoreWriter, chunk_frames_for, open_store


def fingerprint(L: int, D: int) -> dict:
    return {
        "upstream": "bench", "source": "synthetic", "weights_hash": "-", "whisper_mode": None,
        "num_layers": L, "dim": D, "frame_rate": 50.0, "dtype": "float16",
        "manifest_hash": "-", "code_version": "1",
    }  # fmt: skip


def dir_bytes(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total-mb", type=float, default=400)
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--reads", type=int, default=200)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--chunk-mb", default="1,8,32", help="chunk targets to try (MiB)")
    ap.add_argument("--repeats", type=int, default=3, help="best of N interleaved runs")
    a = ap.parse_args()
    L, D = a.layers, a.dim
    fb = L * D * 2
    rng = np.random.default_rng(0)
    lengths = []
    while sum(lengths) * fb < a.total_mb * 2**20:
        lengths.append(int(rng.integers(100, 750)))
    # one pool of random values, sliced per utterance (generating 400 MB of randoms is slow)
    pool = rng.standard_normal((max(lengths) + 4096, L, D)).astype(np.float16)
    utts = [(f"u{i:06d}", pool[(i * 37) % 4096 :][:n]) for i, n in enumerate(lengths)]
    total = sum(lengths) * fb
    picks = rng.choice(len(utts), size=min(a.reads, len(utts)), replace=False)
    print(f"{len(utts)} utterances, {sum(lengths)} frames of {L}x{D} fp16 = {total / 1e6:.0f} MB")

    root = Path(tempfile.mkdtemp(prefix="bench_store_", dir=a.dir))
    offs = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    variants = [("np.memmap raw file", None, None, ("memmap",))]
    for mb in [float(x) for x in a.chunk_mb.split(",")]:
        C = chunk_frames_for(fb, int(mb * 2**20))
        variants.append((f"store C={C} ({mb:g} MiB) raw", C, None, ("mmap", "zarr")))
    C8 = chunk_frames_for(fb, 8 << 20)
    variants.append((f"store C={C8} (8 MiB) zstd", C8, "zstd", ("zarr",)))
    best: dict[str, list[float]] = {}  # name -> [write s, read s, bytes]; min over repeats
    try:
        for _ in range(a.repeats):  # interleaved repeats: a shared disk is noisy
            for name, C, comp, modes in variants:
                if C is None:  # the limit: one raw file, numpy tofile + fsync; np.memmap reads
                    path = root / "raw.f16"
                    t = time.perf_counter()
                    with open(path, "wb") as f:
                        for _, x in utts:
                            x.tofile(f)
                        f.flush()
                        os.fsync(f.fileno())
                    wt = time.perf_counter() - t
                    mm = np.memmap(path, dtype=np.float16, mode="r").reshape(-1, L, D)
                    readers = {"memmap": lambda i, mm=mm: mm[offs[i] : offs[i] + lengths[i]]}
                else:
                    path = root / "s.zarr"
                    t = time.perf_counter()
                    with StoreWriter(path, fingerprint(L, D), compressor=comp, chunk_frames=C) as w:
                        for uid, x in utts:
                            w.append(uid, x)
                            if len(w.ids) % 50 == 0:  # commit as extraction does, every few s
                                w.commit()
                    wt = time.perf_counter() - t
                    readers = {m: open_store(path, mode=m).__getitem__ for m in modes}
                nb = dir_bytes(path)
                for mode, get in readers.items():
                    np.array(get(utts[0][0] if C else 0))  # warm-up outside the timing
                    t = time.perf_counter()
                    for i in picks:
                        np.array(get(utts[i][0] if C else i))  # copy out, as a batch does
                    rt = time.perf_counter() - t
                    key = f"{name} read={mode}"
                    old = best.get(key, [np.inf, np.inf, nb])
                    best[key] = [min(old[0], wt), min(old[1], rt), nb]
                del readers
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = [(k, *v) for k, v in best.items()]
    w_raw, r_raw = rows[0][1], rows[0][2]

    print(f"\n{'layout':48s} {'write s':>8s} {'÷raw':>6s} {'read s':>8s} {'÷memmap':>8s} {'bytes÷raw':>9s}")  # fmt: skip
    for name, wt, rt, nb in rows:
        print(f"{name:48s} {wt:8.3f} {wt / w_raw:6.2f} {rt:8.3f} {rt / r_raw:8.2f} {nb / total:9.3f}")  # fmt: skip
    print(f"\nraw write {total / w_raw / 1e6:.0f} MB/s; best of {a.repeats} interleaved runs; {len(picks)} random reads (copied out), warm page cache")  # fmt: skip


if __name__ == "__main__":
    main()
