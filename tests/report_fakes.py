"""Fabricated run directories and experiments for the report's tests (no training, no stores)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from pipeline.plan import make_plan

SHAPES = {"whisper_tiny_en": (5, 384), "whisper_base": (7, 512), "wavlm_base_plus": (13, 768),
          "moonshine_base_en": (9, 416)}  # fmt: skip
LANGS = ["cmn", "deu", "eng", "fra"]
METRIC = {"asr_en": ("wer", "lower"), "ml_asr": ("cer", "lower"),
          "sv": ("eer", "lower"), "er": ("accuracy", "higher")}  # fmt: skip


def fake_run(
    run_dir: Path,
    models: list[str],
    interface: str,
    task: str,
    value: float,
    task_args: dict | None = None,
    per_language: dict | None = None,
    seed: int = 0,
    extra: dict[str, float] | None = None,
    learning: bool = False,
) -> None:
    """A run directory as `pipeline train` writes it (config, metrics, log, interface summary).
    `extra`: more scored splits (e.g. {"test_unseen": 0.7}) beside dev and test."""
    run_dir.mkdir(parents=True)
    metric, direction = METRIC[task]
    cfg = {"interface": interface, "models": models, "task": task, "data": "", "cache": "",
           "train": {"steps": 50, "seed": seed}, "interface_args": {},
           "task_args": task_args or {}}  # fmt: skip
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    recs = []
    splits = {"dev": value + 0.01, "test": value, **(extra or {})}
    for split, v in splits.items():
        rec = {"task": task, "metric": metric, "value": v, "direction": direction, "split": split}
        if per_language:
            rec["per_language"] = per_language
        recs.append(rec)
    (run_dir / "metrics.json").write_text(json.dumps(recs))
    # dev converges by step 20 (flat after it), or with `learning` still gains 5 % at step 50
    worse = 0.1 if direction == "lower" else -0.1
    devs = [value + worse, value, value, value, value]
    if learning:
        devs = [value + worse * k for k in (4, 3, 2, 1, 0)]
    log = [
        {"step": s, "train_loss": 2.0 / s, f"dev_{metric}": d}
        for s, d in zip((10, 20, 30, 40, 50), devs, strict=True)
    ]
    (run_dir / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in log))
    rng = np.random.default_rng(len(run_dir.name))
    shapes = [SHAPES[m] for m in models]
    if interface == "ws":
        summ = {"weights": [(w := rng.random(L)) / w.sum() for L, _ in shapes]}
    elif interface == "gumd":
        sel = [rng.integers(0, L, D) for L, D in shapes]
        summ = {
            "selected_layer": sel,
            "histogram": [
                np.bincount(s, minlength=L) for s, (L, _) in zip(sel, shapes, strict=True)
            ],
        }
    else:
        summ = {"first_conv_norms": rng.random(max(L for L, _ in shapes))}
    (run_dir / "interface_summary.json").write_text(json.dumps(summ, default=lambda a: a.tolist()))


def experiment(
    sets: dict[str, list[list[str]]] | None = None,
    seeds: list[int] | None = None,
) -> dict:
    """A self-contained experiment config on the built-in suite: {section: sets}; single-model
    sections get ws + hconv, fusion sections all four interfaces; four task columns."""
    sets = sets or {
        "Single model": [["whisper_tiny_en"], ["whisper_base"]],
        "2-model fusion": [["whisper_tiny_en", "whisper_base"]],
    }
    ups = sorted({m for ss in sets.values() for s in ss for m in s})
    cfg = {
        "data": {"suite": "demo", "synth": "demo", "seed": 0, "import": {}},
        "paths": {"data_root": "data", "cache_root": "cache", "runs_root": "runs"},
        "upstreams": {u: {} for u in ups},
        "tasks": {
            "asr_en": {"task": "asr_en"},
            "ml_asr": {"task": "ml_asr", "set": {"mode": "multi"}},
            "sv": {"task": "sv"},
            "er": {"task": "er"},
        },  # fmt: skip
        "table": [
            {
                "section": sec,
                "sets": ss,
                "interfaces": ["ws", "hconv"]
                if len(ss[0]) == 1
                else ["ws", "gumd", "hconv", "chconv"],
            }
            for sec, ss in sets.items()
        ],  # fmt: skip
        "report": {
            "title": "Test",
            "names": {
                "whisper_tiny_en": "Whisper tiny.en",
                "whisper_base": "Whisper base",
                "wavlm_base_plus": "WavLM Base+",
            },  # fmt: skip
            "columns": {"asr_en": "ASR en", "ml_asr": "ML-ASR multi", "sv": "SV", "er": "ER"},
            "split": "test",
        },
    }
    if seeds is not None:
        cfg["seeds"] = seeds
    return cfg


def fabricate(
    cfg: dict,
    runs_dir: Path,
    value: Callable[[list[str], str, str, int], float],
    seeds: list[int] = (0,),  # type: ignore[assignment]
    name: Callable[[str, int], str] = lambda key, seed: f"{key}-s{seed}",
    extra: Callable[[list[str], str, str, int], dict] | None = None,
) -> int:
    """A run dir for every planned run and seed; value(models, interface, task, seed) is the
    test value (a fraction). A plan whose runs carry a seed is followed as it is. Returns the count."""
    n = 0
    for key, r in make_plan(cfg).runs.items():
        for seed in [r.seed] if hasattr(r, "seed") else seeds:
            v = value(r.models, r.interface, r.task, seed)
            pl = (
                {lang: v + 0.01 * i for i, lang in enumerate(LANGS)} if r.task == "ml_asr" else None
            )
            ex = extra(r.models, r.interface, r.task, seed) if extra else None
            fake_run(runs_dir / name(key, seed), r.models, r.interface, r.task, v, r.settings, pl,
                     seed, ex)  # fmt: skip
            n += 1
    return n
