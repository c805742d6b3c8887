"""Where things live, defined once: a store, its stamp, the stores of a run, a run's key and directory.

No torch: the plan, the stages, the grid, the trainer and the report all read these rules.

    store_path("cache/demo/sv", "whisper_base")        -> "cache/demo/sv/whisper_base.zarr"
    stamp_path("demo", "sv", "whisper_base")           -> "cache/demo/sv/whisper_base.stamp.json"
    run_key(["whisper_base"], "ws", "er", {"fold": 1}, 0, 3) -> "whisper_base-ws-er-fold1-s0"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Stamps are DVC outputs, so they live inside the checkout whatever `paths.cache_root` says (an
# absolute cache root lets queued experiments share the stores, never the stamps).
STAMP_ROOT = "cache"
STORE_SUFFIX = ".zarr"


def store_path(cache_dir: str | Path, upstream: str) -> str:
    """The store of `upstream` in a task's cache folder: CACHE_DIR/<upstream>.zarr."""
    return f"{cache_dir}/{upstream}{STORE_SUFFIX}"


def stamp_path(suite: str, dataset: str, upstream: str) -> str:
    """The small file that stands for a store in DVC: cache/<suite>/<dataset>/<upstream>.stamp.json."""
    return f"{STAMP_ROOT}/{suite}/{dataset}/{upstream}.stamp.json"


def run_stores(models: Sequence[str], cache: str | Path, stores: Sequence[str] = ()) -> list[Path]:
    """One store path per model: explicit `stores` (positional, or NAME=PATH), else the rule of
    `store_path` in `cache`. Nothing is checked for existence here."""
    named = dict(s.split("=", 1) for s in stores if "=" in s)
    positional = [s for s in stores if "=" not in s]
    out = []
    for i, m in enumerate(models):
        if m in named:
            out.append(Path(named[m]))
        elif positional and len(positional) == len(models):
            out.append(Path(positional[i]))
        else:
            out.append(Path(store_path(cache, m)))
    return out


def run_key(models: Sequence[str], interface: str, column: str, group: Mapping[str, Any],
            seed: int, n_seeds: int) -> str:  # fmt: skip
    """`<models joined by +>-<interface>-<column>[-<key><int> | -<value>...][-s<seed>]`: the run
    directory's name and the train stage's foreach key (the seed only when there are several)."""
    suffix = "".join(f"-{k}{v}" if isinstance(v, int) else f"-{v}" for k, v in group.items())
    key = f"{'+'.join(models)}-{interface}-{column}{suffix}"
    return key + (f"-s{seed}" if n_seeds > 1 else "")


def run_dir(runs_root: str | Path, key: str) -> str:
    """A run's directory: <paths.runs_root>/<key>."""
    return f"{runs_root}/{key}"
