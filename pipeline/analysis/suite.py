"""The layer analysis of an experiment: probes and compares the hidden states of every upstream
it extracts, writing results/analysis/ for the report (dvc.yaml's analyze stage, stages/analyze.py).

It reads params.yaml: the `analysis` section (what to run, how long) and the generated `stores`
and `runs` sections (which upstreams were extracted for which task column, and where). Per
column of `analysis.probe.columns`: a linear probe on every stored layer of every upstream
(pipeline/analysis/probe.py) -> probe_<task>.json/.png. For `analysis.similarity.column`:
linear CKA between every layer of every upstream (pipeline/analysis/similarity.py) ->
similarity.json/.npz and cka_<a>__<b>.png. Then analysis.json, the index the report reads
(what ran, on which split and how many utterances/frames, the figures, the seconds taken).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import yaml

from pipeline.analysis.probe import (
    CLASSIFIER_TASKS,
    CTC_TASKS,
    ProbeConfig,
    run_probes,
    write_probe,
)
from pipeline.analysis.settings import SEED, probe_setting, similarity_setting
from pipeline.analysis.similarity import layer_similarity, write_similarity
from pipeline.data.manifest import Utterance
from pipeline.data.splits import read_splits
from pipeline.plan import PlanError, check
from pipeline.store import open_store, store_exists

INDEX = "analysis.json"
OUT = "results/analysis"
# files this stage writes: removed first, so no figure of an earlier setting lingers
PATTERNS = ("probe_*.json", "probe_*.png", "cka_*.png", "similarity.json", "similarity.npz", INDEX)
PROBE_SPLITS = ("train", "dev", "test")


def column_stores(params: dict, column: str, where: str = "params.yaml") -> tuple[str, dict[str, str]]:  # fmt: skip
    """(task data dir, {upstream: store path}) of a task column, from the generated sections:
    every upstream the experiment extracts for the column's data, in the order of `stores`."""
    runs = [r for r in (params.get("runs") or {}).values() if r.get("column") == column]
    if not runs:
        cols = sorted({r.get("column") for r in (params.get("runs") or {}).values()})
        raise PlanError(
            f"{where}: `analysis` names the task column {column!r}, but no run trains it "
            f"(the columns are {cols}); name one of those in the `analysis` section"
        )
    cache = Path(runs[0]["cache"])
    found = [s for s in (params.get("stores") or {}).values() if Path(s["store"]).parent == cache]
    if not found:
        raise PlanError(f"{where}: no store of `stores` lies in {cache} (column {column!r}); "
                        "regenerate it with `python -m pipeline.plan write`")  # fmt: skip
    return str(found[0]["data"]), {s["upstream"]: str(s["store"]) for s in found}


def open_stores(stores: dict[str, str], column: str) -> dict[str, Any]:
    """{upstream: reader}; a missing store names the extract stage that makes it."""
    for up, path in stores.items():
        if not store_exists(path):
            raise PlanError(
                f"analysis of column {column!r}: the store {path} of {up} does not exist; "
                "extract it first (`dvc repro` runs the extract stages before this one)"
            )
    return {up: open_store(path) for up, path in stores.items()}


def limit(utts: list[Utterance], n: int | None, seed: int) -> list[Utterance]:
    """At most `n` utterances: a seeded sample, kept in manifest order (all when n is None)."""
    if n is None or len(utts) <= n:
        return utts
    keep = set(random.Random(seed).sample(range(len(utts)), n))
    return [u for i, u in enumerate(utts) if i in keep]


def task_of(params: dict, column: str) -> str:
    """The pipeline task a column trains (the column must have runs: `column_stores` checks)."""
    return str(next(r["task"] for r in params["runs"].values() if r.get("column") == column))


