"""`pipeline predict` and `pipeline export` benchmark: ratios measured in one run.

    python bench/bench_predict.py [--data data/tiny/er | (default) the built-in tiny suite]
                                  [--task er] [--model whisper_tiny_en] [--whisper-mode trim]
                                  [--interface ws] [--steps 30] [--device cpu] [--repeats 3]

Set-up (not timed): the task data dir's stores are extracted and a run is trained `--steps`
steps on them. Then, on the same clips (the data dir's test split), prints:

  predict ÷ (extract + evaluate)   audio-seconds per second of `predict` on test.jsonl over that
                                   of extracting a store of the same clips (a data dir holding
                                   only test.jsonl) followed by `evaluate --data ... --cache ...`;
                                   both cold (each loads the upstream by name, as the commands
                                   do) and warm (the upstream object already loaded)
  exported ÷ run's model           time of the TorchScript file's forward over the run's eager
                                   interface + head on the same batch of cached test features
                                   (the run's batch size), and their largest |difference|

All in this process, library calls (no interpreter start-up), `--threads` torch threads; each
time is the best of --repeats runs. Legend: B batch, L states, T frames, D width.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from pipeline.data.manifest import read_manifest, write_manifest
from pipeline.data.synth import synthesize
from pipeline.device import resolve_device
from pipeline.extract.engine import ExtractConfig, run
from pipeline.infer import export_run, load_run, predict
from pipeline.infer.export import cached_batches
from pipeline.infer.traced import max_difference, reference
from pipeline.train.config import resolve_config
from pipeline.train.evaluate import evaluate
from pipeline.train.loop import train
from pipeline.upstreams.registry import load_upstream


def best(fn, repeats: int) -> float:
    """The best wall time of `repeats` calls of fn()."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--data", type=Path, default=None, help="task data dir (default: tiny suite)")
    ap.add_argument("--task", default="er")
    ap.add_argument("--model", default="whisper_tiny_en")
    ap.add_argument("--whisper-mode", default="trim")
    ap.add_argument("--interface", default="ws")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: temp)")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    work = a.keep or Path(tempfile.mkdtemp(prefix="bench_predict_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = a.data
        if data is None:
            data = synthesize(work / "suite", preset="tiny", seed=0) / a.task
        ecfg = dict(model=a.model, device=device, whisper_mode=a.whisper_mode, progress=False)
        run(ExtractConfig(data=str(data), out=str(work / "cache" / f"{a.model}.zarr"), **ecfg))
        cfg = resolve_config(interface=a.interface, models=[a.model], task=a.task, data=data,
                             cache=work / "cache", out=work / "run", device=device,
                             sets=[f"train.steps={a.steps}", f"train.eval_every={a.steps}"])  # fmt: skip
        run_dir = train(cfg, progress=False)
        test = read_manifest(data / "test.jsonl")
        audio = sum(u.duration for u in test)
        only = work / "test_only"
        write_manifest(only / "test.jsonl", test)

        def extract_evaluate(upstream=None) -> None:
            shutil.rmtree(work / "cache2", ignore_errors=True)
            out = str(work / "cache2" / f"{a.model}.zarr")
            run(ExtractConfig(data=str(only), out=out, **ecfg), upstream=upstream)
            evaluate(run_dir, "test", data=only, cache=work / "cache2", device=device)

        def pred(upstream=None) -> None:
            ups = {a.model: upstream} if upstream is not None else None
            predict(run_dir, [data / "test.jsonl"], work / "preds.jsonl", upstreams=ups,
                    device=device, progress=False)  # fmt: skip

        up = load_upstream(a.model, device=device, whisper_mode=a.whisper_mode)
        pred(up)  # warm-up: caches, lazy imports
        t_ee = best(extract_evaluate, a.repeats)
        t_p = best(pred, a.repeats)
        t_ee_w = best(lambda: extract_evaluate(up), a.repeats)
        t_p_w = best(lambda: pred(up), a.repeats)

        res = export_run(run_dir, work / "export", force=True)
        rm = load_run(run_dir, "cpu")
        (feats, lengths), *_ = cached_batches(rm, "test", 1)
        m = torch.jit.load(str(res.model))
        n_iter = 20
        with torch.no_grad():
            for _ in range(3):  # warm-up: TorchScript's executor profiles, then optimises
                m(feats, lengths), reference(rm, feats, lengths)
            t_eager = best(lambda: [reference(rm, feats, lengths) for _ in range(n_iter)], a.repeats)  # fmt: skip
            t_ts = best(lambda: [m(feats, lengths) for _ in range(n_iter)], a.repeats)
            diff = max_difference(m(feats, lengths), reference(rm, feats, lengths))

        shape = " ".join(f"{tuple(f.shape)}" for f in feats)
        print(f"clips: {len(test)} test clips of {data}, {audio:.1f} audio-s; model {a.model} "
              f"({a.whisper_mode}), {a.interface}/{a.task}, device {device}, {a.threads} thread(s)")  # fmt: skip
        print(f"predict                    cold {audio / t_p:8.1f} audio-s/s ({t_p:.2f} s)   "
              f"warm {audio / t_p_w:8.1f} audio-s/s ({t_p_w:.2f} s)")  # fmt: skip
        print(f"extract + evaluate         cold {audio / t_ee:8.1f} audio-s/s ({t_ee:.2f} s)   "
              f"warm {audio / t_ee_w:8.1f} audio-s/s ({t_ee_w:.2f} s)")  # fmt: skip
        print(f"predict ÷ (extract + evaluate), throughput: cold {t_ee / t_p:.2f}x   warm {t_ee_w / t_p_w:.2f}x")  # fmt: skip
        print(f"exported ÷ run's model, forward time on one batch {shape} x {n_iter}: "
              f"{t_ts / t_eager:.2f} ({t_ts / n_iter * 1e3:.2f} ms vs {t_eager / n_iter * 1e3:.2f} ms), "
              f"max |diff| {diff:.2g}; file {res.bytes / 1e6:.2f} MB")  # fmt: skip
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
