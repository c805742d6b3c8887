"""Stage one: run a frozen upstream over a manifest and store every hidden state.

    manifest -> length-sorted batches -> [audio prefetch thread] -> forward (main thread)
             -> bounded queue -> [writer thread: StoreWriter.append / commit] -> store part

The batches are a pure function of the manifest, the upstream and `batch_seconds`, so every
utterance is computed in the same batch whether the run is whole, resumed after a kill, one of
`--shard i/n` (shard i takes batches i, i+n, ...) or a Dask worker: per-utterance arrays are
bit-identical across all of them. The writer commits only at batch boundaries.

Encodings (`encoding`: fp16 | int8 | fp8, pipeline/encoding.py): before anything is written, a
calibration pass runs the upstream over a deterministic sample of the batches (evenly spaced
whole batches, about `calib_seconds` of audio) and takes the scales (L, D) from its per-(layer,
channel) absmax; every shard and every resumed run computes the same sample and the same
scales (a store that already holds scales reuses them). Values are encoded on the extraction
device right after the forward (half the bytes come back from a GPU), and the calibration
batches this shard owns are written from the calibration pass instead of being run twice.
`layers` (pipeline/layers.py) keeps a subset of the states; scales cover the kept states only.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from pipeline.data.manifest import read_manifests
from pipeline.device import resolve_device
from pipeline.encoding import (
    AbsMax,
    check_encoding,
    encode,
    is_8bit,
    scales_from_absmax,
)
from pipeline.errors import UserError
from pipeline.extract.encode import (  # noqa: F401  (re-exported: pipeline.extract.engine is the stage)
    Encoder,
    _forward,
    _load,
    _run_batch,
    calibration_batches,
    make_batches,
)
from pipeline.layers import parse_layers
from pipeline.store import (
    CHUNK_BYTES,
    StoreError,
    StoreWriter,
    check_adoptable,
    check_fingerprint,
    chunk_frames_for,
    make_fingerprint,
    manifest_hash,
    normalize_fingerprint,
    remove_part,
    remove_store,
    store_exists,
)
from pipeline.upstreams.registry import load_upstream


@dataclass
class ExtractConfig:
    model: str  # registry name or path (see pipeline.upstreams.registry)
    data: str  # manifest file or task folder of train/dev/test.jsonl
    out: str  # the store, e.g. cache/tiny/er/whisper_tiny_en.zarr
    device: str = "auto"  # cpu | cuda | auto
    whisper_mode: str = "pad30"  # pad30 | trim (Whisper upstreams only)
    shard: tuple[int, int] = (0, 1)  # this process writes part i of n
    batch_seconds: float | None = (
        None  # padded audio seconds per batch; None: 40 on CPU, 400 on GPU
    )
    max_batch: int = 64  # utterances per batch at most
    force: bool = False  # delete a store built for another request and rebuild
    compress: str | None = None  # None | "zstd"
    progress: bool = True
    commit_seconds: float = 5.0  # commit at most this often (0: after every batch)
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    encoding: str = "fp16"  # fp16 | int8 | fp8 (pipeline/encoding.py)
    layers: str | list[int] | None = None  # states to keep (pipeline/layers.py); None: all
    calib_seconds: float = 120.0  # audio of the calibration sample for int8/fp8 scales


@dataclass
class ExtractResult:
    store: str
    shard: tuple[int, int]
    written: int = 0  # utterances written by this run
    already: int = 0  # utterances found done (committed or failed) by an earlier run
    failed: list[dict] = field(default_factory=list)  # [{id, reason}] of this run
    # [{id, reason}]: extracted, but the audio's length disagrees with the manifest's duration
    warnings: list[dict] = field(default_factory=list)
    audio_seconds: float = 0.0  # audio processed by this run
    wall_seconds: float = 0.0


class _AsyncWriter:
    """Writer thread behind a bounded queue: overlaps disk I/O with the next forward passes."""

    def __init__(self, writer: StoreWriter, commit_seconds: float, depth: int = 4) -> None:
        self.w, self.commit_seconds = writer, commit_seconds
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        last = time.monotonic()
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is not None:
                continue  # drain
            try:
                results, failed = item
                for uid, feats in results:
                    self.w.append(uid, feats)
                for uid, reason in failed:
                    self.w.fail(uid, reason)
                if time.monotonic() - last >= self.commit_seconds:  # batch boundary
                    self.w.commit()
                    last = time.monotonic()
            except BaseException as e:
                self.error = e

    def put(self, item) -> None:
        if self.error is not None:
            raise self.error
        self.q.put(item)

    def abort(self) -> None:
        """Stop without writing what is still queued (the last commit stays the resume point)."""
        self.error = self.error or RuntimeError("aborted")
        if self.thread.is_alive():
            self.q.put(None)
            self.thread.join(timeout=120)

    def finish(self) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _progress(enabled: bool, total: float):
    import rich.progress as rp

    p = rp.Progress(
        rp.TextColumn("[bold]{task.description}"),
        rp.BarColumn(),
        rp.TextColumn("{task.fields[hours]:.3f}/{task.fields[total_h]:.3f} audio-h"),
        rp.TextColumn("[cyan]{task.fields[rate]:.4f} audio-h/s ({task.fields[rt]:.0f}× real time)"),
        rp.TimeElapsedColumn(),
        rp.TimeRemainingColumn(),
        disable=not enabled,
    )
    task = p.add_task("extract", total=total or 1.0, hours=0.0, total_h=total / 3600, rate=0.0, rt=0.0)  # fmt: skip
    return p, task


def _get_upstream(cfg: ExtractConfig, upstream, device: str):
    if upstream is None:
        return load_upstream(cfg.model, device=device, whisper_mode=cfg.whisper_mode)
    factory = isinstance(upstream, type) or not hasattr(upstream, "forward")
    return upstream() if factory else upstream


def run(cfg: ExtractConfig, upstream=None) -> ExtractResult:
    """Extract part `cfg.shard` of the store `cfg.out`. `upstream`: an Upstream or a factory
    (for tests and custom models); default: `load_upstream(cfg.model, ...)`.

    Raises FingerprintMismatch / StoreError / ManifestError with messages meant for the user.
    """
    t0 = time.monotonic()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if not cfg.force:
        check_adoptable(cfg.out)  # before the model loads: a folder that is not a store
    # a missing audio file fails that utterance only (listed, as an unreadable one is)
    utts = read_manifests(cfg.data, check_files=False)
    encoding = check_encoding(cfg.encoding)
    up = _get_upstream(cfg, upstream, device)
    layers = parse_layers(cfg.layers, up.spec.num_layers)
    full = layers == list(range(up.spec.num_layers))
    fp = make_fingerprint(up.spec, up.weights_hash(), cfg.whisper_mode, manifest_hash(utts),
                          encoding=encoding, layers=layers)  # fmt: skip
    i, n = cfg.shard
    if cfg.force:
        _force(cfg.out, fp, i, n)
    check_fingerprint(cfg.out, fp)
    bs = cfg.batch_seconds or (400.0 if device.startswith("cuda") else 40.0)
    batches = make_batches(utts, up, cfg.whisper_mode, bs, cfg.max_batch)
    mine = batches[i::n]
    res = ExtractResult(store=str(cfg.out), shard=(i, n))
    enc = Encoder(None if full else layers, encoding)
    calibrated: dict[str, np.ndarray] = {}  # id -> stored values, for this shard's sample batches
    if is_8bit(encoding):
        enc.scales, calibrated = _scales(cfg, up, batches, device, enc, own=set(range(i, len(batches), n)))  # fmt: skip
    # ~8 MiB chunks at fp16; smaller for small stores, whose zero-padded last chunk would
    # dominate. Frames a chunk are page-aligned at one byte a value, so every encoding of a
    # store gets the same chunk frames (and pads the same frames: 8-bit bytes stay 0.5x fp16's)
    L, D = len(layers), up.spec.dim
    est = sum(up.num_frames(round(u.duration * up.spec.sample_rate)) for b in mine for u in b)
    target = min(CHUNK_BYTES, max(1 << 20, est * L * D * 2 // 16))  # bytes of an fp16 chunk
    aw = None
    writer = StoreWriter(cfg.out, fp, shard=(i, n), compressor=cfg.compress, scales=enc.scales,
                         chunk_frames=chunk_frames_for(L * D, target // 2))  # fmt: skip
    try:
        done = writer.done_ids
        todo = [b for b in mine if any(u.id not in done for u in b)]  # whole batches: same numbers
        res.already = sum(u.id in done for b in mine for u in b)
        total = sum(u.duration for b in todo for u in b if u.id not in done)
        aw = _AsyncWriter(writer, cfg.commit_seconds)
        prog, task = _progress(cfg.progress, total)
        sr, seconds = up.spec.sample_rate, 0.0
        with prog, ThreadPoolExecutor(max_workers=2, thread_name_prefix="audio") as pool:
            ahead: deque = deque(pool.submit(_load, b, sr) for b in todo[:3])
            for j in range(len(todo)):
                loaded = ahead.popleft().result()
                if j + 3 < len(todo):
                    ahead.append(pool.submit(_load, todo[j + 3], sr))
                if all(u.id in calibrated for u, _, _ in loaded):  # computed by the calibration
                    results = [(u.id, calibrated.pop(u.id)) for u, _, _ in loaded]
                    failed = []
                else:
                    results, failed = _run_batch(up, loaded, device, enc)
                results = [r for r in results if r[0] not in done]
                failed = [f for f in failed if f[0] not in done]
                res.warnings += duration_warnings(loaded, sr, done)
                aw.put((results, failed))
                res.written += len(results)
                res.failed += [{"id": u, "reason": r} for u, r in failed]
                seconds += sum(u.duration for u, _, _ in loaded if u.id not in done)
                el = time.monotonic() - t0
                prog.update(task, completed=seconds, hours=seconds / 3600,
                            rate=seconds / 3600 / el, rt=seconds / el)  # fmt: skip
        aw.finish()
        writer.close()
    except BaseException:
        if aw is not None:
            aw.abort()
        writer._release()  # keep what was committed; the same command resumes from there
        raise
    res.audio_seconds = seconds
    res.wall_seconds = time.monotonic() - t0
    return res


def _scales(cfg: ExtractConfig, up, batches, device: str, enc: Encoder, own: set[int]):
    """Scales (L, D) of an 8-bit store, and the encoded features of `own` calibration batches.

    A store that already holds scales (a resumed run, or another shard got there first) keeps
    them; else a calibration pass over `calibration_batches` computes them (absmax of the fp16
    states per layer and channel, pipeline/encoding.py).
    """
    import zarr

    if store_exists(cfg.out):
        root = zarr.open_group(str(cfg.out), mode="r")
        if "scales" in root:
            have = np.asarray(root["scales"][...], np.float32)
            if have.any():
                return have, {}
    picks = calibration_batches(batches, cfg.calib_seconds)
    fp16 = Encoder(enc.layers)
    acc = AbsMax(len(enc.layers) if enc.layers is not None else up.spec.num_layers, up.spec.dim)
    kept: dict[str, np.ndarray] = {}
    for b in picks:
        results, _ = _run_batch(up, _load(batches[b], up.spec.sample_rate), device, fp16)
        for uid, x in results:
            acc.update(x)
            if b in own:
                kept[uid] = x
    if acc.frames == 0:
        raise StoreError(
            f"{cfg.out}: the calibration sample of {len(picks)} batch(es) gave no usable "
            "utterance (all failed); check the audio (`pipeline data check`) or use --encoding fp16"
        )
    scales = scales_from_absmax(acc.absmax, enc.encoding)
    return scales, {uid: encode(x, scales, enc.encoding) for uid, x in kept.items()}


def _force(out: str, fp: dict, i: int, n: int) -> None:
    """--force: rebuild. A store for another request goes whole (only what the store format
    owns; a folder holding anything else is refused); else only this shard's part."""
    import zarr

    if not store_exists(out):
        remove_store(out)  # an interrupted creation's leftovers (or nothing)
        return
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    same = normalize_fingerprint(attrs.get("fingerprint", {})) == normalize_fingerprint(fp)
    if not same or attrs.get("num_parts") != n or n == 1:
        remove_store(out)
    else:
        remove_part(out, i, n)


