"""Input-state importance of a trained run's interface, from its best checkpoint and the cache.

    run_importance(run)   # [(L_i,)] relative output change when each state is zeroed, or None

Rebuilds the run's interface from config.yaml (interface, interface_args) and the shapes of its
stores, loads checkpoints/best.pt, and measures `pipeline.analysis.importance.state_importance`
on the first `MAX_UTTS` utterances of the run's dev split, read from the same stores. A run
whose checkpoint, manifest or stores are gone gives None (the figure then falls back to the
tap-normalised weight norms and says so). A store that changed since the run was trained (its
fingerprint differs from the run's inputs.json, the check `pipeline evaluate` makes) is refused:
the measure would describe other features than the ones the interface learned on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from pipeline.analysis.importance import Batch, state_importance
from pipeline.checkpoint import load_checkpoint
from pipeline.data.manifest import read_manifest
from pipeline.feed.loader import FeatureDataset, make_loader
from pipeline.feed.run_inputs import InputsChanged, compare_inputs, read_inputs
from pipeline.interfaces import build
from pipeline.paths import run_stores
from pipeline.report.runs import RunResult
from pipeline.store import open_store

log = logging.getLogger(__name__)
MAX_UTTS = 16  # dev utterances per run (one batch): the measure is a ratio of sums over all frames
STALE_ADVICE = (
    "The HConv importance figure runs the run's best checkpoint on these stores: restore the "
    "store it was trained on, retrain the run on the current one (`dvc repro`, or `pipeline "
    "train ... --force`), or write the report with `--no-importance` (the weight-only proxy)."
)


def _store_paths(cfg: dict) -> list[Path]:
    """The run's stores: `stores` (positional or NAME=PATH) when given, else CACHE/<model>.zarr."""
    models, stores = list(cfg.get("models") or []), list(cfg.get("stores") or [])
    return run_stores(models, str(cfg.get("cache", "")), stores)


def _batches(loader, limit: int) -> Iterator[Batch]:
    for i, b in enumerate(loader):
        if i >= limit:
            return
        yield [f.float() for f in b["feats"]], [torch.as_tensor(n) for n in b["lengths"]]


def check_fresh(run: RunResult, readers: list, paths: list[Path]) -> None:
    """Refuse stores whose fingerprint differs from the one recorded when the run trained
    (InputsChanged, naming each field); a run recorded before inputs.json passes."""
    recorded = read_inputs(run.path)
    if recorded is None:
        return
    current = {
        "stores": {
            m: {"path": str(p), "fingerprint": dict(r.fingerprint)}
            for m, r, p in zip(run.models, readers, paths, strict=True)
        }
    }
    try:
        compare_inputs(recorded, current, STALE_ADVICE, splits=False)
    except InputsChanged as e:
        raise InputsChanged(f"report, run {run.key}: {e}") from None


def run_importance(run: RunResult, max_utts: int = MAX_UTTS) -> list[np.ndarray] | None:
    """[(L_i,)] per upstream of the run, or None (and a log line) when it cannot be computed.
    Raises InputsChanged for a store rebuilt since the run was trained (`check_fresh`)."""
    cfg, best = run.config, run.path / "checkpoints" / "best.pt"
    dev = Path(str(cfg.get("data", ""))) / "dev.jsonl"
    try:
        ck = load_checkpoint(best)  # plain data only: a planted pickle is refused, never run
        paths = _store_paths(cfg)
        readers = [open_store(p) for p in paths]
        check_fresh(run, readers, paths)
        shapes = [(int(r.num_layers), int(r.dim)) for r in readers]
        if "shapes" in ck and [tuple(s) for s in ck["shapes"]] != shapes:
            raise ValueError(f"stores have shapes {shapes}, the checkpoint {ck['shapes']}")
        rates = [float(r.frame_rate) for r in readers]
        iface = build(
            str(cfg["interface"]), shapes, frame_rates=rates, **(cfg.get("interface_args") or {})
        )
        iface.load_state_dict(ck["interface"])
        utts = [u for u in read_manifest(dev, check_files=False) if all(u.id in r for r in readers)]
        if not utts:
            raise ValueError(f"no utterance of {dev} is in the run's stores")
        loader = make_loader(
            FeatureDataset(readers, utts[:max_utts]),
            max_utts,
            tier="auto",
            device="cpu",
            prefetch=0,
        )
        return state_importance(iface, _batches(loader, limit=max_utts))
    except InputsChanged:  # a RuntimeError too, but refused, not skipped
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        log.warning("run %s: no state importance (%s: %s)", run.key, type(e).__name__, e)
        return None
