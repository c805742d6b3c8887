"""Stage-one benchmark: `pipeline extract` against its two limits, measured in one run.

    python bench/bench_extract.py [--model whisper_tiny_en] [--device cpu|cuda] [--clips 24]

Prints three ratios (and the goal for each):
  extract ÷ max(bare forward, plain write)   wall time of pipeline.extract.engine.run on a manifest, over
                                             the larger of (a) the bare model forward on the same
                                             audio already in memory, same batches, fp16 copy to
                                             host, and (b) numpy tofile + fsync of the same bytes
                                             to the same disk (goal <= 1.15)
  Whisper trim ÷ pad30                       bare forward time on <= 10 s clips (goal: trim at
                                             least 2.5x faster), Whisper models only
  store bytes ÷ raw fp16 bytes               the store on disk over T*L*D*2 summed
Model loading is outside every timing. Each time is the best of --repeats runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.audio import load_audio, write_wav
from pipeline.data.manifest import Utterance, write_manifest
from pipeline.device import resolve_device
from pipeline.extract.engine import ExtractConfig, _forward, make_batches, run


def make_clips(root: Path, n: int, max_s: float, seed: int = 0) -> list[Utterance]:
    """n clips of 2..max_s seconds: a few harmonics with a wandering pitch, plus noise."""
    rng = np.random.default_rng(seed)
    utts = []
    for i in range(n):
        dur = float(rng.uniform(2.0, max_s))
        t = np.arange(int(dur * 16000)) / 16000
        f0 = 120 + 40 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t)
        ph = 2 * np.pi * np.cumsum(f0) / 16000
        wav = sum(np.sin(k * ph) / k for k in range(1, 6)) * 0.1 + 0.005 * rng.standard_normal(len(t))  # fmt: skip
        p = write_wav(root / f"c{i:03d}.wav", wav.astype(np.float32))
        utts.append(Utterance(f"c{i:03d}", str(p.resolve()), len(t) / 16000, 16000, "test"))
    write_manifest(root / "test.jsonl", utts)
    return utts


def bare_forward(up, utts, mode: str, batch_seconds: float, device: str) -> tuple[float, int]:
    """Seconds for the forward of every batch (audio in memory); returns (time, feature bytes)."""
    wav = {u.id: load_audio(u.path) for u in utts}
    batches = make_batches(utts, up, mode, batch_seconds, 64)
    _forward(up, [wav[u.id] for u in batches[0]], device)  # warm-up
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t = time.perf_counter()
    nbytes = 0
    for b in batches:
        groups: dict[int, list] = {}
        for u in b:  # pad-sensitive upstreams: equal lengths only, as extraction does
            groups.setdefault(len(wav[u.id]) if up.pad_sensitive else 0, []).append(wav[u.id])
        for g in groups.values():
            nbytes += sum(f.numel() * 2 for f in _forward(up, g, device))
    sync()
    return time.perf_counter() - t, nbytes


def plain_write(path: Path, nbytes: int) -> float:
    """numpy tofile of nbytes in 8 MiB pieces + fsync: the disk's sequential write limit."""
    piece = np.random.default_rng(0).standard_normal(4 << 20).astype(np.float16)
    t = time.perf_counter()
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            piece[: min(left, piece.nbytes) // 2].tofile(f)
            left -= piece.nbytes
        f.flush()
        os.fsync(f.fileno())
    dt = time.perf_counter() - t
    path.unlink()
    return dt


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="whisper_tiny_en")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--whisper-mode", default="pad30", help="mode of the extract ratio")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--max-seconds", type=float, default=10.0)
    ap.add_argument("--batch-seconds", type=float, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mode-repeats", type=int, default=3, help="interleaved pad30/trim rounds")
    ap.add_argument("--dir", default=None, help="where the data and stores go (the disk measured)")
    a = ap.parse_args()
    from pipeline.upstreams.registry import load_upstream

    device = resolve_device(a.device)
    bs = a.batch_seconds or (400.0 if device.startswith("cuda") else 40.0)
    root = Path(tempfile.mkdtemp(prefix="bench_extract_", dir=a.dir))
    try:
        utts = make_clips(root, a.clips, a.max_seconds)
        audio_s = sum(u.duration for u in utts)
        t = time.perf_counter()
        up = load_upstream(a.model, device=device, whisper_mode=a.whisper_mode)
        print(f"{a.model} on {device}: loaded in {time.perf_counter() - t:.1f} s; "
              f"{len(utts)} clips, {audio_s:.0f} s of audio; batch {bs:g} s")  # fmt: skip
        fwd, wr, ext, nbytes, store_bytes = [], [], [], 0, 0
        for r in range(a.repeats):
            f, nbytes = bare_forward(up, utts, a.whisper_mode, bs, device)
            fwd.append(f)
            wr.append(plain_write(root / "plain.bin", nbytes))
            out = root / f"s{r}.zarr"
            cfg = ExtractConfig(model=a.model, data=str(root), out=str(out), device=device,
                                whisper_mode=a.whisper_mode, batch_seconds=bs, progress=False)  # fmt: skip
            t = time.perf_counter()
            run(cfg, upstream=up)
            ext.append(time.perf_counter() - t)
            store_bytes = dir_bytes(out)
            shutil.rmtree(out)
        f, w, e = min(fwd), min(wr), min(ext)
        print(f"bare forward {f:.3f} s ({audio_s / f:.0f} audio-s/s), plain write of "
              f"{nbytes / 1e6:.1f} MB {w:.3f} s ({nbytes / w / 1e6:.0f} MB/s), extract {e:.3f} s")  # fmt: skip
        print(f"RATIO extract ÷ max(forward, write) = {e / max(f, w):.3f}   (goal <= 1.15)")
        print(f"RATIO store bytes ÷ raw fp16 bytes = {store_bytes / nbytes:.3f}")
        if up.spec.family == "whisper":
            other = load_upstream(a.model, device=device, whisper_mode="trim" if a.whisper_mode == "pad30" else "pad30")  # fmt: skip
            ups = {a.whisper_mode: up, other_mode(a.whisper_mode): other}
            runs: dict[str, list[float]] = {m: [] for m in ups}
            for _ in range(a.mode_repeats):  # interleaved: a shared machine's load drifts
                for m, u in ups.items():
                    runs[m].append(bare_forward(u, utts, m, bs, device)[0])
            times = {m: min(v) for m, v in runs.items()}
            print(f"bare forward pad30 {times['pad30']:.3f} s, trim {times['trim']:.3f} s "
                  f"(clips <= {a.max_seconds:g} s)")  # fmt: skip
            print(f"RATIO Whisper pad30 ÷ trim time = {times['pad30'] / times['trim']:.2f}× faster with trim   (goal >= 2.5)")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


def other_mode(mode: str) -> str:
    return "trim" if mode == "pad30" else "pad30"


if __name__ == "__main__":
    main()