def _run_shard(cfg: ExtractConfig, upstream=None) -> ExtractResult:
    """One shard on a Dask worker (module-level so that worker processes can import it)."""
    return run(cfg, upstream)


def cpu_shards(cfg: ExtractConfig) -> int:
    """How many single-threaded processes a CPU extraction should use: one per core (at most 4).

    One process with a thread per core is several times slower on this workload: Whisper in
    `trim` mode runs one clip per batch, whose small matrix products spend more time in thread
    hand-offs than in arithmetic, and any other busy process makes every hand-off wait (measured
    on 2 cores with one core busy: 90 clips took 68 s with 2 threads, 11.6 s with 1 thread and
    9.1 s as 2 single-threaded shards, values bit-identical)."""
    if cfg.threads or cfg.shard != (0, 1) or resolve_device(cfg.device) != "cpu":
        return 1
    return max(1, min(4, os.cpu_count() or 1))


DURATION_TOLERANCE = 0.5  # seconds (plus 5 %) a clip may differ from its manifest's duration


def duration_warnings(loaded: list, sr: int, done: set | frozenset = frozenset()) -> list[dict]:
    """[{id, reason}] for the decoded clips of a batch whose length disagrees with the manifest's
    duration by more than DURATION_TOLERANCE (+5 %): the store keeps the audio's frames, and
    training would refuse the manifest (pipeline/feed/run_inputs.py: check_agreement)."""
    out = []
    for u, wav, _ in loaded:
        if wav is None or u.id in done:
            continue
        seconds = len(wav) / sr
        if abs(seconds - float(u.duration)) > DURATION_TOLERANCE + 0.05 * float(u.duration):
            out.append({"id": u.id, "reason": f"the manifest says {float(u.duration):.2f} s, "
                        f"the audio is {seconds:.2f} s: fix the manifest's duration"})  # fmt: skip
    return out


