"""Stage one with a fake upstream: batching, failures, kill -9 + resume, shards, Dask, fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.audio import write_wav
from pipeline.data.manifest import Utterance, write_manifest
from pipeline.extract.engine import ExtractConfig, make_batches, run, run_cluster
from pipeline.store import FingerprintMismatch, StoreError, StoreFull, open_store, part_name
from pipeline.upstreams.base import UpstreamSpec

SR, HOP = 16000, 320


class FakeUpstream:
    """A deterministic stand-in for a model: 3 states of width 8 at 50 Hz, per utterance.

    nan_len / raise_len: an utterance of that many samples gives NaN / makes its batch raise.
    """

    def __init__(self, family="fake", delay=0.0, nan_len=-1, raise_len=-1, pad_sensitive=False):
        self.spec = UpstreamSpec("fake", family, "fake://v1", SR, 50.0, 3, 8)
        self.delay, self.nan_len, self.raise_len = delay, nan_len, raise_len
        self.pad_sensitive = pad_sensitive
        self.w = torch.from_numpy(np.random.default_rng(0).standard_normal((3, HOP, 8)).astype(np.float32))  # fmt: skip

    def weights_hash(self) -> str:
        return "fake-v1"

    def num_frames(self, num_samples: int) -> int:
        return num_samples // HOP

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        time.sleep(self.delay)
        if int(self.raise_len) in lengths.tolist():
            raise RuntimeError("boom")
        out = []
        for x, n in zip(waveforms, lengths.tolist(), strict=True):
            frames = x[: n // HOP * HOP].reshape(-1, HOP)  # (T, 320)
            h = torch.tanh(torch.einsum("ts,lsd->ltd", frames, self.w))  # (L, T, D)
            out.append(h * float("nan") if n == self.nan_len else h)
        return out


def make_data(root: Path, n: int = 14, bad: bool = False) -> Path:
    """A manifest folder of short sine/noise clips (two of equal length), plus a corrupt file."""
    rng = np.random.default_rng(1)
    utts = []
    for i in range(n):
        samples = 8000 if i in (3, 4) else int(rng.integers(3200, 16000))
        t = np.arange(samples) / SR
        wav = 0.3 * np.sin(2 * np.pi * (100 + 20 * i) * t) + 0.01 * rng.standard_normal(samples)
        p = write_wav(root / f"u{i:02d}.wav", wav.astype(np.float32))
        utts.append(Utterance(f"u{i:02d}", str(p.resolve()), samples / SR, SR, "train"))
    if bad:
        (root / "bad.wav").write_bytes(b"this is not audio")
        utts.append(Utterance("bad", str((root / "bad.wav").resolve()), 0.5, SR, "train"))
    write_manifest(root / "train.jsonl", utts)
    return root


def digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def arrays(path: Path) -> dict[str, np.ndarray]:
    r = open_store(path)
    return {u: np.array(r[u]) for u in r.ids}


def cfg_for(data: Path, out: Path, **kw) -> ExtractConfig:
    base = dict(model="fake", data=str(data), out=str(out), device="cpu", progress=False, batch_seconds=2.0)  # fmt: skip
    base.update(kw)
    return ExtractConfig(**base)


def test_make_batches_minimal_padding():
    utts = [Utterance(f"a{i}", "x", d, SR, "train") for i, d in enumerate([1, 2, 2, 2, 3, 0.5, 1])]
    up = FakeUpstream()
    b = make_batches(utts, up, "pad30", batch_seconds=4.0, max_batch=64)
    assert [[u.duration for u in x] for x in b] == [[0.5, 1, 1], [2, 2], [2], [3]]
    up.pad_sensitive = True  # equal lengths only
    b = make_batches(utts, up, "pad30", batch_seconds=100.0, max_batch=64)
    assert [[u.duration for u in x] for x in b] == [[0.5], [1, 1], [2, 2, 2], [3]]
    up.spec = replace(up.spec, family="whisper")  # pad30 costs 30 s per utterance
    up.pad_sensitive = False
    assert len(make_batches(utts, up, "pad30", batch_seconds=60.0, max_batch=64)) == 4


def _lengths(data: Path) -> dict[str, int]:
    lines = (data / "train.jsonl").read_text().splitlines()
    return {d["id"]: round(d["duration"] * SR) for d in map(json.loads, lines)}


def test_extract_skips_failures_and_matches_the_model(tmp_path):
    data = make_data(tmp_path / "d", bad=True)
    out = tmp_path / "s.zarr"
    n = _lengths(data)
    # u03 and u04 (8000 samples each) give NaN; u07 makes its whole batch raise; bad.wav is not audio
    up = FakeUpstream(nan_len=8000, raise_len=n["u07"])
    res = run(cfg_for(data, out, batch_seconds=100.0), upstream=up)
    failed = {f["id"]: f["reason"] for f in res.failed}
    assert set(failed) == {"bad", "u03", "u04", "u07"}
    assert "AudioError" in failed["bad"] and "NaN" in failed["u03"] and "boom" in failed["u07"]
    r = open_store(out)
    assert r.complete and len(r) == 11 == res.written
    assert {f["id"] for f in r.failed} == set(failed)
    # every stored utterance equals the model run on it alone, in fp16, frames-major
    from pipeline.audio import load_audio

    clean = FakeUpstream()
    for uid in r.ids:
        wav = torch.from_numpy(load_audio(data / f"{uid}.wav"))
        (ref,) = clean.forward(wav[None], torch.tensor([len(wav)]))
        np.testing.assert_array_equal(r[uid], ref.transpose(0, 1).half().numpy())
    # the same command again has nothing to do
    before = digest(out)
    again = run(cfg_for(data, out, batch_seconds=100.0), upstream=up)
    assert again.written == 0 and again.already == 15 and digest(out) == before


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_extract import FakeUpstream, cfg_for
from pathlib import Path
from pipeline.extract.engine import run
run(cfg_for(Path({data!r}), Path({out!r}), commit_seconds=0.0, batch_seconds=0.6), upstream=FakeUpstream(delay=0.15))
"""


