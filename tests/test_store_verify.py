"""Checksums: `pipeline cache verify` catches finite bit flips, altered index entries, missing
and truncated chunks (naming chunk and utterances); `--full` finds NaN; readers refuse a
damaged chunk with a StoreError that points at `pipeline cache verify`."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.store import StoreCorrupt, StoreWriter, open_store, part_name, verify_store

L, D, C = 3, 16, 128
FP = {"upstream": "fake", "source": "fake://", "weights_hash": "h", "whisper_mode": None,
      "num_layers": L, "dim": D, "frame_rate": 50.0, "dtype": "float16", "manifest_hash": "m",
      "code_version": "1"}  # fmt: skip


def _store(path, nan_in: str | None = None, compressor=None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    data = {f"u{i:02d}": rng.standard_normal((int(rng.integers(30, 150)), L, D)).astype(np.float16) for i in range(12)}  # fmt: skip
    if nan_in:
        data[nan_in][5, 1, 2] = np.nan
    with StoreWriter(path, FP, chunk_frames=C, compressor=compressor) as w:
        for i, (uid, x) in enumerate(data.items()):
            w.append(uid, x)
            if i % 4 == 0:
                w.commit()
    return data


def _owners(data: dict, c: int) -> list[str]:
    """Utterances with frames in chunk c (write order = dict order)."""
    out, pos = [], 0
    for uid, x in data.items():
        if pos < (c + 1) * C and pos + len(x) > c * C:
            out.append(uid)
        pos += len(x)
    return out


def test_finite_bit_flips_are_caught_and_named(tmp_path):
    path = tmp_path / "s.zarr"
    data = _store(path)
    assert verify_store(str(path)) == []
    f = path / part_name(0, 1) / "frames" / "c.3.0.0"
    b = bytearray(f.read_bytes())
    for j in range(0, len(b), 2 * 97):  # the low mantissa bit of some fp16 values: still finite
        b[j] ^= 1
    f.write_bytes(bytes(b))
    x = np.frombuffer(bytes(b), np.float16)
    assert np.isfinite(x).all()
    probs = verify_store(str(path))
    assert len(probs) == 1 and "c.3.0.0" in probs[0] and "checksum" in probs[0] and "--force" in probs[0]  # fmt: skip
    assert all(u in probs[0] for u in _owners(data, 3))
    res = CliRunner().invoke(app, ["cache", "verify", str(path)])
    assert res.exit_code == 1 and "c.3.0.0" in res.output


def test_altered_index_and_truncated_chunk(tmp_path):
    path = tmp_path / "s.zarr"
    data = _store(path)
    g = zarr.open_group(str(path), mode="r+")[part_name(0, 1)]
    n = g["lengths"][:]
    n[2] += 1
    n[3] -= 1
    g["lengths"][:] = n
    f = path / part_name(0, 1) / "frames" / "c.1.0.0"
    f.write_bytes(f.read_bytes()[:1000])
    probs = "\n".join(verify_store(str(path)))
    assert "`lengths` disagrees with its checksum" in probs and "c.1.0.0" in probs and "1000 bytes" in probs  # fmt: skip
    victim = _owners(data, 1)[0]
    for mode in ("auto", "zarr"):  # a training read: one StoreError naming chunk and verify
        r = open_store(path, mode=mode)
        with pytest.raises(StoreCorrupt, match=r"(?s)chunk.*pipeline cache verify"):
            r[victim]
        np.testing.assert_array_equal(r["u11"], data["u11"])  # the rest reads fine


def test_full_finds_nan_anywhere(tmp_path):
    path = tmp_path / "s.zarr"
    _store(path, nan_in="u07")
    assert verify_store(str(path)) == []  # stored so: the checksums match
    probs = verify_store(str(path), full=True)
    assert len(probs) == 1 and "NaN/inf values in 1 utterance(s): u07" in probs[0]
    res = CliRunner().invoke(app, ["cache", "verify", "--full", str(path)])
    assert res.exit_code == 1 and "u07" in res.output


def test_compressed_store_is_checked_through_zarr(tmp_path):
    path = tmp_path / "s.zarr"
    _store(path, compressor="zstd")
    assert verify_store(str(path), full=True) == []
    f = path / part_name(0, 1) / "frames" / "c.2.0.0"
    b = bytearray(f.read_bytes())
    b[len(b) // 2] ^= 0xFF
    f.write_bytes(bytes(b))
    probs = verify_store(str(path))
    assert len(probs) == 1 and "c.2.0.0" in probs[0] and "damaged" in probs[0]


def test_verify_reads_finds_a_bit_flip_that_plain_reads_return(tmp_path, monkeypatch):
    """With PIPELINE_VERIFY_READS=1 a read checks the chunk's crc32: a same-size chunk whose
    bytes changed is refused naming the chunk file; without it the changed values come back."""
    from pipeline.store import StoreCorrupt, open_store
    from tests.train_fixtures import make_er_suite

    _, cache = make_er_suite(tmp_path, sizes={"train": 6})
    store = cache / "up_a.zarr"
    r = open_store(store)
    uid = r.ids[0]
    good = np.array(r[uid])
    chunk = next(f for f in store.rglob("frames/c*") if f.is_file())
    data = bytearray(chunk.read_bytes())
    data[0] ^= 0x40
    chunk.write_bytes(bytes(data))
    assert not np.array_equal(np.array(open_store(store)[uid]), good)  # silently changed
    monkeypatch.setenv("PIPELINE_VERIFY_READS", "1")
    with pytest.raises(StoreCorrupt, match="disagree with the checksum recorded at commit"):
        open_store(store)[uid]