def run_local_shards(cfg: ExtractConfig, n: int) -> ExtractResult:
    """All n shards of `cfg.out` at once as n single-threaded processes on this machine, merged
    into one result. The store is the one a single process writes (same batches, same values);
    a killed shard leaves its part to resume, as a killed single run does."""
    cfgs = [replace(cfg, shard=(i, n), threads=1, progress=False) for i in range(n)]
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_run_shard, cfgs))
    return ExtractResult(
        store=cfg.out,
        shard=(0, 1),
        written=sum(r.written for r in parts),
        already=sum(r.already for r in parts),
        failed=[f for r in parts for f in r.failed],
        warnings=[w for r in parts for w in r.warnings],
        audio_seconds=sum(r.audio_seconds for r in parts),
        wall_seconds=max(r.wall_seconds for r in parts),
    )


def run_cluster(cfg: ExtractConfig, cluster: str, upstream: Callable | None = None) -> list[ExtractResult]:  # fmt: skip
    """All shards on Dask: `local:N` (a LocalCluster of N processes; dask-cuda's LocalCUDACluster,
    one worker per GPU, for --device cuda when installed) or `tcp://HOST:PORT` (an existing
    scheduler; one shard per worker). Returns one result per shard."""
    from distributed import Client, LocalCluster

    cfg = replace(cfg, data=str(Path(cfg.data).resolve()), progress=False)
    if "://" not in cfg.out:
        cfg = replace(cfg, out=str(Path(cfg.out).resolve()))
    owned = None
    if cluster.startswith("local:"):
        n = int(cluster.split(":", 1)[1])
        cuda = cfg.device in ("cuda", "auto") and resolve_device(cfg.device) == "cuda"
        try:
            if not cuda:
                raise ImportError
            from dask_cuda import LocalCUDACluster

            owned = LocalCUDACluster(n_workers=n, threads_per_worker=1)
        except ImportError:
            threads = max(1, (os.cpu_count() or 1) // n)
            cfg = replace(cfg, threads=cfg.threads or threads)
            owned = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)  # fmt: skip
        client = Client(owned)
    elif cluster.startswith("tcp://"):
        client = Client(cluster)
        n = len(client.scheduler_info()["workers"])
    else:
        raise UserError(f"--cluster {cluster!r}: use local:N or tcp://HOST:PORT")
    try:
        if cfg.force:
            remove_store(cfg.out)
        cfg = replace(cfg, force=False)
        futs = client.map(_run_shard, [replace(cfg, shard=(i, n)) for i in range(n)], upstream=upstream, pure=False)  # fmt: skip
        return client.gather(futs)
    finally:
        client.close()
        if owned is not None:
            owned.close()
