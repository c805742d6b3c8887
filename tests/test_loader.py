"""The loader: alignment by id, clear errors, bucketing, tiers, spawn workers, the real store."""

import numpy as np
import pytest
import torch
from fakes import FakeStore

from pipeline.data.manifest import Utterance
from pipeline.feed.loader import (
    BucketBatchSampler,
    FeatureDataset,
    MisalignedStoresError,
    MissingUtterancesError,
    make_loader,
)
from pipeline.interfaces import build


def utt(uid: str, seconds: float) -> Utterance:
    return Utterance(id=uid, path=f"{uid}.wav", duration=seconds, sample_rate=16000, split="train")


def two_stores(n=23, seed=0):
    """A 50 Hz (5, 8) store and a 25 Hz (7, 6) store over the same n utterances."""
    rng = np.random.default_rng(seed)
    secs = rng.uniform(0.2, 2.0, n)
    utts = [utt(f"u{i:02d}", s) for i, s in enumerate(secs)]
    a = {
        u.id: rng.standard_normal((int(s * 50), 5, 8)).astype(np.float16)
        for u, s in zip(utts, secs, strict=True)
    }
    b = {
        u.id: rng.standard_normal((int(s * 25) + 1, 7, 6)).astype(np.float16)
        for u, s in zip(utts, secs, strict=True)
    }
    return FakeStore(a, 50.0, "a.zarr"), FakeStore(b, 25.0, "b.zarr"), utts


def check_batches(loader, stores, utts):
    seen = []
    for batch in loader:
        assert set(batch) == {"ids", "feats", "lengths", "utts"}
        assert [u.id for u in batch["utts"]] == batch["ids"]
        for store, x, n in zip(stores, batch["feats"], batch["lengths"], strict=True):
            B, L, T, D = x.shape
            assert (L, D) == (store.num_layers, store.dim) and x.dtype == torch.float16
            assert B == len(batch["ids"]) and T == int(n.max())
            for b, uid in enumerate(batch["ids"]):
                m = store.length(uid)
                assert n[b] == m
                np.testing.assert_array_equal(
                    x[b, :, :m].cpu().numpy(), store[uid].transpose(1, 0, 2)
                )
                assert x[b, :, m:].abs().sum() == 0
        seen += batch["ids"]
    assert sorted(seen) == sorted(u.id for u in utts)


@pytest.mark.parametrize("tier", ["mmap", "pinned"])
def test_batches_are_aligned_by_id_and_zero_padded(tier):
    a, b, utts = two_stores()
    ds = FeatureDataset([a, b], utts)
    assert ds.shapes == [(5, 8), (7, 6)] and ds.frame_rates == [50.0, 25.0]
    loader = make_loader(ds, batch_size=4, shuffle=True, seed=1, tier=tier, device="cpu")
    assert loader.tier == tier and tier in loader.describe()
    assert len(loader) == 6
    check_batches(loader, [a, b], utts)


def test_missing_id_names_the_store_and_counts():
    a, b, utts = two_stores()
    for uid in ("u03", "u07"):
        del b.arrays[uid]
    with pytest.raises(
        MissingUtterancesError, match=r"b\.zarr lacks 2 of the 23 utterances asked for: u03, u07"
    ):
        FeatureDataset([a, b], utts)


