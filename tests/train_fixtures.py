"""A synthetic emotion data dir and its feature stores, shared by test_train and test_evaluate.

Two upstreams: `up_a` (L=3, D=8) carries the class in layer 1, dims 0..3; `up_b` (L=4, D=6)
is noise. Stores are written with the real StoreWriter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.manifest import Utterance, write_manifest

LABELS = ["neu", "hap", "ang", "sad"]
SHAPES = {"up_a": (3, 8), "up_b": (4, 6)}


def make_er_suite(
    root: Path, sizes: dict[str, int] | None = None, seed: int = 0, weights_hash: str = "0"
) -> tuple[Path, Path]:
    """Write data/<split>.jsonl (train, dev, test or `sizes`' splits) and cache/{up_a,up_b}.zarr.

    The same `seed` gives the same features; `weights_hash` only changes the fingerprint.
    """
    from pipeline.store import StoreWriter, make_fingerprint, manifest_hash
    from pipeline.upstreams.base import UpstreamSpec

    sizes = sizes or {"train": 64, "dev": 24, "test": 24}
    rng = np.random.default_rng(seed)
    data, cache = root / "data", root / "cache"
    feats: dict[str, dict[str, np.ndarray]] = {m: {} for m in SHAPES}
    all_utts = []
    for split, n in sizes.items():
        utts = []
        for i in range(n):
            c = int(rng.integers(0, 4))
            uid = f"{split}-{i:03d}"
            t = int(rng.integers(8, 20))
            utts.append(Utterance(uid, f"{uid}.wav", t / 50, 16000, split, emotion=LABELS[c]))
            for m, (L, D) in SHAPES.items():
                x = rng.normal(size=(t, L, D)).astype(np.float16)  # (T, L, D)
                if m == "up_a":
                    x[:, 1, c] += 1.5
                feats[m][uid] = x
        write_manifest(data / f"{split}.jsonl", utts)
        all_utts += utts
    for m, (L, D) in SHAPES.items():
        spec = UpstreamSpec(m, "hf", "synthetic", 16000, 50.0, L, D)
        fp = make_fingerprint(spec, weights_hash, None, manifest_hash(all_utts))
        with StoreWriter(cache / f"{m}.zarr", fp) as w:
            for u in all_utts:
                w.append(u.id, feats[m][u.id])
    return data, cache
