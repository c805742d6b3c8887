"""What makes a training step cheaper, and when dev stops improving: one run per lever.

Each case trains one real run (`pipeline train`, one thread, as one slot of the grid) on the
built-in suite's stores, evaluates dev every `--eval-every` steps, and reports:

- ms/step: the training time per optimizer step (the run log's `time`, dev evaluation excluded);
- ratio: that against the column's baseline case, measured in the same invocation;
- best step: the step of the best dev value;
- plateau step: the first evaluation within 2 % (relative) of the best dev value, i.e. where
  dev stops improving by more than the report's convergence threshold;
- dev and test: the best checkpoint's metric.

    python bench/bench_levers.py --data data/demo --cache cache/demo [--column asr_en ...]

Needs the suite's stores (`dvc repro` or `bash scripts/repro.sh` makes them). Takes minutes per
case on a CPU; `--steps` and `--column` shorten it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# column -> (task, models, interface, baseline settings, {lever: extra settings})
BASE = {
    "asr_en": ("asr_en", "whisper_base", "ws",
               ["train.lr=3e-3", "task_args.layers=1", "task_args.hidden=256",
                "task_args.proj=256", "task_args.metric=cer"],
               {"linear head": ["task_args.layers=0", "train.lr=1e-2"],
                "linear head, 4-frame stack": ["task_args.layers=0", "task_args.downsample=4",
                                               "train.lr=1e-2"],
                "bf16 autocast": ["train.autocast=bf16"],
                "2 threads": ["train.threads=2"]}),
    "ml_asr": ("ml_asr", "whisper_base", "ws", [],
               {"linear head": ["task_args.blocks=0", "task_args.downsample=2", "train.lr=1e-2",
                                "task_args.specaug=false"],
                "bf16 autocast": ["train.autocast=bf16"]}),
    "sv": ("sv", "whisper_base", "ws", [],
           {"crop 1.5 s": ["train.crop_s=1.5"], "bf16 autocast": ["train.autocast=bf16"]}),
    "er": ("er", "whisper_base", "ws", [],
           {"crop 1.5 s": ["train.crop_s=1.5"], "bf16 autocast": ["train.autocast=bf16"]}),
}  # fmt: skip
HCONV = {"asr_en": "hconv", "ml_asr": "hconv", "sv": "hconv", "er": "hconv"}


def run_case(column: str, iface: str, sets: list[str], args, out: Path) -> dict:
    task, models, _, _, _ = BASE[column]
    cmd = [sys.executable, "-m", "pipeline.cli", "train", "--interface", iface, "--models", models,
           "--task", task, "--data", f"{args.data}/{column}", "--cache", f"{args.cache}/{column}",
           "--out", str(out), "--set", f"train.steps={args.steps}",
           "--set", f"train.eval_every={args.eval_every}", "--set", "train.threads=1",
           "--set", "interface_args.layer_norm=true"]  # fmt: skip
    if column == "ml_asr":
        cmd += ["--set", "task_args.mode=multi"]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if any(s == "train.threads=2" for s in sets):
        env["OMP_NUM_THREADS"] = "2"
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{column} {iface} {sets} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    wall = time.perf_counter() - t0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    metric = next(k for k in log[0] if k.startswith("dev_"))
    lower = metric in ("dev_cer", "dev_wer", "dev_eer")
    vals = [line[metric] for line in log]
    best = min(vals) if lower else max(vals)
    best_step = log[vals.index(best)]["step"]
    tol = 0.02 * abs(best)
    plateau = next(
        line["step"] for line, v in zip(log, vals, strict=True)
        if (v <= best + tol if lower else v >= best - tol)
    )  # fmt: skip
    recs = json.loads((out / "metrics.json").read_text())
    test = next(r["value"] for r in recs if r["split"] == "test")
    return {"ms_step": 1000 * log[-1]["time"] / log[-1]["step"], "best_step": best_step,
            "plateau": plateau, "dev": best, "test": test, "wall": wall, "metric": metric[4:]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--cache", default="cache/demo")
    ap.add_argument("--column", action="append", choices=sorted(BASE))
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--hconv", action="store_true", help="also the baseline with HConv")
    args = ap.parse_args()
    print("| column | case | ms/step | ratio | best step | plateau step | dev | test | wall s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for column in args.column or list(BASE):
            _, _, iface, base, levers = BASE[column]
            cases = [("baseline (" + iface + ")", iface, base)]
            if args.hconv:
                cases.append(("baseline (hconv)", HCONV[column], base))
            cases += [(name, iface, base + extra) for name, extra in levers.items()]
            ref = None
            for i, (name, ifc, sets) in enumerate(cases):
                r = run_case(column, ifc, sets, args, Path(tmp) / f"{column}-{i}")
                ref = ref or r["ms_step"]
                print(f"| {column} | {name} | {r['ms_step']:.1f} | {r['ms_step'] / ref:.2f} | "
                      f"{r['best_step']} | {r['plateau']} | {100 * r['dev']:.1f} | "
                      f"{100 * r['test']:.1f} | {r['wall']:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
