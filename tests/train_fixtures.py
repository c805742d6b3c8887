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
    root: Path, sizes: dict[str, int] | None = None, seed: int = 0
) -> tuple[Path, Path]:
    """Write data/{train,dev,test}.jsonl and cache/{up_a,up_b}.zarr under `root`."""
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
        fp = make_fingerprint(spec, "0", None, manifest_hash(all_utts))
        with StoreWriter(cache / f"{m}.zarr", fp) as w:
            for u in all_utts:
                w.append(u.id, feats[m][u.id])
    return data, cache


def install_fake_loader(monkeypatch) -> None:
    """Until pipeline.loader lands: a minimal loader with its contract (length-bucketed, seeded)."""
    import importlib
    import sys
    import types

    import torch

    try:
        importlib.import_module("pipeline.loader")
        return
    except ImportError:
        pass

    class FeatureDataset:
        def __init__(self, stores, utts):
            for s in stores:
                missing = [u.id for u in utts if u.id not in s]
                if missing:
                    raise KeyError(f"{missing[:3]} not in store {s.path}")
            self.stores, self.utts = stores, utts

    def make_loader(ds, batch_size, shuffle, seed, num_workers=0, tier="auto", device=None):
        order = sorted(range(len(ds.utts)), key=lambda i: ds.stores[0].length(ds.utts[i].id))
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if shuffle:
            batches = [batches[i] for i in np.random.default_rng(seed).permutation(len(batches))]
        for b in batches:
            utts = [ds.utts[i] for i in b]
            feats, lengths = [], []
            for s in ds.stores:
                xs = [
                    torch.from_numpy(np.asarray(s[u.id])).transpose(0, 1) for u in utts
                ]  # (L, T, D)
                n = torch.tensor([x.shape[1] for x in xs])
                out = torch.zeros(
                    len(xs), xs[0].shape[0], int(n.max()), xs[0].shape[2], dtype=torch.float16
                )
                for i, x in enumerate(xs):
                    out[i, :, : x.shape[1]] = x
                feats.append(out)
                lengths.append(n)
            yield {"ids": [u.id for u in utts], "utts": utts, "feats": feats, "lengths": lengths}

    mod = types.ModuleType("pipeline.loader")
    mod.FeatureDataset, mod.make_loader = FeatureDataset, make_loader
    monkeypatch.setitem(sys.modules, "pipeline.loader", mod)
