"""Does lower cross-model layer similarity go with a larger fusion gain? (the honest check)

For every model pair: the CKA summary of `pipeline analyze similarity` (mean over both
directions of the mean best-match CKA), plain and with `--remove-position` (Whisper encoders
all add the same sinusoidal positional embedding, which alone makes a random-init Whisper look
like a real one frame by frame), the best single model (WS interface, the better of
the two; mean over seeds), the 2-model HConv fusion (mean over seeds), and the gain =
fusion - best single (signed so that positive is better, whatever the metric's direction).
Then the correlation of similarity with gain across the pairs (Pearson and Spearman; with a
handful of pairs this is a description, not a test).

Models: whisper_tiny_en and whisper_base (real weights) and, as controls, random-init
openai-whisper models of the same dimensions (`random_tiny_en`, `random_base`: the real
checkpoint's ModelDimensions, weights re-initialised by whisper's own constructor with a fixed
seed, saved as an openai-whisper checkpoint that `pipeline extract --model path.pt` reads).

Pairs: tiny.en+base, each real model with its same-shape random twin, and the cross pairs
(tiny.en+random_base, base+random_tiny_en), 5 in all.

    .venv/bin/python bench/fusion_vs_similarity.py --work /tmp/fvs --preset demo --task er --seeds 0,1,2

Everything lands under WORK (suite, models, cache, runs, similarity, fusion_vs_similarity.json)
and is reused when run again. Runs in-process, one torch thread by default (the heads are small;
on a shared 2-core machine extra threads only spin).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REAL = {"whisper_tiny_en": "random_tiny_en", "whisper_base": "random_base"}
PAIRS = [
    ("whisper_tiny_en", "whisper_base"),
    ("whisper_tiny_en", "random_tiny_en"),
    ("whisper_base", "random_base"),
    ("whisper_tiny_en", "random_base"),
    ("whisper_base", "random_tiny_en"),
]


def random_checkpoint(real: str, dest: Path, seed: int = 0) -> Path:
    """An openai-whisper checkpoint with `real`'s dimensions and freshly initialised weights."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    from pipeline.upstreams.ct2 import converted_checkpoint

    if dest.is_file():
        return dest
    ckpt = torch.load(converted_checkpoint(real), map_location="cpu", weights_only=True)
    dims = dict(ckpt["dims"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Whisper(ModelDimensions(**dims))
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims, "model_state_dict": model.state_dict()}, dest)
    return dest


def extract_all(models: dict[str, str], data: Path, cache: Path) -> None:
    """models: store name -> model source; writes cache/<name>.zarr (resumes, skips done)."""
    from pipeline.extract.engine import ExtractConfig, run

    for name, source in models.items():
        t0 = time.time()
        r = run(ExtractConfig(model=source, data=str(data), out=str(cache / f"{name}.zarr"),
                              device="cpu", whisper_mode="trim", progress=False))  # fmt: skip
        print(f"  extract {name}: {r.written} new, {r.already} done ({time.time() - t0:.0f} s)")


def train_run(interface: str, models: list[str], task: str, data: Path, cache: Path,
              out: Path, seed: int, steps: int | None) -> dict:  # fmt: skip
    """One `pipeline train` run in-process; returns {split: metrics record}."""
    from pipeline.train.config import resolve_config
    from pipeline.train.loop import train

    if not (out / "metrics.json").is_file():
        sets = [f"train.seed={seed}"] + ([f"train.steps={steps}"] if steps else [])
        cfg = resolve_config(interface=interface, models=",".join(models), task=task,
                             data=data, cache=cache, out=out, sets=sets, device="cpu")  # fmt: skip
        train(cfg, progress=False)
    recs = json.loads((out / "metrics.json").read_text())
    return {r["split"]: r for r in recs}


def similarity_summary(names: list[str], cache: Path, data: Path, out: Path,
                       max_frames: int, remove_position: bool) -> dict:  # fmt: skip
    """The CKA summary per pair (`pipeline analyze similarity`), reused from OUT when present."""
    from pipeline.analysis.similarity import layer_similarity, write_similarity
    from pipeline.data.manifest import read_manifests
    from pipeline.store import open_store

    js = out / "similarity.json"
    if js.is_file():
        doc = json.loads(js.read_text())
        if doc.get("max_frames") == max_frames and doc["models"] == names:
            return doc["summary"]
    readers = [open_store(cache / f"{n}.zarr") for n in names]
    ids = [u.id for u in read_manifests(data)]
    t0 = time.time()
    sim = layer_similarity(
        readers, names, ids, max_frames=max_frames, remove_position=remove_position
    )
    doc = write_similarity(sim, out)
    doc["max_frames"] = max_frames
    js.write_text(json.dumps(doc, indent=2) + "\n")
    print(
        f"CKA (remove_position={remove_position}) over {sim.frames} frames: {time.time() - t0:.0f} s"
    )
    return sim.summary


