"""Cost of `pipeline --verify-reads`: reading every utterance of a store with and without the
crc32 check of each chunk a read touches.

    python bench/bench_verify_reads.py [--mb 400] [--repeats 3] [--work DIR]

Writes a store of about --mb MB (13 x 768 fp16, 2-15 s utterances, 8 MiB chunks), then reads
every utterance into a float32 array (as the loader does) through a fresh reader, best of
--repeats, plain and with PIPELINE_VERIFY_READS=1, in the same run. The store is in the page
cache after the first pass, so the ratio is the CPU cost of the check. The check runs once per
chunk and process: a training epoch after the first pays nothing more.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.store import StoreWriter, chunk_frames_for, open_store  # noqa: E402
from pipeline.store.reader import VERIFY_READS_ENV  # noqa: E402
from pipeline.store.verify import store_bytes  # noqa: E402

L, D = 13, 768


def read_all(path: Path) -> float:
    """Seconds to read every utterance of a freshly opened reader as float32."""
    t = time.perf_counter()
    r = open_store(path)
    for uid in r.ids:
        np.asarray(r[uid], dtype=np.float32)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()
    path = (a.work or Path(tempfile.mkdtemp(prefix="bench_verify_reads_"))) / "s.zarr"
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
    read_all(path)  # page cache
    times = {}
    for verify in (False, True):
        os.environ.pop(VERIFY_READS_ENV, None)
        if verify:
            os.environ[VERIFY_READS_ENV] = "1"
        times[verify] = min(read_all(path) for _ in range(a.repeats))
        print(f"read all{' --verify-reads' if verify else ''}: {gb:.3f} GB in {times[verify]:.3f} s "
              f"= {gb / times[verify]:.2f} GB/s")  # fmt: skip
    print(f"--verify-reads / plain: {times[True] / times[False]:.2f}x")


if __name__ == "__main__":
    main()
