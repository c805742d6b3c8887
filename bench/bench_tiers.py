"""Stage one and stage two per store encoding and loader tier, ratios in one run.

Usage: .venv/bin/python bench/bench_tiers.py [--utts 16] [--seconds 3,5] [--batch 8]
       [--encodings fp16,int8,fp8] [--tiers mmap,pinned] [--repeats 2] [--extract-rounds 1]
       [--asr-hidden 1024] [--device cpu|cuda] [--threads N] [--dir DIR]

A base-sized WavLM with random weights (13 × 768, the real architecture and speed) and noise
clips with a label and a transcript, as in bench/bench_epoch.py. Printed:

1. Extraction: `pipeline.extract.engine.run` (= `pipeline extract`) wall time with --encoding fp16, int8
   and fp8 into stores on the same disk, rounds interleaved; the ratio fp16 ÷ 8-bit (best of the
   rounds) and each store's bytes ÷ fp16's.
2. Stage two: one training epoch through the engine's own step (pipeline.train.loop.Trainer, the same
   length-bucketed batches, forward + backward + AdamW) from each store, for every loader tier
   (--tiers; add gpu on CUDA) and encoding, and with the upstream run on the fly inside the
   step; for an ER head (SUPERB: Linear→256, mean pool, Linear→4) and an ASR head (SUPERB size
   by default: 2 × BiLSTM-1024, CTC). Printed per row: epoch seconds (best of --repeats), the
   ratio on-the-fly ÷ cached (median over the interleaved repeats; the goals ER ≥ 10,
   ASR ≥ 1.5), and ÷ the fp16 epoch of the same tier.

On the GPU (`--device cuda --tiers gpu,pinned,mmap`) the 8-bit stores ship half the bytes and
are decoded on the device (pipeline/feed/loader.py); on this CPU the decode is a host multiply.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.audio import write_wav
from pipeline.cli.cache import store_info, verify_store
from pipeline.data.manifest import Utterance, write_manifest
from pipeline.extract.engine import ExtractConfig, run
from pipeline.train.config import resolve_config
from pipeline.train.feed import build_setup, iter_batches
from pipeline.train.loop import Trainer, reseed
from pipeline.upstreams.hf import base_sized_random_hf

WORDS = ["HELLO", "WORLD", "SPEECH", "MODEL", "LAYER", "FUSION", "CACHE", "STORE"]


def make_data(root: Path, n: int, seconds: tuple[float, float], seed: int = 0) -> Path:
    """Noise clips with an emotion and a transcript, as train/dev/test manifests in root/data."""
    rng = np.random.default_rng(seed)
    utts = []
    for i in range(n):
        dur = round(float(rng.uniform(*seconds)), 3)
        wav = (0.1 * rng.standard_normal(int(dur * 16000))).astype(np.float32)
        path = write_wav(root / "wav" / f"u{i:03d}.wav", wav)
        text = " ".join(rng.choice(WORDS, size=3))
        emo = ["neu", "hap", "ang", "sad"][i % 4]
        utts.append(Utterance(f"u{i:03d}", str(path), dur, 16000, "train", text=text, emotion=emo))
    for split in ("train", "dev", "test"):
        rows = [dataclasses.replace(u, split=split) for u in utts]
        write_manifest(root / "data" / f"{split}.jsonl", rows)
    return root / "data"


def bench_extract(args, up, data: Path, root: Path) -> dict[str, Path]:
    """Extract a store per encoding, rounds interleaved; prints times and ratios."""
    times: dict[str, list[float]] = {e: [] for e in args.encodings}
    paths = {e: root / "cache" / f"{e}.zarr" for e in args.encodings}
    for r in range(args.extract_rounds):
        for enc in args.encodings if r % 2 == 0 else args.encodings[::-1]:
            cfg = ExtractConfig(model="wavlm_rand", data=str(data / "train.jsonl"), out=str(paths[enc]),
                                device=args.device, progress=False, encoding=enc, force=True)  # fmt: skip
            _sync(args.device)
            t0 = time.perf_counter()
            run(cfg, upstream=up)
            _sync(args.device)
            times[enc].append(time.perf_counter() - t0)
    info = {e: store_info(str(p)) for e, p in paths.items()}
    for p in paths.values():
        probs = verify_store(str(p))
        assert not probs, f"pipeline cache verify failed on {p}: {probs}"
    base = min(times["fp16"])
    print(
        "\nstage one (pipeline extract) on the same disk, best of", args.extract_rounds, "round(s):"
    )
    for e in args.encodings:
        t = min(times[e])
        b = info[e]["bytes_on_disk"] / info["fp16"]["bytes_on_disk"]
        a = info[e]["bytes_arrays"] / info["fp16"]["bytes_arrays"]
        print(f"  {e:5s} {t:7.2f} s   fp16 ÷ {e} time {base / t:5.2f}   bytes ÷ fp16: arrays {a:.3f}, disk {b:.3f}")  # fmt: skip
    return paths


def epoch_seconds(trainer: Trainer, setup, epoch: int, device: str) -> float:
    """One training epoch (every batch once) through the engine's step; returns seconds."""
    batches = iter_batches(setup, setup.splits["train"], shuffle=True, epoch=epoch)
    _sync(device)
    t0 = time.perf_counter()
    try:
        while True:
            trainer._train_step(batches)
    except StopIteration:
        pass
    _sync(device)
    return time.perf_counter() - t0


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def bench_task(args, task: str, extra: list[str], data: Path, paths: dict[str, Path], up, root: Path) -> None:  # fmt: skip
    sets = [f"train.batch_size={args.batch}", "train.steps=1000000", "train.eval_every=1000000", *extra]  # fmt: skip
    trainers = {}
    for tier in args.tiers:
        for enc in args.encodings:
            cfg = resolve_config(interface="ws", models="wavlm_rand", task=task, data=data, cache="",
                                 stores=[str(paths[enc])], out=root / f"run-{task}-{tier}-{enc}",
                                 sets=[*sets, f"train.tier={tier}"], device=args.device)  # fmt: skip
            reseed(0, "init")
            setup = build_setup(cfg, splits=["train"])
            trainers[(tier, enc)] = (Trainer(cfg, setup), setup)
    cfg0 = trainers[(args.tiers[0], "fp16")][0].cfg
    fly_cfg = dataclasses.replace(cfg0, train=dataclasses.replace(cfg0.train, features="onthefly"))
    reseed(0, "init")  # the cache setup's head and interface, fed by the upstream instead
    fly_setup = dataclasses.replace(build_setup(cfg0, splits=["train"]), cfg=fly_cfg, sources=[up])
    fly = (Trainer(fly_cfg, fly_setup), fly_setup)
    for tr, su in [*trainers.values(), fly]:  # warm-up: page cache, allocator, preloading tiers
        tr._train_step(iter_batches(su, su.splits["train"], True, 99))
    times = {k: [] for k in trainers}
    fly_times = []
    for r in range(args.repeats):
        fly_times.append(epoch_seconds(*fly, r, args.device))
        for k, (tr, su) in trainers.items():
            times[k].append(epoch_seconds(tr, su, r, args.device))
    print(f"\n{task} head, epoch of {len(fly_setup.splits['train'])} clips: on the fly {min(fly_times):.2f} s")  # fmt: skip
    print("  tier    encoding  epoch s   on-the-fly ÷ cached   ÷ fp16 epoch (same tier)")
    for (tier, enc), ts in times.items():
        ratio = statistics.median(f / c for f, c in zip(fly_times, ts, strict=True))
        rel = statistics.median(c / c16 for c, c16 in zip(ts, times[(tier, "fp16")], strict=True))
        loader = next(iter(trainers[(tier, enc)][1]._loaders.values()))[1]
        assert loader.tier == tier, (loader.tier, tier)
        print(f"  {tier:7s} {enc:8s} {min(ts):7.2f}   {ratio:8.1f}              {rel:5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--utts", type=int, default=16)
    ap.add_argument("--seconds", default="3,5", help="min,max clip length")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--encodings", default="fp16,int8,fp8")
    ap.add_argument(
        "--tiers", default=None, help="default: mmap,pinned (CPU), gpu,pinned,mmap (CUDA)"
    )
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--extract-rounds", type=int, default=1)
    ap.add_argument("--asr-hidden", type=int, default=1024, help="ASR head width (SUPERB 1024)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.encodings = args.encodings.split(",")
    if "fp16" not in args.encodings:
        args.encodings.insert(0, "fp16")
    cuda = args.device.startswith("cuda")
    args.tiers = (args.tiers or ("gpu,pinned,mmap" if cuda else "mmap,pinned")).split(",")
    lo, hi = (float(x) for x in args.seconds.split(","))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        data = make_data(root, args.utts, (lo, hi))
        up = base_sized_random_hf("wavlm", device=args.device)
        audio = args.utts * (lo + hi) / 2
        print(f"device {args.device}, torch threads {torch.get_num_threads()}; {args.utts} clips (~{audio:.0f} s), batch {args.batch}")  # fmt: skip
        paths = bench_extract(args, up, data, root)
        h = args.asr_hidden
        bench_task(args, "er", [], data, paths, up, root)
        bench_task(args, "asr", [f"task_args.proj={h}", f"task_args.hidden={h}", "task_args.layers=2"], data, paths, up, root)  # fmt: skip


if __name__ == "__main__":
    main()