def test_misaligned_stores_are_refused_with_the_utterance():
    a, b, utts = two_stores()
    b.arrays["u05"] = b.arrays["u05"][: len(b.arrays["u05"]) // 2 - 3]
    with pytest.raises(MisalignedStoresError, match="u05"):
        FeatureDataset([a, b], utts)
    FeatureDataset([a, b], utts, length_tolerance=None)  # allowed when asked


def test_bucketing_is_seeded_sorted_in_buckets_and_complete():
    d = np.random.default_rng(0).uniform(1, 10, 103)
    s = BucketBatchSampler(d, batch_size=8, shuffle=True, seed=3, bucket_batches=4)
    e0, e1 = list(s), list(s)
    assert e0 != e1  # a new order each epoch
    assert BucketBatchSampler(d, 8, True, seed=3, bucket_batches=4).batches(0) == e0  # seeded
    for epoch in (e0, e1):
        assert sorted(i for b in epoch for i in b) == list(range(103))
        for batch in epoch:
            assert list(d[batch]) == sorted(d[batch], reverse=True)
    # bucketing keeps padding low: batches are far more uniform than random ones
    spread = np.mean([d[b].max() - d[b].min() for b in e0])
    rand = np.random.default_rng(0).permutation(103)
    rand_spread = np.mean([np.ptp(d[rand[i : i + 8]]) for i in range(0, 103, 8)])
    assert spread < 0.4 * rand_spread
    plain = BucketBatchSampler(d, 8, shuffle=False).batches()
    assert [i for b in plain for i in b] == list(np.argsort(-d, kind="stable"))
    assert all(len(b) == 8 for b in BucketBatchSampler(d, 8, True, drop_last=True).batches())
    s.set_epoch(0)
    assert list(s) == e0  # resuming an epoch replays it


def test_auto_tier_on_cpu_is_mmap_and_gpu_needs_cuda():
    a, b, utts = two_stores()
    ds = FeatureDataset([a], utts)
    assert make_loader(ds, 4, device="cpu").tier == "mmap"
    with pytest.raises(ValueError, match="tier 'gpu' needs a CUDA device"):
        make_loader(ds, 4, device="cpu", tier="gpu")
    with pytest.raises(ValueError, match="unknown loader tier"):
        make_loader(ds, 4, device="cpu", tier="disk")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_tier_slices_on_the_device():
    a, b, utts = two_stores()
    loader = make_loader(FeatureDataset([a, b], utts), 4, shuffle=True, tier="gpu", device="cuda")
    assert loader.tier == "gpu"
    check_batches(loader, [a, b], utts)


def test_loader_feeds_every_interface():
    a, b, utts = two_stores()
    ds = FeatureDataset([a, b], utts)
    batch = next(iter(make_loader(ds, 5, shuffle=True, device="cpu")))
    for name in ("ws", "hconv", "chconv", "gumd"):
        itf = build(name, ds.shapes, frame_rates=ds.frame_rates)
        out, n = itf([x.float() for x in batch["feats"]], batch["lengths"])
        assert out.shape == (5, int(batch["lengths"][0].max()), itf.out_dim)
        assert torch.equal(n, batch["lengths"][0])


def test_prefetch_thread_passes_errors_and_stops_early():
    from pipeline.feed.tiers import prefetch

    def boom():
        yield 1
        raise RuntimeError("store went away")

    got = []
    with pytest.raises(RuntimeError, match="store went away"):
        for x in prefetch(boom(), 2):
            got.append(x)
    assert got == [1]
    it = prefetch(iter(range(1000)), 2)
    assert next(it) == 0
    it.close()  # the consumer stops early: the thread ends instead of blocking


def write_store(path, arrays, frame_rate):
    from pipeline.store import StoreWriter

    L, D = next(iter(arrays.values())).shape[1:]
    fp = {"upstream": "fake", "source": "fake://", "weights_hash": "abc", "whisper_mode": None,
          "num_layers": L, "dim": D, "frame_rate": frame_rate, "dtype": "float16",
          "manifest_hash": "m0", "code_version": "1"}  # fmt: skip
    with StoreWriter(path, fp, chunk_frames=1024) as w:
        for uid, x in arrays.items():
            w.append(uid, x)


def test_real_stores_memory_mapped_with_a_spawned_worker(tmp_path):
    from pipeline.store import open_store

    a, b, utts = two_stores(n=30)
    write_store(tmp_path / "a.zarr", a.arrays, 50.0)
    write_store(tmp_path / "b.zarr", b.arrays, 25.0)
    stores = [open_store(tmp_path / "a.zarr"), open_store(tmp_path / "b.zarr")]
    assert all(s.mode == "mmap" for s in stores)
    ds = FeatureDataset(stores, utts)
    inline = make_loader(ds, 6, shuffle=True, seed=2, device="cpu")
    spawned = make_loader(ds, 6, shuffle=True, seed=2, device="cpu", num_workers=1)
    assert spawned.dataloader.multiprocessing_context.get_start_method() == "spawn"
    assert spawned.readahead  # workers page the stores in; the main process copies
    check_batches(spawned, [a, b], utts)
    check_batches(inline, [a, b], utts)
    with pytest.raises(
        MissingUtterancesError, match=str(tmp_path / "b.zarr") + " lacks 1 of the 31"
    ):
        FeatureDataset(stores, utts + [utt("nope", 1.0)])


def test_workers_pass_batches_through_shared_memory_for_other_stores():
    a, b, utts = two_stores(n=12)
    loader = make_loader(FeatureDataset([a, b], utts), 5, shuffle=True, device="cpu", num_workers=1)
    assert not loader.readahead  # not memory-mapped: workers read and send the bytes
    check_batches(loader, [a, b], utts)


def test_stores_at_other_frame_rates_get_the_same_batches():
    """Bucketing sorts by the manifest's durations, so a 25 Hz store and a 50 Hz store of the
    same utterances (frame counts rounded differently) give the same batches: runs over either
    can share one pass (a Moonshine run with Whisper runs)."""
    a, b, utts = two_stores()
    da, db = FeatureDataset([a], utts), FeatureDataset([b], utts)
    assert np.array_equal(da.durations(), db.durations())
    assert np.array_equal(da.durations(), [u.duration for u in utts])
    by_frames = [[a.length(u.id) / 50 for u in utts], [b.length(u.id) / 25 for u in utts]]
    assert not np.array_equal(*by_frames)  # the stores' own lengths would disagree

    def ids(ds):
        return [batch["ids"] for batch in make_loader(ds, 4, shuffle=True, seed=3, tier="mmap", device="cpu")]  # fmt: skip

    assert ids(da) == ids(db)
