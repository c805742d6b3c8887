"""Epoch time with the upstream run on the fly ÷ epoch time from the cache (goals:
≥ 10 for an ER head, ≥ 1.5 for an ASR head).

Usage: .venv/bin/python bench/bench_epoch.py [--utts 16] [--seconds 3,5] [--batch 8]
       [--interface ws] [--asr-hidden 1024] [--repeats 2] [--device cpu|cuda] [--threads N]

A base-sized WavLM with random weights (pipeline.upstreams.hf.base_sized_random_hf: 13 × 768,
the real architecture and speed) runs once over --utts noise clips to write a store; then one
training epoch (the same length-bucketed batches, forward + backward + AdamW through the
engine's own step, pipeline.train.loop.Trainer) is timed both ways:

- cache: features read from the store by pipeline.feed.loader (tier auto) and cast on the device;
- on the fly: the upstream runs inside the step on the audio under torch.no_grad (s3prl's way).

Heads: ER (SUPERB: Linear→256, mean pool, Linear→4) and ASR (pipeline.tasks.asr, SUPERB size
by default: Linear→1024, 2 × BiLSTM-1024, CTC). Each pair of epochs is interleaved and the
ratio is the median over --repeats pairs (steadier on a shared machine), after a warm-up batch.
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
from pipeline.data.manifest import Utterance, write_manifest
from pipeline.store import StoreWriter, make_fingerprint, manifest_hash
from pipeline.train.config import resolve_config
from pipeline.train.feed import build_setup, iter_batches
from pipeline.train.loop import Trainer, reseed
from pipeline.upstreams.hf import base_sized_random_hf

WORDS = ["HELLO", "WORLD", "SPEECH", "MODEL", "LAYER", "FUSION", "CACHE", "STORE"]


def make_data(root: Path, n: int, seconds: tuple[float, float], seed: int = 0) -> list[Utterance]:
    """Noise clips with an emotion label and a transcript, as train/dev/test manifests."""
    rng = np.random.default_rng(seed)
    utts = []
    for i in range(n):
        dur = float(rng.uniform(*seconds))
        path = write_wav(
            root / "wav" / f"u{i:03d}.wav",
            (0.1 * rng.standard_normal(int(dur * 16000))).astype(np.float32),
        )
        text = " ".join(rng.choice(WORDS, size=3))
        emo = ["neu", "hap", "ang", "sad"][i % 4]
        utts.append(Utterance(f"u{i:03d}", str(path), dur, 16000, "train", text=text, emotion=emo))
    for split in ("train", "dev", "test"):
        write_manifest(
            root / "data" / f"{split}.jsonl", [dataclasses.replace(u, split=split) for u in utts]
        )
    return utts


def write_store(up, utts: list[Utterance], path: Path, device: torch.device) -> float:
    """Run the upstream over every clip (one at a time: no padding effects) into a store."""
    from pipeline.audio import load_audio

    fp = make_fingerprint(up.spec, up.weights_hash(), None, manifest_hash(utts))
    t0 = time.perf_counter()
    with StoreWriter(path, fp) as w, torch.no_grad():
        for u in utts:
            wav = torch.from_numpy(load_audio(u.path))[None].to(device)
            (states,) = up.forward(wav, torch.tensor([wav.shape[1]], device=device))  # (L, T, D)
            w.append(u.id, states.transpose(0, 1).half().cpu().numpy())  # (T, L, D)
    return time.perf_counter() - t0


def epoch_seconds(trainer: Trainer, setup, epoch: int) -> float:
    """One training epoch (every batch once) through the engine's step; returns seconds."""
    batches = iter_batches(setup, setup.splits["train"], shuffle=True, epoch=epoch)
    _sync(setup.device)
    t0 = time.perf_counter()
    try:
        while True:
            trainer._train_step(batches)
    except StopIteration:
        pass
    _sync(setup.device)
    return time.perf_counter() - t0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_task(task: str, task_args: list[str], args, root: Path, up) -> tuple[float, float, float]:
    sets = [
        f"train.batch_size={args.batch}",
        "train.steps=1000000",
        "train.eval_every=1000000",
        *task_args,
    ]
    cfg = resolve_config(
        interface=args.interface, models="wavlm_rand", task=task, data=root / "data", cache=root / "cache",
        out=root / f"run-{task}", sets=sets, device=args.device,
    )  # fmt: skip
    cfg.train.tier = args.tier
    reseed(0, "init")
    cached = build_setup(cfg, splits=["train"])
    fly_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, features="onthefly"))
    fly = dataclasses.replace(cached, cfg=fly_cfg, sources=[up])
    trainer_c, trainer_f = Trainer(cfg, cached), Trainer(fly_cfg, fly)
    # warm-up: one step each (page cache, allocator, lazy init)
    trainer_c._train_step(iter_batches(cached, cached.splits["train"], True, 99))
    trainer_f._train_step(iter_batches(fly, fly.splits["train"], True, 99))
    ratios, tc, tf = [], [], []
    for r in range(args.repeats):
        c = epoch_seconds(trainer_c, cached, r)
        f = epoch_seconds(trainer_f, fly, r)
        tc.append(c)
        tf.append(f)
        ratios.append(f / c)
    return statistics.median(ratios), min(tc), min(tf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--utts", type=int, default=16)
    ap.add_argument("--seconds", default="3,5", help="min,max clip length")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--interface", default="ws")
    ap.add_argument("--asr-hidden", type=int, default=1024, help="ASR head width (SUPERB 1024)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tier", default="auto", help="loader tier for the cached epochs")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    )
    args.device = str(device)
    lo, hi = (float(x) for x in args.seconds.split(","))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        utts = make_data(root, args.utts, (lo, hi))
        up = base_sized_random_hf("wavlm", device=str(device))
        secs = write_store(up, utts, root / "cache" / "wavlm_rand.zarr", device)
        audio = sum(u.duration for u in utts)
        print(
            f"device {device}, torch threads {torch.get_num_threads()}, interface {args.interface}"
        )
        print(
            f"{args.utts} clips, {audio:.0f} s of audio, batch {args.batch}; store written in {secs:.1f} s"
        )
        h = args.asr_hidden
        rows = [
            ("er", "er", [], 10.0),
            (
                "asr",
                "asr",
                [f"task_args.proj={h}", f"task_args.hidden={h}", "task_args.layers=2"],
                1.5,
            ),
        ]
        for label, task, extra, goal in rows:
            ratio, c, f = bench_task(task, extra, args, root, up)
            ok = "meets" if ratio >= goal else "below"
            print(
                f"{label:4s} epoch: cache {c:7.2f} s, on the fly {f:7.2f} s -> ratio {ratio:6.2f} (goal >= {goal:g}: {ok})"
            )


if __name__ == "__main__":
    main()
