"""Speed of `pipeline cache verify` (crc32 of every chunk) and `--full` (plus the NaN/inf scan).

    python bench/bench_verify.py [--mb 400] [--repeats 3] [--work DIR]

Writes a store of about --mb MB (13 x 768 fp16, 2-15 s utterances of random values, 8 MiB
chunks), then times verify_store on it (best of --repeats; the store is in the page cache
after the first pass, so the figures are the CPU side: crc32 and the value scan).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.store import StoreWriter, chunk_frames_for, verify_store  # noqa: E402
from pipeline.store.verify import store_bytes  # noqa: E402

L, D = 13, 768


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()
    path = (a.work or Path(tempfile.mkdtemp(prefix="bench_verify_"))) / "s.zarr"
    fp = {"upstream": "bench", "source": "bench", "weights_hash": "0", "whisper_mode": None,
          "num_layers": L, "dim": D, "frame_rate": 50.0, "dtype": "float16", "manifest_hash": "0",
          "code_version": "1"}  # fmt: skip
    rng = np.random.default_rng(0)
    if not path.exists():
        with StoreWriter(path, fp, chunk_frames=chunk_frames_for(L * D * 2)) as w:
            written, i = 0, 0
            while written < a.mb << 20:
                x = rng.standard_normal((int(rng.integers(100, 750)), L, D)).astype(np.float16)
                w.append(f"u{i:05d}", x)
                written, i = written + x.nbytes, i + 1
    gb = store_bytes(path) / 1e9
    for full in (False, True):
        best = float("inf")
        for _ in range(a.repeats):
            t = time.perf_counter()
            assert verify_store(str(path), full=full) == []
            best = min(best, time.perf_counter() - t)
        print(
            f"verify{' --full' if full else ''}: {gb:.3f} GB in {best:.3f} s = {gb / best:.2f} GB/s"
        )


if __name__ == "__main__":
    main()
