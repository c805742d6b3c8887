"""The feature store: round trip, zero-copy reads, crash recovery, locks, fingerprints, shards."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.store import (
    FeatureSource,
    FingerprintMismatch,
    StoreLocked,
    StoreWriter,
    check_fingerprint,
    open_store,
    part_name,
)

L, D = 3, 16  # 96 bytes a frame


def fingerprint(**kw) -> dict:
    fp = {
        "upstream": "fake",
        "source": "fake://",
        "weights_hash": "abc",
        "whisper_mode": None,
        "num_layers": L,
        "dim": D,
        "frame_rate": 50.0,
        "dtype": "float16",
        "manifest_hash": "m0",
        "code_version": "1",
    }
    fp.update(kw)
    return fp


def utterances(n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        f"utt{i:03d}": rng.standard_normal((int(rng.integers(1, 300)), L, D)).astype(np.float16)
        for i in range(n)
    }


def tree_digest(path: Path) -> dict[str, str]:
    """relative path -> sha256 of every file of a store."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def write_all(path: Path, data: dict, commit_every: int = 5, **kw) -> None:
    with StoreWriter(path, fingerprint(), chunk_frames=128, **kw) as w:
        for i, (uid, x) in enumerate(data.items()):
            w.append(uid, x)
            if i % commit_every == 0:
                w.commit()


def test_round_trip_zero_copy_and_zarr(tmp_path):
    data = utterances()
    path = tmp_path / "s.zarr"
    write_all(path, data)
    r = open_store(path)
    assert r.mode == "mmap" and r.complete and len(r) == len(data)
    assert (r.num_layers, r.dim, r.frame_rate) == (L, D, 50.0)
    spans = 0
    for uid, x in data.items():
        y = r[uid]
        assert y.shape == x.shape and y.dtype == np.float16 and r.length(uid) == len(x)
        np.testing.assert_array_equal(y, x)
        assert not y.flags.owndata and not y.flags.writeable  # a view of the mapping
        _, o, n = r._index[uid]
        spans += o // 128 != (o + n - 1) // 128
    assert spans > 5  # utterances crossing chunk files are views too
    assert np.shares_memory(r[r.ids[0]], r[r.ids[1]]) is False
    rz = open_store(path, mode="zarr")
    assert rz.mode == "zarr"
    for uid, x in data.items():
        np.testing.assert_array_equal(rz[uid], x)
    assert "nope" not in r
    with pytest.raises(KeyError, match="nope"):
        r["nope"]


def test_plain_zarr_and_dask_read_it(tmp_path):
    import dask.array as da

    data = utterances(10)
    path = tmp_path / "s.zarr"
    write_all(path, data)
    g = zarr.open_group(str(path), mode="r")
    assert g.attrs["fingerprint"]["num_layers"] == L
    part = g[part_name(0, 1)]
    ids, offs, lens = part["ids"][:], part["offsets"][:], part["lengths"][:]
    frames = part["frames"]
    assert frames.shape == (sum(len(x) for x in data.values()), L, D)
    for uid, o, n in zip(ids, offs, lens, strict=True):
        np.testing.assert_array_equal(frames[o : o + n], data[str(uid)])
    f = da.from_zarr(str(path), component=f"{part_name(0, 1)}/frames")
    ref = np.concatenate(list(data.values())).astype(np.float32)
    np.testing.assert_allclose(f.astype(np.float32).sum(axis=0).compute(), ref.sum(axis=0), rtol=1e-5)  # fmt: skip


def test_kill_then_resume_is_bit_identical(tmp_path):
    data = utterances(40)
    clean = tmp_path / "clean.zarr"
    write_all(clean, data)

    crashed = tmp_path / "crashed.zarr"
    items = list(data.items())
    w = StoreWriter(crashed, fingerprint(), chunk_frames=128)
    for i, (uid, x) in enumerate(items[:25]):
        w.append(uid, x)
        if i % 5 == 0:
            w.commit()
    # uncommitted work reached the disk (full chunks), then the process "died": its lock file
    # stays, the kernel drops the lock with the process's open files
    assert w._committed_k < 25 and w._chunk > 0
    os.close(w._lock.fd)
    w._lock.fd = w._lock = None
    assert (crashed / f"{part_name(0, 1)}.lock").exists()
    (crashed / part_name(0, 1) / "frames" / "c.0.0.0.abc.partial").write_bytes(b"junk")
    r = open_store(crashed)
    committed = len(r)
    assert committed == 21 and not r.complete  # only what was committed is visible

    w = StoreWriter(crashed, fingerprint())  # the stale lock is taken over
    assert w.done_ids == set(r.ids)
    for uid, x in items:
        if uid not in w.done_ids:
            w.append(uid, x)
    w.close()
    assert tree_digest(crashed) == tree_digest(clean)


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "s.zarr"
    w = StoreWriter(path, fingerprint(), shard=(0, 2))
    with pytest.raises(StoreLocked, match=r"being written by pid \d+"):
        StoreWriter(path, fingerprint(), shard=(0, 2))
    other = StoreWriter(path, fingerprint(), shard=(1, 2))  # another part: fine
    other.close()
    w.close()
    StoreWriter(path, fingerprint(), shard=(0, 2)).close()  # released


