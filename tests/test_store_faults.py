"""Kill at any moment: a writer killed at each step of store creation and commit (os._exit at
a named step, pipeline/store/faults.py) leaves a store that the same code finishes to the
bytes of an uninterrupted run; so does a part whose metadata was deleted."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.store import StoreWriter, open_store, part_name, verify_store
from pipeline.store.faults import ENV, KILL_EXIT, STEPS

L, D = 3, 16
FP = {"upstream": "fake", "source": "fake://", "weights_hash": "h", "whisper_mode": None,
      "num_layers": L, "dim": D, "frame_rate": 50.0, "dtype": "int8", "manifest_hash": "m",
      "code_version": "1", "encoding": "int8"}  # fmt: skip
SCALES = np.linspace(0.01, 0.05, L * D, dtype=np.float32).reshape(L, D)


def _data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"u{i:02d}": rng.standard_normal((int(rng.integers(20, 200)), L, D)).astype(np.float32) for i in range(14)}  # fmt: skip


def write_store(path: str | Path) -> None:
    """Write (or resume) the test store: an int8 store, a commit every third utterance."""
    with StoreWriter(path, FP, chunk_frames=128, scales=SCALES) as w:
        done = w.done_ids
        for i, (uid, x) in enumerate(_data().items()):
            if uid not in done:
                w.append(uid, x)
            if i % 3 == 0:
                w.commit()
        if "broken" not in done:
            w.fail("broken", "AudioError: cannot read")


def digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("clean") / "s.zarr"
    write_store(path)
    assert verify_store(str(path)) == []
    return digest(path)


_CHILD = "import sys; sys.path.insert(0, {tests!r}); from test_store_faults import write_store; write_store({out!r})"  # fmt: skip
# the n-th time a step is reached: a later chunk, a later commit (not only the first)
_NTH = {"chunk_written": 5, "chunks_synced": 2, "index_resized": 3, "index_written": 2, "committed": 3}  # fmt: skip


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_each_step_then_rerun_is_byte_identical(step, tmp_path, clean):
    out = tmp_path / "s.zarr"
    env = {**os.environ, "PYTHONPATH": os.getcwd(), ENV: f"{step}:{_NTH.get(step, 1)}"}
    code = _CHILD.format(tests=str(Path(__file__).parent), out=str(out))
    rc = subprocess.run([sys.executable, "-c", code], env=env, timeout=120).returncode
    assert rc == KILL_EXIT, f"the writer never reached step {step!r}"
    write_store(out)  # the same command again
    assert digest(out) == clean
    assert verify_store(str(out)) == []


def test_part_whose_metadata_was_deleted_is_rebuilt(tmp_path, clean):
    out = tmp_path / "s.zarr"
    write_store(out)
    (out / part_name(0, 1) / "zarr.json").unlink()
    assert open_store(out).missing_parts == [part_name(0, 1)]
    write_store(out)
    assert digest(out) == clean
    shutil.rmtree(out / part_name(0, 1) / "frames")  # an array gone: rebuilt too
    write_store(out)
    assert digest(out) == clean


def test_kill_in_the_first_commit_of_a_sharded_store(tmp_path):
    """Two shards, one killed right after its part was renamed into place: the other finishes,
    the killed one reruns, and the store equals one written without a kill."""
    ref, out = tmp_path / "ref.zarr", tmp_path / "s.zarr"
    for path in (ref, out):
        StoreWriter(path, FP, shard=(1, 2), chunk_frames=128, scales=SCALES).close()
    code = _CHILD.replace("write_store(", "__import__('test_store_faults').write_shard(")
    env = {**os.environ, "PYTHONPATH": os.getcwd(), ENV: "part_renamed"}
    rc = subprocess.run([sys.executable, "-c", code.format(tests=str(Path(__file__).parent), out=str(out))], env=env, timeout=120).returncode  # fmt: skip
    assert rc == KILL_EXIT
    write_shard(out)
    write_shard(ref)
    assert digest(out) == digest(ref) and open_store(out).complete


def write_shard(path: str | Path) -> None:
    """Part 0 of 2 of the test store."""
    with StoreWriter(path, FP, shard=(0, 2), chunk_frames=128, scales=SCALES) as w:
        for uid, x in list(_data().items())[:5]:
            if uid not in w.done_ids:
                w.append(uid, x)


def test_commit_writes_the_part_metadata_once(tmp_path, monkeypatch):
    """`committed`, `failed` and `checksums` change in one atomic file write (zarr's
    attrs.update writes once per key: a kill between two of them left `committed` of one
    commit beside the checksums of the one before)."""
    import zarr.storage._local as zlocal

    writes: list[str] = []
    put = zlocal._put
    monkeypatch.setattr(zlocal, "_put", lambda path, value, exclusive=False: writes.append(str(path)) or put(path, value, exclusive))  # fmt: skip
    w = StoreWriter(tmp_path / "s.zarr", FP, chunk_frames=128, scales=SCALES)
    w.append("a", np.ones((5, L, D), np.float32))
    w.fail("b", "AudioError")
    writes.clear()
    w.commit()
    assert sum(p.endswith(f"{part_name(0, 1)}/zarr.json") for p in writes) == 1
    writes.clear()
    w.close()
    assert sum(p.endswith(f"{part_name(0, 1)}/zarr.json") for p in writes) == 1  # `complete`