def run_probe(params: dict, column: str, cfg: dict, out: Path, seed: int) -> dict:
    """One column's probes (every upstream, every layer); its entry of the index."""
    t0 = time.perf_counter()
    data, stores = column_stores(params, column)
    task = task_of(params, column)
    if task not in CLASSIFIER_TASKS + CTC_TASKS:
        raise PlanError(f"analysis.probe.columns: column {column!r} trains task {task!r}, which has no probe")  # fmt: skip
    readers = open_stores(stores, column)
    splits = read_splits(data, PROBE_SPLITS)
    n_train = probe_setting(cfg, "max_train_utterances")
    splits["train"] = limit(splits["train"], n_train, seed)
    pcfg = ProbeConfig(steps=probe_setting(cfg, "steps"), lr=probe_setting(cfg, "lr"), seed=seed)
    doc = run_probes(readers, task, splits, Path(data), pcfg)
    split = str(probe_setting(cfg, "split"))
    js, png = write_probe({**doc, "column": column}, out, split)
    return {
        "column": column, "task": task, "data": data, "json": js.name, "figure": png.name,
        "split": split, "utterances": {s: len(u) for s, u in splits.items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip


def run_similarity(params: dict, cfg: dict, out: Path, seed: int) -> dict:
    """CKA between every layer of the column's upstreams; its entry of the index."""
    t0 = time.perf_counter()
    if "column" not in cfg:
        raise PlanError(
            "params.yaml: analysis.similarity needs `column`, the task column whose stores are compared"
        )
    column = str(cfg["column"])
    data, stores = column_stores(params, column)
    if cfg.get("upstreams"):
        unknown = [u for u in cfg["upstreams"] if u not in stores]
        if unknown:
            raise PlanError(f"analysis.similarity.upstreams: {unknown} have no store for column "
                            f"{column!r} (it has {list(stores)})")  # fmt: skip
        stores = {u: stores[u] for u in cfg["upstreams"]}
    if len(stores) < 2:
        raise PlanError(f"analysis.similarity: column {column!r} has {len(stores)} upstream(s); "
                        "CKA compares two or more (set `similarity: null` to skip it)")  # fmt: skip
    readers = open_stores(stores, column)
    wanted = tuple(similarity_setting(cfg, "splits"))
    ids = [u.id for us in read_splits(data, wanted, required=wanted).values() for u in us]
    res = layer_similarity(
        list(readers.values()), list(readers), ids, similarity_setting(cfg, "max_frames"),
        memory_bytes=float(similarity_setting(cfg, "memory_gb")) * 1e9, seed=seed,
        remove_position=bool(similarity_setting(cfg, "remove_position")),
    )  # fmt: skip
    doc = write_similarity(res, out)
    return {
        "column": column, "data": data, "json": "similarity.json", "splits": list(wanted),
        "figures": [f for f in doc["figures"] if not _within(f)], "frames": res.frames,
        "utterances": res.utterances, "remove_position": res.remove_position,
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip


def _within(figure: str) -> bool:
    """cka_A__A.png: a model against itself."""
    a, _, b = figure.removeprefix("cka_").removesuffix(".png").partition("__")
    return a == b


def analyze(params_path: str | Path = "params.yaml", out: str | Path = OUT) -> Path:
    """Run the `analysis` section of params.yaml; returns the index OUT/analysis.json."""
    check(params_path)
    params = yaml.safe_load(Path(params_path).read_text(encoding="utf-8")) or {}
    settings = params.get("analysis") or {}
    out = Path(out)
    if out.is_dir():
        for pattern in PATTERNS:
            for f in out.glob(pattern):
                f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    seed = int(settings.get("seed", SEED))
    index: dict[str, Any] = {"settings": settings, "probes": [], "similarity": None}
    t0 = time.perf_counter()
    probe = settings.get("probe") or {}
    for column in probe.get("columns") or []:
        index["probes"].append(run_probe(params, str(column), probe, out, seed))
        print(f"probe {column}: {index['probes'][-1]['seconds']} s", flush=True)
    if settings.get("similarity"):
        index["similarity"] = run_similarity(params, settings["similarity"], out, seed)
        print(f"similarity: {index['similarity']['seconds']} s", flush=True)
    index["seconds"] = round(time.perf_counter() - t0, 1)
    path = out / INDEX
    path.write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    return path
