"""The metric with fp16, int8 and fp8 stores side by side.

Usage: .venv/bin/python bench/bench_encodings.py [--preset tiny|demo] [--suite DIR]
       [--models whisper_tiny_en,whisper_base] [--tasks asr_en,ml_asr,sv,er]
       [--seeds 0] [--spread-seeds 1,2] [--encodings fp16,int8,fp8] [--whisper-mode trim]
       [--interface ws] [--work DIR] [--md FILE] [--threads 1] [--device cpu]

For every task of the built-in offline suite and every upstream, stage one writes one store per
encoding (`pipeline.extract.engine.run`, the code behind `pipeline extract --encoding`); `pipeline cache
verify` must pass on each. Then stage two trains the same run from each store (`pipeline.train.loop`,
the code behind `pipeline train`: the task's default config, the ws interface, the same seeds
and steps: --seeds for every encoding), and the test metric of best-on-dev is read from
metrics.json. fp16 also runs --spread-seeds; its runs over all seeds give the run-to-run spread
(max - min). An 8-bit encoding is "within" when the mean over --seeds differs from fp16's mean
over the same --seeds by at most that spread. Bytes: the encoded arrays (frames +
scales, no chunk padding) and the whole store on disk, each ÷ the fp16 twin's.

Prints a markdown table and writes it to --md (default WORK/encodings.md) with the raw numbers
in WORK/encodings.json. Finished runs are reused when the script is run again (delete WORK to
start over). Runs are independent: two processes (e.g. one per --models entry, same --work)
may share the work; a last call with every model then only collects the table. On a busy
machine use --threads 1 (two OpenMP threads spinning against other jobs made a step 30× slower
here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from pipeline.cli.cache import store_info, verify_store
from pipeline.data.synth import synthesize
from pipeline.extract.engine import ExtractConfig, run
from pipeline.train.config import resolve_config
from pipeline.train.loop import train
from pipeline.upstreams.registry import load_upstream

TASK_DIR = {"asr_en": "asr_en", "ml_asr": "ml_asr", "sv": "sv", "er": "er"}


def extract_all(args, up, model: str, data: Path, work: Path) -> dict[str, dict]:
    """One store per encoding for (model, task): {encoding: {path, seconds, info}}."""
    out = {}
    for enc in args.encodings:
        path = work / "cache" / data.name / f"{model}-{enc}.zarr"
        t0 = time.perf_counter()
        cfg = ExtractConfig(model=model, data=str(data), out=str(path), device=args.device,
                            whisper_mode=args.whisper_mode, progress=False, encoding=enc)  # fmt: skip
        res = run(cfg, upstream=up)
        secs = time.perf_counter() - t0
        probs = verify_store(str(path))
        if probs:
            raise SystemExit(f"pipeline cache verify failed on {path}: {probs}")
        out[enc] = {"path": str(path), "seconds": secs if res.written else None, "info": store_info(str(path))}  # fmt: skip
    return out


def train_one(args, model: str, task: str, data: Path, store: str, enc: str, seed: int, work: Path) -> dict:  # fmt: skip
    run_dir = work / "runs" / model / task / f"{enc}-s{seed}"
    metrics = run_dir / "metrics.json"
    if not metrics.exists():
        cfg = resolve_config(
            interface=args.interface, models=model, task=task, data=data, cache="",
            out=run_dir, stores=[store], sets=[f"train.seed={seed}", f"train.threads={args.threads}"],
            device=args.device,
        )  # fmt: skip
        t0 = time.perf_counter()
        train(cfg, force=True, progress=False)
        (run_dir / "bench_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    recs = {r["split"]: r for r in json.loads(metrics.read_text())}
    test = recs["test"]
    log = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if x.strip()]
    loss = log[-1]["train_loss"] if log else None  # training loss over the last eval interval
    return {"value": float(test["value"]), "metric": test["metric"], "direction": test.get("direction"),
            "loss": loss}  # fmt: skip


def summarize(
    results: list[dict], encodings: list[str], seeds: list[int]
) -> tuple[str, list[dict]]:
    """Markdown table and rows: per (task, model), mean per encoding, fp16 spread, verdicts."""
    header = ["task (metric)", "upstream"]
    header += [f"{e} (seed {', '.join(map(str, seeds))})" for e in encodings]
    header += ["fp16 spread"] + [f"{e} Δ" for e in encodings if e != "fp16"]
    header += [f"final train loss {' / '.join(encodings)} (fp16 spread)"]
    header += [f"{e} bytes ÷ fp16 (arrays / disk)" for e in encodings if e != "fp16"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = []
    for r in results:
        vals = {e: [x["value"] for x in r["runs"][e][: len(seeds)]] for e in encodings}
        means = {e: statistics.fmean(v) for e, v in vals.items()}
        all16 = [x["value"] for x in r["runs"]["fp16"]]
        spread = max(all16) - min(all16)
        cells = [f"{r['task']} ({r['metric']})", r["model"]]
        cells += [" / ".join(f"{v:.3f}" for v in vals[e]) for e in encodings]
        cells.append(f"{spread:.3f} ({' / '.join(f'{v:.3f}' for v in all16)})")
        verdict = {}
        for e in encodings:
            if e == "fp16":
                continue
            d = means[e] - means["fp16"]
            verdict[e] = abs(d) <= spread + 1e-9
            cells.append(f"{d:+.3f} {'within' if verdict[e] else 'OUTSIDE'}")
        losses = {e: [x.get("loss") for x in r["runs"][e][: len(seeds)]] for e in encodings}
        l16 = [x.get("loss") for x in r["runs"]["fp16"] if x.get("loss") is not None]
        cells.append(
            " / ".join(f"{statistics.fmean(v):.3g}" if all(x is not None for x in v) else "-" for v in losses.values())
            + (f" ({max(l16) - min(l16):.2g})" if l16 else "")
        )  # fmt: skip
        for e in encodings:
            if e == "fp16":
                continue
            b, b16 = r["bytes"][e], r["bytes"]["fp16"]
            cells.append(f"{b['arrays'] / b16['arrays']:.3f} / {b['disk'] / b16['disk']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
        rows.append({**r, "means": means, "spread": spread, "within": verdict})
    return "\n".join(lines), rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny", choices=["tiny", "demo"])
    ap.add_argument(
        "--suite", default=None, help="suite dir (default WORK/suite-PRESET, synthesised)"
    )
    ap.add_argument("--models", default="whisper_tiny_en,whisper_base")
    ap.add_argument("--tasks", default="asr_en,ml_asr,sv,er")
    ap.add_argument("--seeds", default="0", help="seeds every encoding trains with")
    ap.add_argument("--spread-seeds", default="1,2", help="extra fp16 seeds for the spread")
    ap.add_argument("--encodings", default="fp16,int8,fp8")
    ap.add_argument("--whisper-mode", default="trim")
    ap.add_argument("--interface", default="ws")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--work", default="cache/bench_encodings")
    ap.add_argument("--md", default=None)
    args = ap.parse_args()
    args.encodings = args.encodings.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work) / args.preset
    suite = Path(args.suite) if args.suite else work / f"suite-{args.preset}"
    synthesize(suite, preset=args.preset, seed=0)
    seeds = [int(s) for s in args.seeds.split(",")]
    spread_seeds = [int(s) for s in args.spread_seeds.split(",") if s.strip()]
    results = []
    t_start = time.perf_counter()
    for model in args.models.split(","):
        up = load_upstream(model, device=args.device, whisper_mode=args.whisper_mode)
        for task in args.tasks.split(","):
            data = suite / TASK_DIR[task]
            stores = extract_all(args, up, model, data, work)
            runs = {e: [] for e in args.encodings}
            for seed in seeds:
                for enc in args.encodings:
                    runs[enc].append(train_one(args, model, task, data, stores[enc]["path"], enc, seed, work))  # fmt: skip
            for seed in spread_seeds:
                runs["fp16"].append(train_one(args, model, task, data, stores["fp16"]["path"], "fp16", seed, work))  # fmt: skip
            b = {e: {"arrays": s["info"]["bytes_arrays"], "disk": s["info"]["bytes_on_disk"]} for e, s in stores.items()}  # fmt: skip
            ext = {e: s["seconds"] for e, s in stores.items()}
            results.append({"task": task, "model": model, "metric": runs["fp16"][0]["metric"],
                            "direction": runs["fp16"][0]["direction"], "runs": runs, "bytes": b,
                            "extract_seconds": ext})  # fmt: skip
            print(f"[{time.perf_counter() - t_start:6.0f} s] {model} {task}: " + ", ".join(
                e + " " + "/".join(f"{x['value']:.3f}" for x in runs[e]) for e in args.encodings), flush=True)  # fmt: skip
    table, rows = summarize(results, args.encodings, seeds)
    head = (
        f"preset `{args.preset}`, whisper mode `{args.whisper_mode}`, interface `{args.interface}`, "
        f"seeds {seeds} for every encoding and {seeds + spread_seeds} for the fp16 spread, device "
        f"{args.device}, the tasks' default configs (pipeline/train/config.py); test metric of best-on-dev, "
        f"fractions (WER/CER/EER lower is better, accuracy higher); Δ = 8-bit - fp16 on the same "
        f"seeds, 'within' when |Δ| <= the fp16 spread (max - min over its seeds). The final "
        f"training loss (mean over the last evaluation interval) is a finer-grained check where "
        f"the metric saturates."
    )
    md = head + "\n\n" + table + "\n"
    print(md)
    ok = all(all(r["within"].values()) for r in rows)
    ratio = max(r["bytes"][e]["arrays"] / r["bytes"]["fp16"]["arrays"] for r in rows for e in args.encodings if e != "fp16")  # fmt: skip
    print(f"8-bit within the fp16 spread on every task: {ok}; largest bytes ratio (arrays) {ratio:.3f} (goal <= 0.52)")  # fmt: skip
    md_path = Path(args.md) if args.md else work / "encodings.md"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(md)
    (work / "encodings.json").write_text(json.dumps(rows, indent=2, default=str))
    print(f"wrote {md_path} and {work / 'encodings.json'} in {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