def test_fingerprint_mismatch_names_the_field(tmp_path):
    path = tmp_path / "s.zarr"
    write_all(path, utterances(3))
    check_fingerprint(path, fingerprint())
    with pytest.raises(
        FingerprintMismatch, match=r"(?s)whisper_mode: store has None, requested 'trim'.*--force"
    ):
        StoreWriter(path, fingerprint(whisper_mode="trim"))
    with pytest.raises(FingerprintMismatch) as e:
        check_fingerprint(path, fingerprint(dim=99, manifest_hash="m1"))
    assert "dim" in str(e.value) and "manifest_hash" in str(e.value) and "upstream" not in str(e.value)  # fmt: skip


def test_shards_and_failures(tmp_path):
    data = utterances(20)
    path = tmp_path / "s.zarr"
    items = list(data.items())
    for i in (1, 0):
        with StoreWriter(path, fingerprint(), shard=(i, 2)) as w:
            for uid, x in items[i::2]:
                w.append(uid, x)
            w.fail(f"bad{i}", "AudioError: cannot read")
    r = open_store(path)
    assert sorted(r.ids) == sorted(data) and r.complete
    assert {f["id"] for f in r.failed} == {"bad0", "bad1"}
    for uid, x in data.items():
        np.testing.assert_array_equal(r[uid], x)


def test_zstd_store_reads_through_zarr(tmp_path):
    data = utterances(8)
    path = tmp_path / "s.zarr"
    write_all(path, data, compressor="zstd")
    r = open_store(path)
    assert r.mode == "zarr"
    for uid, x in data.items():
        np.testing.assert_array_equal(r[uid], x)
    with pytest.raises(Exception, match="memory-mapped"):
        open_store(path, mode="mmap")


def test_reader_pickles(tmp_path):
    import pickle

    data = utterances(4)
    path = tmp_path / "s.zarr"
    write_all(path, data)
    r = pickle.loads(pickle.dumps(open_store(path)))
    np.testing.assert_array_equal(r["utt002"], data["utt002"])


def test_reader_is_a_feature_source(tmp_path):
    path = tmp_path / "s.zarr"
    write_all(path, utterances(3))
    r = open_store(path)
    assert isinstance(r, FeatureSource)
    assert r.length("utt001") == len(r["utt001"]) and r.path == str(path)


def test_force_never_deletes_a_zarr_group_that_is_not_a_store(tmp_path):
    """A folder holding only a zarr.json of someone else's group (user attributes) is refused
    by --force, untouched; a store's own entries (or an interrupted creation's) are removed."""
    import json

    from pipeline.store import StoreError, remove_store

    other = tmp_path / "mine.zarr"
    other.mkdir()
    doc = {"zarr_format": 3, "node_type": "group", "attributes": {"experiment": "keep me"}}
    (other / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="zarr group of something else"):
        remove_store(other)
    assert json.loads((other / "zarr.json").read_text()) == doc
    interrupted = tmp_path / "new.zarr"
    interrupted.mkdir()
    (interrupted / "zarr.json").write_text(json.dumps({**doc, "attributes": {}}))
    remove_store(interrupted)
    assert not interrupted.exists()


def test_a_store_whose_index_chunks_are_gone_says_so(tmp_path):
    """Deleted index chunks read back as empty ids: the error names the part and the fix, not
    `utterance  appears in two parts`; a deleted index array is one clear error too."""
    import shutil

    from pipeline.store import StoreError, open_store
    from tests.train_fixtures import make_er_suite

    _, cache = make_er_suite(tmp_path, sizes={"train": 6})
    store = cache / "up_a.zarr"
    (part,) = [p for p in store.iterdir() if p.name.startswith("part-")]
    for chunk in (part / "ids" / "c").rglob("*"):
        if chunk.is_file():
            chunk.unlink()
    with pytest.raises(StoreError, match=r"empty utterance id\(s\) in its index.*--force"):
        open_store(store)
    shutil.rmtree(part / "offsets")
    with pytest.raises(StoreError, match=r"lost its index array 'offsets'.*--force"):
        open_store(store)


def test_force_on_a_file_is_refused_untouched(tmp_path):
    from pipeline.store import StoreError, remove_store

    f = tmp_path / "some_file.txt"
    f.write_text("notes")
    with pytest.raises(
        StoreError, match=r"some_file.txt is a file, not a feature store.*another --out"
    ):
        remove_store(f)
    assert f.read_text() == "notes"
