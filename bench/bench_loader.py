"""Loader throughput / a plain numpy memmap read of the same bytes (goal: >= 0.8).

Usage: .venv/bin/python bench/bench_loader.py [--mb 300] [--batch 8] [--device cpu|cuda]
       [--workers 0,2] [--repeats 3] [--dir DIR]

Writes a synthetic store of about --mb MB (13 x 768 fp16, a base model's states, utterances
of 1-10 s at 50 Hz) with pipeline.store's writer, and the same frames as one flat .npy file.
Then, with the page cache warm, one epoch of the same length-bucketed batches is read

- baseline: np.memmap of the flat file (mapped once), each utterance copied into a zero-padded (B, T, L, D)
  numpy batch buffer (and, with --device cuda, that buffer moved to the GPU);
- the loader, per tier (mmap with each --workers count, pinned, and gpu when on CUDA), each
  batch's features moved to --device.

Prints GB/s and loader / baseline per tier: the ratio of the best of --repeats epochs each, and
the median ratio of interleaved (baseline, loader) epoch pairs, which is steadier on a shared
machine. The preloading of the pinned and gpu tiers is timed separately, not in the epoch.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.data.manifest import Utterance
from pipeline.feed.loader import BucketBatchSampler, FeatureDataset, make_loader
from pipeline.store import StoreWriter, open_store

L, D, RATE = 13, 768, 50.0


def build(
    dirpath: Path, mb: int, seed: int = 0
) -> tuple[list[Utterance], Path, Path, np.ndarray, np.ndarray]:
    """The store, the flat .npy twin, offsets and lengths (frames)."""
    rng = np.random.default_rng(seed)
    frame_bytes = L * D * 2
    lengths = []
    while sum(lengths) * frame_bytes < mb * 1e6:
        lengths.append(int(rng.uniform(1, 10) * RATE))
    lengths = np.array(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    utts = [
        Utterance(f"utt{i:05d}", f"utt{i:05d}.wav", n / RATE, 16000, "train")
        for i, n in enumerate(lengths)
    ]
    fp = {"upstream": "synthetic", "source": "bench", "weights_hash": "0", "whisper_mode": None,
          "num_layers": L, "dim": D, "frame_rate": RATE, "dtype": "float16", "manifest_hash": "bench",
          "code_version": "1"}  # fmt: skip
    store, flat = dirpath / "synthetic.zarr", dirpath / "flat.npy"
    mm = np.lib.format.open_memmap(
        flat, mode="w+", dtype=np.float16, shape=(int(lengths.sum()), L, D)
    )
    with StoreWriter(store, fp) as w:
        for u, o, n in zip(utts, offsets, lengths, strict=True):
            x = rng.standard_normal((n, L, D), dtype=np.float32).astype(np.float16)
            mm[o : o + n] = x
            w.append(u.id, x)
    mm.flush()
    del mm
    return utts, store, flat, offsets, lengths


def baseline_epoch(mm: np.ndarray, batches, offsets, lengths, device: torch.device) -> float:
    t0 = time.perf_counter()
    for b in batches:
        n = lengths[b]
        buf = np.empty((len(b), int(n.max()), L, D), np.float16)
        for j, i in enumerate(b):
            buf[j, : n[j]] = mm[offsets[i] : offsets[i] + n[j]]
            buf[j, n[j] :] = 0
        if device.type == "cuda":
            torch.from_numpy(buf).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def loader_epoch(loader, device: torch.device) -> float:
    t0 = time.perf_counter()
    for batch in loader:
        if device.type == "cuda":
            [x.to(device, non_blocking=True) for x in batch["feats"]]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mb", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", default="0,2", help="worker counts to try for the mmap tier")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--dir", default=None, help="where to write the synthetic store (default: a temp dir)"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)
    tmp = None
    if args.dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_loader_")
    root = Path(args.dir or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    utts, store, flat, offsets, lengths = build(root, args.mb)
    nbytes = int(lengths.sum()) * L * D * 2
    print(
        f"synthetic store: {len(utts)} utterances, {nbytes / 1e6:.0f} MB, written in {time.perf_counter() - t0:.1f} s"
    )
    reader = open_store(store)
    print(f"store read mode: {reader.mode}; device: {device}")
    ds = FeatureDataset([reader], utts)
    mm = np.load(flat, mmap_mode="r")  # mapped once, like the store reader
    batches = BucketBatchSampler(ds.durations(), args.batch, shuffle=True, seed=0).batches(0)

    def best_pair(fn) -> tuple[float, float, float]:
        """Best of `repeats` epochs of the baseline and of `fn`, interleaved (the machine is shared)."""
        baseline_epoch(mm, batches, offsets, lengths, device)
        fn()  # warm the page cache and the allocators
        tb, tl = [], []
        for _ in range(args.repeats):
            tb.append(baseline_epoch(mm, batches, offsets, lengths, device))
            tl.append(fn())
        return min(tb), min(tl), float(np.median(np.array(tb) / np.array(tl)))

    print(f"{'':34s} {'loader':>11s} {'baseline':>11s}  ratio (best / median of pairs)")
    configs = [("mmap", int(w)) for w in args.workers.split(",")] + [("pinned", 0)]
    if device.type == "cuda":
        configs.append(("gpu", 0))
    for tier, workers in configs:
        t1 = time.perf_counter()
        loader = make_loader(
            ds, args.batch, shuffle=True, seed=0, num_workers=workers, tier=tier, device=device
        )
        setup = time.perf_counter() - t1

        def epoch(loader=loader) -> float:
            loader.set_epoch(0)  # the same batches as the baseline
            return loader_epoch(loader, device)

        base, t, med = best_pair(epoch)
        name = f"loader {tier}" + (
            f", {workers} workers" if tier == "mmap" else f" (preload {setup:.1f} s)"
        )
        print(
            f"{name:34s} {nbytes / t / 1e9:6.2f} GB/s {nbytes / base / 1e9:6.2f} GB/s  {base / t:.2f} / {med:.2f}"
        )
        del loader
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
