"""Re-score a trained run from its best checkpoint, on its own data or another dataset's split.

    evaluate("runs/x")                                  # -> runs/x/eval_test.json
    evaluate("runs/x", split="test", data="data/other/er", cache="cache/other/er")
                                                        # -> runs/x/eval_test_other-er.json

Writes a list with one metrics record (the schema of metrics.json) and, for tasks whose
outputs are transcripts, a hypotheses file `hyp_<split>[_<dataset>].tsv` (id, ref, hyp).
With `data`, nothing is extracted: a store that is missing is named in the error.

The stores are checked against the run's inputs.json: on its own data every fingerprint field
and the split's manifest hash must match; on another dataset every field but manifest_hash
(same upstream, weights, mode, layers, encoding, frame rate). A change raises InputsChanged.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from pipeline.checkpoint import json_default, load_checkpoint
from pipeline.console import console
from pipeline.data.splits import read_splits
from pipeline.errors import UserError
from pipeline.feed.run_inputs import compare_inputs, read_inputs
from pipeline.train.config import load_run_config
from pipeline.train.feed import build_setup
from pipeline.train.loop import reseed, score_split

EVAL_ADVICE = (
    "For a changed manifest: restore the manifest the run was trained on (or score it on other "
    "data with --data, which compares no labels). For a changed store: restore it (or point "
    "--cache/--store at the one it was trained on). Or retrain the run on the current inputs "
    "with `pipeline train ... --force`."
)


class EvaluateError(UserError, ValueError):
    """An evaluation that cannot run as asked; the message says why and what to do."""


def dataset_name(data: str | Path) -> str:
    """A file-name-safe name for a data dir: its last two path components, e.g. `demo-er`."""
    parts = Path(data).resolve().parts[-2:]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts))


def evaluate(
    run_dir: str | Path,
    split: str = "test",
    data: str | Path | None = None,
    cache: str | Path | None = None,
    stores: list[str] | None = None,
    device: str = "auto",
) -> Path:
    """Score `split` with RUN_DIR/checkpoints/best.pt; returns the eval json written."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir / "config.yaml")
    best = run_dir / "checkpoints" / "best.pt"
    if not best.exists():
        raise FileNotFoundError(
            f"{best} does not exist: train the run first (`pipeline train --out {run_dir}`)"
        )
    if device != "auto":
        cfg.train.device = device
    ck = load_checkpoint(best, "cpu")
    other = data is not None
    if other and cache is None and not stores:
        raise EvaluateError(
            "--data needs --cache CACHE_DIR (or --store) holding that dataset's stores"
        )
    # the task is rebuilt from the run's train split (when still there), then its saved state
    own = Path(cfg.data)
    train_utts = read_splits(own, ["train"])["train"] if (own / "train.jsonl").exists() else []
    reseed(cfg.train.seed, "init")
    setup = build_setup(
        cfg,
        data=data,
        cache=cache,
        stores=stores if stores else ([] if other else None),
        splits=[split],
        train_utts=train_utts,
        task_state=ck["task_state"],
    )
    recorded = read_inputs(run_dir)
    if recorded is not None:
        ignore = ("manifest_hash",) if other else ()
        compare_inputs(recorded, setup.inputs, EVAL_ADVICE, ignore_fields=ignore, splits=not other)
    if [tuple(s) for s in ck["shapes"]] != [tuple(s) for s in setup.shapes]:
        raise EvaluateError(
            f"the stores for {cfg.models} have shapes (L, D) {setup.shapes}, the run was trained on "
            f"{ck['shapes']}: they come from other upstreams; extract with the run's models"
        )
    setup.interface.load_state_dict(ck["interface"])
    setup.head.load_state_dict(ck["head"])
    rec, outputs, utts = score_split(setup, split)
    rec.setdefault("interface", cfg.interface)
    rec.setdefault("models", list(cfg.models))
    rec.setdefault("best_step", ck.get("step"))
    rec["data"] = str(setup.data_dir)
    suffix = f"{split}_{dataset_name(data)}" if other else split
    out = run_dir / f"eval_{suffix}.json"
    out.write_text(json.dumps([rec], indent=2, default=json_default))
    if outputs and all(isinstance(o, str) for o in outputs):
        with open(run_dir / f"hyp_{suffix}.tsv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["id", "ref", "hyp"])
            for u, hyp in zip(utts, outputs, strict=True):
                w.writerow([u.id, u.text or "", hyp])
    console.print(f"{split}: {rec['metric']} = {rec['value']:.4f} -> {out}")
    return out
