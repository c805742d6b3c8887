"""8-bit stores: int8 / fp8 codecs, calibration, writer + reader, extraction, loader decode, train."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from pipeline.encoding import (
    calibrate,
    decode,
    decode_torch,
    encode,
    fp8_table,
    scales_from_absmax,
)
from pipeline.store import (
    FingerprintMismatch,
    StoreError,
    StoreWriter,
    check_fingerprint,
    open_store,
    part_name,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_extract import FakeUpstream, cfg_for, digest, make_data  # noqa: E402

L, D = 3, 16


def feats(n: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    """fp16 (T, L, D) utterances with an outlier channel (like real hidden states)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        x = rng.standard_normal((int(rng.integers(5, 90)), L, D)).astype(np.float32)
        x[:, :, 3] *= 40.0  # a loud channel
        x[:, 2] *= 0.01  # a quiet layer
        out[f"u{i:02d}"] = x.astype(np.float16)
    return out


def fingerprint(encoding: str = "fp16", layers=None) -> dict:
    from pipeline.store import make_fingerprint
    from pipeline.upstreams.base import UpstreamSpec

    spec = UpstreamSpec("fake", "fake", "fake://", 16000, 50.0, L, D)
    return make_fingerprint(spec, "h", None, "m", encoding=encoding, layers=layers)


def test_fp8_table_matches_torch_e4m3():
    bits = torch.arange(256, dtype=torch.uint8)
    ref = bits.view(torch.float8_e4m3fn).float().numpy()
    tab = fp8_table()
    assert np.isnan(tab[[0x7F, 0xFF]]).all()
    ok = ~np.isnan(ref)
    np.testing.assert_array_equal(tab[ok], ref[ok])
    assert np.nanmax(tab) == 448.0


@pytest.mark.parametrize("enc", ["int8", "fp8"])
def test_codec_error_bounds_saturation_and_torch_agree(enc):
    x = np.concatenate(list(feats().values()))  # (F, L, D)
    s = calibrate([x[:200]], enc, L, D)  # a sample: later frames may exceed it
    q = encode(x, s, enc)
    assert q.dtype == (np.int8 if enc == "int8" else np.uint8) and q.shape == x.shape
    y = decode(q, s, enc)
    xf = x.astype(np.float32)
    lim = s * (127.0 if enc == "int8" else 448.0)  # (L, D)
    inside = np.abs(xf) <= lim
    err = np.abs(y - xf)
    if enc == "int8":
        assert (err[inside] <= np.broadcast_to(s / 2, x.shape)[inside] * (1 + 1e-5)).all()
    else:  # 3 mantissa bits: relative error <= 2^-4 (normals), absolute 2^-10 s (subnormals)
        bound = np.maximum(np.abs(xf) * 2.0**-4, np.broadcast_to(s * 2.0**-10, x.shape))
        assert (err[inside] <= bound[inside] * (1 + 1e-6)).all()
    assert np.isfinite(y).all() and (np.abs(y) <= lim * (1 + 1e-6)).all()  # saturates, no NaN
    # every decode path gives the same floats
    t = decode_torch(torch.from_numpy(q), torch.from_numpy(s), enc)
    np.testing.assert_array_equal(t.numpy(), y)
    if enc == "fp8":  # the CUDA path (torch's e4m3 cast), run on the CPU
        cast = torch.from_numpy(q).view(torch.float8_e4m3fn).float() * torch.from_numpy(s)
        np.testing.assert_array_equal(cast.numpy(), y)
    # the extraction device path encodes to the same bytes as the numpy codec
    from pipeline.extract.engine import Encoder

    got, finite = Encoder(None, enc, s)(torch.from_numpy(x).transpose(0, 1))
    assert finite
    np.testing.assert_array_equal(got.numpy(), q)


def test_scales_zero_channel_and_fp16_has_none():
    a = np.zeros((2, 3), np.float32)
    a[0, 0] = 127.0
    s = scales_from_absmax(a, "int8")
    assert s[0, 0] == 1.0 and (s[a == 0] == 1.0).all()
    with pytest.raises(ValueError, match="fp16"):
        scales_from_absmax(a, "fp16")
    with pytest.raises(ValueError, match="int4"):
        encode(np.zeros((1, 2, 3)), s, "int4")