def test_kill9_then_rerun_is_bit_identical(tmp_path):
    data = make_data(tmp_path / "d", n=16)
    clean = tmp_path / "clean.zarr"
    run(cfg_for(data, clean, commit_seconds=0.0, batch_seconds=0.6), upstream=FakeUpstream())
    out = tmp_path / "killed.zarr"
    code = _CHILD.format(tests=str(Path(__file__).parent), data=str(data), out=str(out))
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
    meta = out / part_name(0, 1) / "zarr.json"
    deadline = time.monotonic() + 60
    committed = 0
    while time.monotonic() < deadline and child.poll() is None:
        try:
            committed = json.loads(meta.read_text())["attributes"]["committed"]["utterances"]
        except (OSError, ValueError, KeyError):
            committed = 0
        if committed >= 4:
            break
        time.sleep(0.02)
    assert child.poll() is None, "the child finished before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    r = open_store(out)
    assert 4 <= len(r) < 16 and not r.complete
    assert (out / f"{part_name(0, 1)}.lock").exists()  # left by the dead writer
    res = run(cfg_for(data, out, commit_seconds=0.0, batch_seconds=0.6), upstream=FakeUpstream())
    assert res.already == len(r) and res.written == 16 - len(r)
    assert digest(out) == digest(clean)


def test_shards_equal_one_process(tmp_path):
    data = make_data(tmp_path / "d")
    one = tmp_path / "one.zarr"
    run(cfg_for(data, one), upstream=FakeUpstream())
    two = tmp_path / "two.zarr"
    for i in (1, 0):
        run(cfg_for(data, two, shard=(i, 2)), upstream=FakeUpstream())
    a, b = arrays(one), arrays(two)
    assert sorted(a) == sorted(b) and open_store(two).complete
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(Exception, match="part"):  # another n on the same store is refused
        run(cfg_for(data, two, shard=(0, 3)), upstream=FakeUpstream())