def spearman(x: list[float], y: list[float]) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--preset", default="tiny", help="built-in suite preset: tiny | demo")
    ap.add_argument("--data", type=Path, help="an existing task data dir instead of synthesizing")
    ap.add_argument("--task", default="er")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, help="training steps (default: the task's default)")
    ap.add_argument("--split", default="test", help="split whose metric is compared")
    ap.add_argument("--max-frames", type=int, default=20000, help="frames for the CKA")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    work, task = args.work, args.task
    data = args.data or work / "suite" / task
    if not (data / "train.jsonl").is_file():
        from pipeline.data.synth import synthesize

        print(f"synthesizing the {args.preset} suite into {work / 'suite'}")
        synthesize(work / "suite", preset=args.preset, seed=0)
    sources = dict(zip(REAL, REAL, strict=True))
    for real, rnd in REAL.items():
        sources[rnd] = str(random_checkpoint(real, work / "models" / f"{rnd}.pt"))
    cache = work / "cache" / task
    print("stage one (trim mode):")
    extract_all(sources, data, cache)

    names = list(sources)
    summaries = {}
    for remove_position in (False, True):
        summaries[remove_position] = similarity_summary(
            names, cache, data, work / "similarity" / (task + ("_nopos" if remove_position else "")),
            args.max_frames, remove_position,
        )  # fmt: skip

    seeds = [int(s) for s in args.seeds.split(",")]
    runs = work / "runs" / task
    single: dict[str, list[float]] = {}
    direction = "higher"
    for n in names:
        vals = []
        for s in seeds:
            r = train_run("ws", [n], task, data, cache, runs / f"ws_{n}_s{s}", s, args.steps)
            vals.append(r[args.split]["value"])
            direction = r[args.split]["direction"]
        single[n] = vals
        print(f"  ws {n}: {np.mean(vals):.4f} ± {np.std(vals):.4f} {vals}")
    sign = 1.0 if direction == "higher" else -1.0
    rows = []
    for a, b in PAIRS:
        vals = []
        for s in seeds:
            r = train_run(
                "hconv", [a, b], task, data, cache, runs / f"hconv_{a}+{b}_s{s}", s, args.steps
            )
            vals.append(r[args.split]["value"])
        key = f"{a}|{b}" if f"{a}|{b}" in summaries[False] else f"{b}|{a}"
        best = max((a, b), key=lambda m: sign * np.mean(single[m]))
        fused = float(np.mean(vals))
        rows.append({"a": a, "b": b, "cka_mean": summaries[False][key]["mean"],
                     "cka_nopos_mean": summaries[True][key]["mean"],
                     "best_single": best, "best_single_value": float(np.mean(single[best])),
                     "fusion": fused, "fusion_seeds": vals,
                     "gain": sign * (fused - float(np.mean(single[best])))})  # fmt: skip
    metric = r[args.split]["metric"]
    print(f"\n{task} {metric} on {args.split} ({direction} is better), seeds {seeds}:\n")
    print("| pair | CKA summary | CKA, position removed | best single (WS) | HConv fusion | gain |")
    print("|---|---|---|---|---|---|")
    for w in rows:
        print(f"| {w['a']} + {w['b']} | {w['cka_mean']:.3f} | {w['cka_nopos_mean']:.3f} "
              f"| {w['best_single']} {w['best_single_value']:.3f} | {w['fusion']:.3f} | {w['gain']:+.3f} |")  # fmt: skip
    y = [w["gain"] for w in rows]
    corr = {}
    for col in ("cka_mean", "cka_nopos_mean"):
        x = [w[col] for w in rows]
        corr[col] = {"pearson": float(np.corrcoef(x, y)[0, 1]), "spearman": spearman(x, y)}
        print(f"across {len(rows)} pairs, {col} vs gain: Pearson r = {corr[col]['pearson']:+.2f}, "
              f"Spearman rho = {corr[col]['spearman']:+.2f} (negative = less similar pairs gain more)")  # fmt: skip
    out = {"task": task, "metric": metric, "direction": direction, "split": args.split,
           "seeds": seeds, "steps": args.steps, "data": str(data), "max_frames": args.max_frames,
           "single_ws": single, "pairs": rows, "correlations": corr}  # fmt: skip
    (work / "fusion_vs_similarity.json").write_text(json.dumps(out, indent=2) + "\n")
    print(work / "fusion_vs_similarity.json")


if __name__ == "__main__":
    main()