@pytest.mark.parametrize("enc", ["int8", "fp8"])
def test_store_round_trip_plain_zarr_and_verify(tmp_path, enc):
    from pipeline.cli.cache import store_info, verify_store

    data = feats()
    s = calibrate(data.values(), enc, L, D)
    path = tmp_path / f"{enc}.zarr"
    with StoreWriter(path, fingerprint(enc), chunk_frames=256, scales=s) as w:
        for uid, x in data.items():
            w.append(uid, x)
    r = open_store(path)
    assert r.mode == "mmap" and r.encoding == enc and r.fingerprint["dtype"] == str(r.stored_dtype)
    np.testing.assert_array_equal(r.scales, s)
    for uid, x in data.items():
        raw = r.raw(uid)
        assert raw.dtype == r.stored_dtype and not raw.flags.owndata  # a view of the mapping
        np.testing.assert_array_equal(raw, encode(x, s, enc))
        y = r[uid]  # decoded, float16, as an fp16 store reads
        assert y.dtype == np.float16 and y.shape == x.shape
        tol = (s / 2 + 1e-3) if enc == "int8" else np.abs(x).astype(np.float32) / 16 + s
        assert (np.abs(y.astype(np.float32) - x) <= tol * 1.01).all()
    # plain zarr + numpy, as cache/README.md shows
    g = zarr.open_group(str(path), mode="r")
    assert g.attrs["fingerprint"]["encoding"] == enc
    scales = g["scales"][...]
    table = fp8_table()
    p = g[part_name(0, 1)]
    offs, lens = p["offsets"][:], p["lengths"][:]
    q = p["frames"][offs[1] : offs[1] + lens[1]]
    x = (q.astype(np.float32) if enc == "int8" else table[q]) * scales
    np.testing.assert_array_equal(x, r.decode(r.raw(str(p["ids"][1]))))
    assert verify_store(str(path)) == []
    info = store_info(str(path))
    assert info["encoding"] == enc and info["bytes_arrays"] == info["frames"] * L * D + s.nbytes
    # chunk files are half an fp16 store's
    chunk = next((path / part_name(0, 1) / "frames").glob("c.*"))
    assert chunk.stat().st_size == 256 * L * D


def test_scales_required_and_kept(tmp_path):
    data = feats(3)
    s = calibrate(data.values(), "int8", L, D)
    with pytest.raises(StoreError, match="scales"):
        StoreWriter(tmp_path / "a.zarr", fingerprint("int8"))
    w = StoreWriter(tmp_path / "a.zarr", fingerprint("int8"), scales=s)
    w.append("u00", data["u00"])
    w.close(complete=False)
    with pytest.raises(StoreError, match="other int8/fp8 scales"):
        StoreWriter(tmp_path / "a.zarr", fingerprint("int8"), scales=s * 2)
    with pytest.raises(FingerprintMismatch, match="encoding: store has 'int8', requested 'fp16'"):
        check_fingerprint(tmp_path / "a.zarr", fingerprint("fp16"))


def test_old_fingerprint_reads_as_fp16_all_layers(tmp_path):
    fp = fingerprint()
    old = {k: v for k, v in fp.items() if k not in ("encoding", "layers")}
    with StoreWriter(tmp_path / "old.zarr", old) as w:
        w.append("a", np.ones((4, L, D), np.float16))
    g = zarr.open_group(str(tmp_path / "old.zarr"), mode="r+")
    g.attrs["fingerprint"] = old  # exactly what a store written before 8-bit encodings holds
    r = open_store(tmp_path / "old.zarr")
    assert r.encoding == "fp16" and r.layers == [0, 1, 2] and r.scales is None
    check_fingerprint(tmp_path / "old.zarr", fp)  # a new fp16 request for all layers matches


@pytest.mark.parametrize("enc", ["int8", "fp8"])
def test_extract_8bit_equals_encoded_fp16_and_resumes(tmp_path, enc):
    """Calibration is deterministic: shards, reruns and the fp16 twin agree bit for bit."""
    from pipeline.extract.engine import calibration_batches, run

    data = make_data(tmp_path / "d", n=14)
    fp16 = tmp_path / "fp16.zarr"
    run(cfg_for(data, fp16), upstream=FakeUpstream())
    one = tmp_path / "one.zarr"
    # a small calibration sample: some batches come from the calibration pass, some not
    kw = dict(encoding=enc, calib_seconds=2.0)
    run(cfg_for(data, one, **kw), upstream=FakeUpstream())
    r16, r8 = open_store(fp16), open_store(one)
    assert r8.encoding == enc and sorted(r8.ids) == sorted(r16.ids)
    for uid in r16.ids:
        np.testing.assert_array_equal(r8.raw(uid), encode(r16[uid], r8.scales, enc))
    two = tmp_path / "two.zarr"
    for i in (1, 0):
        run(cfg_for(data, two, shard=(i, 2), **kw), upstream=FakeUpstream())
    np.testing.assert_array_equal(open_store(two).scales, r8.scales)
    for uid in r16.ids:
        np.testing.assert_array_equal(open_store(two).raw(uid), r8.raw(uid))
    # a rerun changes nothing; --force rebuilds the same bytes
    before = digest(one)
    res = run(cfg_for(data, one, **kw), upstream=FakeUpstream())
    assert res.written == 0 and digest(one) == before
    run(cfg_for(data, one, force=True, **kw), upstream=FakeUpstream())
    assert digest(one) == before
    # the sample: evenly spaced whole batches
    from pipeline.data.manifest import read_manifests
    from pipeline.extract.engine import make_batches

    batches = make_batches(read_manifests(str(data)), FakeUpstream(), "pad30", 2.0, 64)
    picks = calibration_batches(batches, 2.0)
    assert 0 < len(picks) < len(batches) and picks == calibration_batches(batches, 2.0)