@pytest.mark.slow
def test_local_dask_cluster_equals_one_process(tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    data = make_data(tmp_path / "d")
    one = tmp_path / "one.zarr"
    run(cfg_for(data, one), upstream=FakeUpstream())
    two = tmp_path / "cluster.zarr"
    results = run_cluster(cfg_for(data, two), "local:2", upstream=FakeUpstream)
    assert [r.shard for r in results] == [(0, 2), (1, 2)]
    a, b = arrays(one), arrays(two)
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_whisper_mode_change_refused_then_force(tmp_path):
    data = make_data(tmp_path / "d", n=4)
    out = tmp_path / "s.zarr"
    run(cfg_for(data, out, whisper_mode="pad30"), upstream=FakeUpstream(family="whisper"))
    with pytest.raises(FingerprintMismatch, match=r"(?s)whisper_mode: store has 'pad30', requested 'trim'.*--force"):  # fmt: skip
        run(cfg_for(data, out, whisper_mode="trim"), upstream=FakeUpstream(family="whisper"))
    res = run(cfg_for(data, out, whisper_mode="trim", force=True), upstream=FakeUpstream(family="whisper"))  # fmt: skip
    assert res.written == 4 and open_store(out).fingerprint["whisper_mode"] == "trim"


def test_cache_verify_and_info(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    data = make_data(tmp_path / "d", n=5, bad=True)
    out = tmp_path / "s.zarr"
    run(cfg_for(data, out), upstream=FakeUpstream())
    runner = CliRunner()
    res = runner.invoke(app, ["cache", "verify", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["cache", "info", str(out), "--json"])
    info = json.loads(res.output)
    assert info["utterances"] == 5 and info["failed"][0]["id"] == "bad" and info["complete"]
    assert info["fingerprint"]["num_layers"] == 3 and info["bytes_raw_fp16"] == info["frames"] * 48
    # break it: drop a chunk file -> verify fails and says which utterance
    next((out / part_name(0, 1) / "frames").glob("c.*")).unlink()
    with open(out / part_name(0, 1) / "zarr.json") as f:
        meta = json.load(f)
    meta["attributes"]["complete"] = False
    (out / part_name(0, 1) / "zarr.json").write_text(json.dumps(meta))
    res = runner.invoke(app, ["cache", "verify", str(out)])
    assert res.exit_code == 1 and "not complete" in res.output and "chunk file" in res.output


@pytest.mark.slow
def test_cli_whisper_tiny_en_on_the_tiny_suite(tiny_suite, tmp_path):
    """The acceptance check on 6 utterances of the built-in er set, through `pipeline extract`."""
    import zarr
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.data.manifest import read_manifests

    utts = read_manifests(tiny_suite / "er")[:6]
    data = write_manifest(tmp_path / "m" / "test.jsonl", utts).parent
    out = tmp_path / "S.zarr"
    args = ["extract", "--model", "whisper_tiny_en", "--data", str(data), "--out", str(out), "--device", "cpu", "--no-progress"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    g = zarr.open_group(str(out), mode="r")
    fp = g.attrs["fingerprint"]
    assert (fp["num_layers"], fp["dim"], fp["whisper_mode"]) == (5, 384, "pad30")
    part = g[part_name(0, 1)]
    assert sorted(part["ids"][:]) == sorted(u.id for u in utts)
    assert part["frames"].shape == (int(part["lengths"][:].sum()), 5, 384)
    res = CliRunner().invoke(app, [*args, "--whisper-mode", "trim"])
    assert res.exit_code == 1 and "whisper_mode" in res.output and "--force" in res.output


def test_out_that_is_not_a_store_is_refused_and_force_deletes_nothing(tmp_path):
    data = make_data(tmp_path / "d", n=4)
    cache = tmp_path / "cache"  # the cache folder itself, given as --out by a typo
    run(cfg_for(data, cache / "er.zarr"), upstream=FakeUpstream())
    (cache / "notes.txt").write_text("mine")
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    for force in (False, True):
        with pytest.raises(StoreError, match=r"er\.zarr, notes\.txt.*nothing was"):
            run(cfg_for(data, cache, force=force), upstream=FakeUpstream())
        assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before
    # a store with a stranger inside: written to, but --force names the stranger and keeps all
    store = cache / "er.zarr"
    (store / "README").write_text("not the store's")
    assert run(cfg_for(data, store), upstream=FakeUpstream()).already == 4
    with pytest.raises(StoreError, match=r"README.*nothing was deleted"):
        run(cfg_for(data, store, force=True, whisper_mode="trim"), upstream=FakeUpstream())
    assert open_store(store).complete
    (store / "README").unlink()
    assert run(cfg_for(data, store, force=True), upstream=FakeUpstream()).written == 4


def test_interrupted_creation_is_adopted(tmp_path):
    """A folder holding only store entries (a dead writer's lock, a half-built part) is a
    store whose creation was interrupted: the same command finishes it."""
    data = make_data(tmp_path / "d", n=4)
    clean, out = tmp_path / "clean.zarr", tmp_path / "s.zarr"
    run(cfg_for(data, clean), upstream=FakeUpstream())
    out.mkdir()
    (out / f"{part_name(0, 1)}.lock").write_text("")
    (out / f".{part_name(0, 1)}.tmp").mkdir()
    run(cfg_for(data, out), upstream=FakeUpstream())
    assert digest(out) == digest(clean)


def test_full_disk_is_one_message_and_a_rerun_resumes(tmp_path, monkeypatch):
    import errno

    import pipeline.store.writer as writer_mod

    data = make_data(tmp_path / "d", n=16)
    clean, out = tmp_path / "clean.zarr", tmp_path / "s.zarr"
    cfg = cfg_for(data, out, commit_seconds=0.0, batch_seconds=0.6)
    run(replace(cfg, out=str(clean)), upstream=FakeUpstream())
    calls = {"n": 0}

    def full_after_two(path, mode="r", *a, **kw):  # the third chunk file finds the disk full
        if "w" in mode:
            calls["n"] += 1
            if calls["n"] > 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return open(path, mode, *a, **kw)

    monkeypatch.setattr(writer_mod, "open", full_after_two, raising=False)
    with pytest.raises(StoreFull) as e:
        run(replace(cfg, out=str(out)), upstream=FakeUpstream())
    msg = str(e.value)
    assert str(out) in msg and "disk is full" in msg and "intact" in msg and "rerun the same command" in msg  # fmt: skip
    assert "\n" not in msg and len(msg) < 300
    committed = len(open_store(out))
    assert 0 < committed < 16
    monkeypatch.undo()
    res = run(replace(cfg, out=str(out)), upstream=FakeUpstream())
    assert res.already == committed and digest(out) == digest(clean)


def test_force_on_one_shard_rebuilds_only_its_part(tmp_path):
    data = make_data(tmp_path / "d", n=6)
    out = tmp_path / "s.zarr"
    for i in (0, 1):
        run(cfg_for(data, out, shard=(i, 2)), upstream=FakeUpstream())
    before = digest(out)
    kept = {str(p): p.stat().st_ino for p in (out / part_name(1, 2)).rglob("*") if p.is_file()}
    res = run(cfg_for(data, out, shard=(0, 2), force=True), upstream=FakeUpstream())
    assert res.written > 0 and res.already == 0
    assert digest(out) == before  # part 0 rebuilt to the same bytes
    assert {str(p): p.stat().st_ino for p in (out / part_name(1, 2)).rglob("*") if p.is_file()} == kept  # fmt: skip


@pytest.mark.slow
def test_local_shards_write_the_store_one_process_writes(tiny_suite, tmp_path):
    """The DVC stage's CPU path: n single-threaded shard processes (real Whisper tiny.en) give
    the same utterances with bit-identical values as one process, and report merged counts."""
    from pipeline.data.manifest import read_manifests
    from pipeline.extract.engine import cpu_shards, run_local_shards

    utts = read_manifests(tiny_suite / "er")[:8]
    data = write_manifest(tmp_path / "m" / "test.jsonl", utts).parent
    cfg = ExtractConfig(model="whisper_tiny_en", data=str(data), out=str(tmp_path / "one.zarr"),
                        device="cpu", whisper_mode="trim", progress=False)  # fmt: skip
    assert cpu_shards(replace(cfg, threads=2)) == 1 and cpu_shards(replace(cfg, shard=(0, 2))) == 1
    one = run(cfg)
    two = run_local_shards(replace(cfg, out=str(tmp_path / "two.zarr")), 2)
    assert (one.written, two.written, two.already, two.failed) == (8, 8, 0, [])
    a, b = open_store(tmp_path / "one.zarr"), open_store(tmp_path / "two.zarr")
    assert b.complete and sorted(a.ids) == sorted(b.ids) == sorted(u.id for u in utts)
    for uid in sorted(a.ids):
        assert np.array_equal(a.raw(uid), b.raw(uid)), uid
    again = run_local_shards(
        replace(cfg, out=str(tmp_path / "two.zarr")), 2
    )  # resumes: nothing to do
    assert (again.written, again.already) == (0, 8)


def test_a_missing_file_fails_its_utterance_and_a_wrong_duration_warns(tmp_path):
    """A missing audio file is skipped and listed like an unreadable one (the rest is
    extracted); a clip whose manifest duration is 3 s off is extracted with a warning."""
    import dataclasses

    from pipeline.data.manifest import read_manifest

    data = make_data(tmp_path / "d")
    utts = read_manifest(data / "train.jsonl", check_files=False)
    (data / f"{utts[0].id}.wav").unlink()
    utts[1] = dataclasses.replace(utts[1], duration=utts[1].duration + 3.0)
    write_manifest(data / "train.jsonl", utts)
    res = run(cfg_for(data, tmp_path / "s.zarr", batch_seconds=100.0), upstream=FakeUpstream())
    assert [f["id"] for f in res.failed] == [utts[0].id]
    assert [w["id"] for w in res.warnings] == [utts[1].id]
    assert "fix the manifest's duration" in res.warnings[0]["reason"]
    assert res.written == len(utts) - 1 and open_store(tmp_path / "s.zarr").complete
