"""K packed runs (one pass over the cache) vs the same K runs one after the other.

Usage: .venv/bin/python bench/bench_pack.py [--tasks er,asr] [--utts 48] [--layers 13]
       [--dim 256] [--er-steps 40] [--asr-steps 20] [--batch 8] [--device cpu|cuda] [--threads 1]
       [--light]

Synthetic stores (two upstreams of L x D fp16 hidden states, 1-3 s utterances at 50 Hz, the same
frame counts, so every run packs) feed K = 8 runs of one table column: ws, hconv, gumd, chconv
over both stores and ws, hconv over each store alone (--light: 8 ws runs over both stores at 8
learning rates, the light-head case where the feed dominates). For each task the 8 runs are trained
with `pipeline.train.loop.train` one after the other, then together with `pipeline.train.pack.train_packed`,
in the same process; the ratios packed / sequential of wall time and of this process's CPU
time (steadier on a shared machine) are printed (goal on a GPU: 8 light-head runs
packed in <= 2x the time of one, i.e. ratio <= 0.25). On CPU the metrics of both ways are also
checked to be identical (bit-identical runs); on a GPU they may differ by kernel rounding.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.data.manifest import Utterance, write_manifest
from pipeline.store import StoreWriter, make_fingerprint, manifest_hash
from pipeline.train.config import resolve_config
from pipeline.train.loop import train
from pipeline.train.pack import pack_groups, train_packed
from pipeline.upstreams.base import UpstreamSpec

WORDS = ["HELLO", "WORLD", "SPEECH", "MODEL", "LAYER", "FUSION", "CACHE", "STORE"]
RUNS = [("ws", "a,b"), ("hconv", "a,b"), ("gumd", "a,b"), ("chconv", "a,b"),
        ("ws", "a"), ("ws", "b"), ("hconv", "a"), ("hconv", "b")]  # fmt: skip
HEADS = {
    "er": ["task_args.hidden=64"],
    "asr": ["task_args.proj=64", "task_args.hidden=64", "task_args.layers=1"],
}


def make_suite(root: Path, n: int, layers: int, dim: int, seed: int = 0) -> tuple[Path, Path]:
    """data/{train,dev,test}.jsonl (n, n/4, n/4 utterances) and cache/{a,b}.zarr under root."""
    rng = np.random.default_rng(seed)
    utts = []
    for split, count in {"train": n, "dev": max(4, n // 4), "test": max(4, n // 4)}.items():
        split_utts = []
        for i in range(count):
            frames = int(rng.integers(50, 150))
            text = " ".join(rng.choice(WORDS, size=3))
            emo = ["neu", "hap", "ang", "sad"][i % 4]
            split_utts.append(Utterance(f"{split}{i:03d}", f"{split}{i:03d}.wav", frames / 50, 16000, split, text=text, emotion=emo))  # fmt: skip
        write_manifest(root / "data" / f"{split}.jsonl", split_utts)
        utts += split_utts
    for m in ("a", "b"):
        fp = make_fingerprint(UpstreamSpec(m, "hf", "synthetic", 16000, 50.0, layers, dim), "0", None, manifest_hash(utts))  # fmt: skip
        with StoreWriter(root / "cache" / f"{m}.zarr", fp) as w:
            for u in utts:
                frames = round(u.duration * 50)
                w.append(u.id, rng.normal(size=(frames, layers, dim)).astype(np.float16))
    return root / "data", root / "cache"


def configs(task: str, data: Path, cache: Path, out: Path, args: argparse.Namespace) -> list:
    """The K = 8 runs: the table column (RUNS), or with --light 8 ws runs at 8 learning rates."""
    steps = args.er_steps if task == "er" else args.asr_steps
    sets = [f"train.steps={steps}", f"train.eval_every={steps}", f"train.batch_size={args.batch}",
            f"train.threads={args.threads}", *HEADS[task]]  # fmt: skip
    runs = [("ws", "a,b", f"train.lr={1e-3 * (k + 1)}") for k in range(8)] if args.light else [(i, m, "") for i, m in RUNS]  # fmt: skip
    return [resolve_config(interface=i, models=m, task=task, data=data, cache=cache,
                           out=out / f"{k}-{i}-{m.replace(',', '')}", sets=[*sets, lr] if lr else sets,
                           device=args.device)
            for k, (i, m, lr) in enumerate(runs)]  # fmt: skip


def metrics(run_dirs: list[Path]) -> list:
    return [json.loads((d / "metrics.json").read_text()) for d in run_dirs]


def bench(task: str, data: Path, cache: Path, root: Path, args: argparse.Namespace) -> dict:
    seq_cfgs = configs(task, data, cache, root / task / "sequential", args)
    pack_cfgs = configs(task, data, cache, root / task / "packed", args)
    groups = pack_groups(pack_cfgs)
    assert len(groups) == 1, f"expected one pack group, got {[len(g) for g in groups]}"
    t0, c0 = time.perf_counter(), time.process_time()
    seq = [train(c, progress=False) for c in seq_cfgs]
    t_seq, c_seq = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    packed = train_packed(pack_cfgs, progress=False)
    t_pack, c_pack = time.perf_counter() - t0, time.process_time() - c0
    same = metrics(seq) == metrics(packed)
    return {"task": task, "runs": len(RUNS), "sequential_s": t_seq, "packed_s": t_pack,
            "ratio": t_pack / t_seq, "cpu_ratio": c_pack / c_seq, "packed_over_one_run": t_pack / (t_seq / len(RUNS)),
            "identical_metrics": same}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="er,asr")
    ap.add_argument("--utts", type=int, default=48)
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--er-steps", type=int, default=40)
    ap.add_argument("--asr-steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--light", action="store_true", help="8 ws runs (lr 1e-3..8e-3) instead of the table column"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data, cache = make_suite(root, args.utts, args.layers, args.dim)
        # warm-up: imports, kernels and the page cache, outside the timings
        train(configs("er", data, cache, root / "warm", args)[0], progress=False)
        print(f"runs: {'8 x ws (8 learning rates)' if args.light else RUNS}")
        print(f"device {args.device}, torch threads {torch.get_num_threads()}, "
              f"{args.utts} train utterances, stores 2 x ({args.layers} x {args.dim}) fp16")  # fmt: skip
        for task in args.tasks.split(","):
            r = bench(task, data, cache, root, args)
            print(f"{task}: {r['runs']} runs sequential {r['sequential_s']:.1f} s, packed "
                  f"{r['packed_s']:.1f} s -> packed / sequential = {r['ratio']:.2f}, packed / one "
                  f"run = {r['packed_over_one_run']:.2f}; process CPU time packed / sequential = "
                  f"{r['cpu_ratio']:.2f}; identical metrics: {r['identical_metrics']}")  # fmt: skip


if __name__ == "__main__":
    main()