def test_cli_extract_int8_half_the_bytes_and_verify(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import pipeline.extract.engine as ex
    from pipeline.cli import app
    from pipeline.cli.cache import store_info

    monkeypatch.setattr(ex, "_get_upstream", lambda cfg, up, dev: FakeUpstream())
    data = make_data(tmp_path / "d", n=14)
    runner = CliRunner()
    sizes = {}
    for enc in ("fp16", "int8"):
        out = tmp_path / f"{enc}.zarr"
        args = ["extract", "--model", "fake", "--data", str(data), "--out", str(out), "--device", "cpu", "--no-progress", "--encoding", enc]  # fmt: skip
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        res = runner.invoke(app, ["cache", "verify", str(out)])
        assert res.exit_code == 0, res.output
        sizes[enc] = store_info(str(out))
    assert sizes["int8"]["bytes_arrays"] / sizes["fp16"]["bytes_arrays"] <= 0.52
    assert sizes["int8"]["bytes_on_disk"] / sizes["fp16"]["bytes_on_disk"] <= 0.6  # tiny: metadata
    res = runner.invoke(app, ["extract", "--model", "fake", "--data", str(data), "--out", str(tmp_path / "x.zarr"), "--encoding", "int4"])  # fmt: skip
    assert res.exit_code != 0 and "int4" in res.output


@pytest.mark.parametrize("tier", ["mmap", "pinned"])
def test_loader_ships_bytes_and_decodes_on_the_device(tmp_path, tier):
    from pipeline.data.manifest import Utterance
    from pipeline.feed.loader import FeatureDataset, make_loader

    data = feats(10)
    s = calibrate(data.values(), "fp8", L, D)
    with StoreWriter(tmp_path / "s.zarr", fingerprint("fp8"), scales=s) as w:
        for uid, x in data.items():
            w.append(uid, x)
    r = open_store(tmp_path / "s.zarr")
    utts = [Utterance(u, f"{u}.wav", len(x) / 50, 16000, "train") for u, x in data.items()]
    ds = FeatureDataset([r], utts)
    assert ds.nbytes() == sum(x.size for x in data.values())  # one byte a value
    loader = make_loader(ds, 4, shuffle=True, tier=tier, device="cpu")
    assert "fp8" in loader.describe() and loader.tier == tier
    seen = 0
    for batch in loader:
        (x,), (n,) = batch["feats"], batch["lengths"]
        assert x.dtype == torch.float32 and x.shape[1:] == (L, int(n.max()), D)
        for b, uid in enumerate(batch["ids"]):
            m = int(n[b])
            np.testing.assert_array_equal(x[b, :, :m].numpy(), r.decode(r.raw(uid)).transpose(1, 0, 2))  # fmt: skip
            assert x[b, :, m:].abs().sum() == 0
            seen += 1
    assert seen == len(data)


def test_pipeline_train_from_int8_and_fp16_twins(tmp_path):
    """`pipeline train` runs from an int8 store and from its fp16 twin (same features)."""
    from train_fixtures import make_er_suite
    from typer.testing import CliRunner

    from pipeline.cli import app

    data, cache = make_er_suite(tmp_path, sizes={"train": 32, "dev": 12, "test": 12})
    cache8 = tmp_path / "cache8"
    for m in ("up_a",):
        r = open_store(cache / f"{m}.zarr")
        fp = dict(r.fingerprint, encoding="int8", dtype="int8")
        s = calibrate((r[u] for u in r.ids), "int8", r.num_layers, r.dim)
        with StoreWriter(cache8 / f"{m}.zarr", fp, scales=s) as w:
            for u in r.ids:
                w.append(u, r[u])
    metrics = {}
    for name, c in (("fp16", cache), ("int8", cache8)):
        out = tmp_path / f"run-{name}"
        args = ["train", "--interface", "ws", "--models", "up_a", "--task", "er", "--data", str(data), "--cache", str(c), "--out", str(out), "--set", "train.steps=40", "--set", "train.eval_every=20", "--set", "train.tier=mmap"]  # fmt: skip
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        metrics[name] = json.loads((out / "metrics.json").read_text())
    acc = {k: [r["value"] for r in v if r["split"] == "test"][0] for k, v in metrics.items()}
    assert acc["int8"] > 0.5 and acc["fp16"] > 0.5  # the toy class signal survives 8 bits
