"""HDF5 export: zarr store -> OUT.h5 -> the same values (h5py alone and through the reader), and
stage two trained from the HDF5 readers gives the zarr stores' metrics."""

from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import pipeline.store as store_mod
from pipeline.cli.export import export_cmd
from pipeline.encoding import calibrate
from pipeline.store import StoreError, StoreWriter, make_fingerprint, open_store
from pipeline.store.h5 import dataset_name, is_h5_path, open_h5_store
from pipeline.store.h5_export import export_h5
from pipeline.upstreams.base import UpstreamSpec

SPEC = UpstreamSpec("fake_up", "hf", "synthetic", 16000, 50.0, 5, 6)  # L = 5 states, D = 6
IDS = ["a-1", "spk/utt%2", "b 3", "..", "c4"]  # "/" and "%" must survive as dataset names


def _feats(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {u: rng.normal(size=(int(rng.integers(3, 40)), 3, 6)).astype(np.float16) for u in IDS}


def _store(path, encoding: str = "fp16", complete: bool = True):
    """A store of the states [0, 2, 4] of SPEC (L = 3 stored), fp16 / int8 / fp8."""
    data = _feats()
    fp = make_fingerprint(SPEC, "w0", None, "m0", encoding=encoding, layers=[0, 2, 4])
    scales = None if encoding == "fp16" else calibrate(data.values(), encoding, 3, 6)
    w = StoreWriter(path, fp, chunk_frames=64, scales=scales)
    for uid, x in data.items():
        w.append(uid, x)
    w.close(complete=complete)
    return path


@pytest.mark.parametrize("encoding", ["fp16", "int8", "fp8"])
def test_round_trip_with_h5py_alone(tmp_path, encoding):
    src = _store(tmp_path / "s.zarr", encoding)
    summary = export_h5(src, tmp_path / "s.h5", progress=False)
    r = open_store(src)
    assert summary["utterances"] == len(IDS) and summary["frames"] == r.total_frames
    with h5py.File(tmp_path / "s.h5", "r") as f:  # no pipeline code on the read side
        fp = json.loads(f.attrs["fingerprint"])
        assert fp["layers"] == [0, 2, 4] and fp["num_layers"] == 3 and fp["dtype"] == "float16"
        assert f.attrs["upstream"] == "fake_up" and f.attrs["frame_rate"] == 50.0
        assert json.loads(f.attrs["layers"]) == [0, 2, 4]
        assert f.attrs["source_encoding"] == encoding
        assert list(f["ids"].asstr()[:]) == r.ids
        for uid, n in zip(f["ids"].asstr()[:], f["lengths"][:], strict=True):
            x = f["utterances"][dataset_name(uid)][()]  # (T, L, D)
            assert x.shape == (n, 3, 6) and x.dtype == np.float16
            np.testing.assert_array_equal(x, r[uid])  # decoded 8-bit values, as the reader gives


def test_reader_has_the_loader_interface(tmp_path):
    src = _store(tmp_path / "s.zarr")
    export_h5(src, tmp_path / "s.h5", progress=False)
    z, h = open_store(src), open_h5_store(tmp_path / "s.h5")
    assert is_h5_path(h.path) and not is_h5_path(src)
    assert h.ids == z.ids and list(h) == z.ids and len(h) == len(z) and "a-1" in h
    assert (h.num_layers, h.dim, h.frame_rate, h.layers) == (3, 6, 50.0, [0, 2, 4])
    assert h.encoding == "fp16" and h.scales is None and h.complete and h.mode == "hdf5"
    assert h.total_frames == z.total_frames
    for uid in IDS:
        assert h.length(uid) == z.length(uid)
        np.testing.assert_array_equal(h[uid], z[uid])
        np.testing.assert_array_equal(h.decode(h.raw(uid)), z[uid].astype(np.float32))
    with pytest.raises(KeyError, match="nope"):
        h["nope"]
    again = pickle.loads(pickle.dumps(h))  # DataLoader workers reopen the file
    np.testing.assert_array_equal(again["c4"], z["c4"])


def test_layer_subset_and_float32(tmp_path):
    src = _store(tmp_path / "s.zarr", "int8")
    s = export_h5(src, tmp_path / "s.h5", layers="2,4", dtype="float32", progress=False)
    assert s["layers"] == [2, 4]
    z, h = open_store(src), open_h5_store(tmp_path / "s.h5")
    assert h.layers == [2, 4] and h.num_layers == 2 and h.fingerprint["encoding"] == "fp32"
    for uid in IDS:
        want = z.decode(z.raw(uid), np.float32)[:, [1, 2]]
        assert h[uid].dtype == np.float32
        np.testing.assert_array_equal(h[uid], want)
    with pytest.raises(StoreError, match=r"does not hold state\(s\) \[1\].*0-4:2"):
        export_h5(src, tmp_path / "t.h5", layers="0-1", progress=False)
    assert not (tmp_path / "t.h5").exists()


def test_refusals_name_the_file_and_the_fix(tmp_path):
    src = _store(tmp_path / "s.zarr", complete=False)
    with pytest.raises(StoreError, match="not complete.*--partial"):
        export_h5(src, tmp_path / "s.h5", progress=False)
    export_h5(src, tmp_path / "s.h5", partial=True, progress=False)
    with pytest.raises(StoreError, match="exists; pass --force"):
        export_h5(src, tmp_path / "s.h5", progress=False)
    export_h5(src, tmp_path / "s.h5", partial=True, force=True, progress=False)
    (tmp_path / "x.h5").write_bytes(b"not hdf5")
    with pytest.raises(StoreError, match="x.h5 cannot be opened as HDF5"):
        open_h5_store(tmp_path / "x.h5")
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(StoreError, match="not an exported feature store"):
        open_h5_store(tmp_path / "y.h5")
    with pytest.raises(StoreError, match="no HDF5 feature file"):
        open_h5_store(tmp_path / "z.h5")


def test_cli_command(tmp_path):
    src = _store(tmp_path / "s.zarr")
    app = typer.Typer()
    app.command("export")(export_cmd)
    app.command("other")(lambda: None)  # two commands: `export` is named, as under `cache`
    run = CliRunner().invoke(app, ["export", str(src), str(tmp_path / "o.h5"), "--layers", "4", "--no-progress"])  # fmt: skip
    assert run.exit_code == 0, run.output
    assert "5 utterances" in run.output and open_h5_store(tmp_path / "o.h5").layers == [4]
    run = CliRunner().invoke(app, ["export", str(src), str(tmp_path / "o.h5")])
    assert run.exit_code == 1 and "--force" in run.output


def test_training_from_hdf5_matches_zarr(tmp_path):
    from pipeline.train.config import resolve_config
    from pipeline.train.loop import train
    from tests.train_fixtures import make_er_suite

    data, cache = make_er_suite(tmp_path / "er", {"train": 32, "dev": 12, "test": 12})
    for m in ("up_a", "up_b"):
        export_h5(cache / f"{m}.zarr", cache / f"{m}.h5", progress=False)
    assert isinstance(
        store_mod.open_store(cache / "up_a.h5"), type(open_h5_store(cache / "up_a.h5"))
    )

    def run(suffix: str) -> list[dict]:
        cfg = resolve_config(
            interface="ws", models="up_a,up_b", task="er", data=data, cache=cache,
            out=tmp_path / f"run{suffix}", stores=[str(cache / f"{m}{suffix}") for m in ("up_a", "up_b")],
            sets=["steps=12", "eval_every=6", "lr=0.01", "batch_size=8"],
        )  # fmt: skip
        metrics = json.loads((train(cfg, progress=False) / "metrics.json").read_text())
        return [(m["split"], m["value"], [s["store"] for s in m["stores"]]) for m in metrics]

    z, h = run(".zarr"), run(".h5")
    assert [(s, v) for s, v, _ in z] == [(s, v) for s, v, _ in h]  # the same metrics, exactly
    assert all(p.endswith(".h5") for _, _, ps in h for p in ps)  # really read from HDF5
    assert z[1][1] > 0.5  # it learned something (chance 0.25)


def test_cache_info_names_an_hdf5_export(tmp_path):
    from pipeline.cli import app

    src = _store(tmp_path / "s.zarr")
    export_h5(src, tmp_path / "s.h5", progress=False)
    res = CliRunner().invoke(app, ["cache", "info", str(tmp_path / "s.h5")])
    assert res.exit_code == 1, res.output
    out = " ".join(res.output.split())  # rich wraps long lines
    assert "HDF5 export" in out and "Traceback" not in out


def test_a_deleted_utterance_dataset_is_one_clear_error(tmp_path):
    import h5py

    from pipeline.store import StoreError
    from pipeline.store.h5 import dataset_name

    src = _store(tmp_path / "s.zarr")
    export_h5(src, tmp_path / "s.h5", progress=False)
    with h5py.File(tmp_path / "s.h5", "a") as f:
        del f["utterances"][dataset_name("a-1")]
    h = open_h5_store(tmp_path / "s.h5")
    with pytest.raises(
        StoreError, match=r"'a-1' is in the index but its dataset .* is gone.*re-export"
    ):
        h["a-1"]


def test_cache_verify_checks_an_export_dataset_by_dataset(tmp_path):
    """`pipeline cache verify FILE.h5`: the crc32 written per dataset at export catches a bit
    flip, a missing dataset is named, and a clean export passes."""
    import h5py
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.store.h5 import dataset_name, verify_h5

    src = _store(tmp_path / "s.zarr")
    out = tmp_path / "s.h5"
    export_h5(src, out, progress=False)
    ok = CliRunner().invoke(app, ["cache", "verify", str(out)])
    assert ok.exit_code == 0 and "consistent" in ok.output, ok.output
    with h5py.File(out, "a") as f:
        ds = f["utterances"][dataset_name("a-1")]
        x = ds[()]
        x.flat[0] = x.flat[0] + 1
        ds[...] = x  # one value changed, its crc32 attribute kept
        del f["utterances"][dataset_name("c4")]
    probs = verify_h5(out)
    assert any("a-1" in p and "crc32" in p for p in probs), probs
    assert any("c4" in p and "missing" in p for p in probs), probs
    bad = CliRunner().invoke(app, ["cache", "verify", str(out)])
    assert bad.exit_code == 1 and "a-1" in bad.output
