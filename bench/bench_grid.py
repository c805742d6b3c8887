"""Stage two's runs one after the other vs the grid runner, side by side in one process.

    python bench/bench_grid.py [--columns er] [--jobs 2] [--work /tmp/bench_grid]

The default experiment (configs/default.yaml: its 8 table rows and per-task training settings)
over the built-in `tiny` suite's stores (synthesized and extracted into --work when missing;
--data-root/--cache-root reuse existing ones), restricted to --columns. "sequential" is the
grid runner with one slot holding every core (what `dvc repro` does: one run at a time, each
its own process); "grid" is --jobs slots, each pinned to its share of the cores. Both train the
same runs into separate run roots; the ratio printed is grid / sequential wall time, with the
load average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import yaml

from pipeline.data.synth import synthesize
from pipeline.extract.from_plan import extract_store
from pipeline.grid.runner import GridOptions, run_grid
from pipeline.plan import load_experiment, make_plan, read_experiment_mapping, render

ROOT = Path(__file__).resolve().parents[1]


def experiment(work: Path, data_root: Path, cache_root: Path, columns: list[str], runs: Path) -> Path:  # fmt: skip
    """params.yaml (in WORK) of the default experiment on the tiny suite, absolute paths."""
    cfg = read_experiment_mapping(ROOT / "configs" / "default.yaml")
    cfg["data"].update(suite="tiny", synth="tiny")
    cfg["paths"] = {"data_root": str(data_root), "cache_root": str(cache_root), "runs_root": str(runs)}  # fmt: skip
    cfg["tasks"] = {c: cfg["tasks"][c] for c in columns}
    path = work / f"params-{runs.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.write_text(render(path))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--columns", default="er", help="task columns of the default experiment")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_grid"))
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--cache-root", type=Path, default=None)
    p.add_argument("--control", action="store_true", help="also time one slot with one thread")
    a = p.parse_args()
    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data_root = (a.data_root or work / "data").resolve()
    cache_root = (a.cache_root or work / "cache").resolve()
    columns = a.columns.split(",")
    if not (data_root / "tiny" / "er" / "train.jsonl").is_file():
        synthesize(data_root / "tiny", preset="tiny", seed=0)
    seq_params = experiment(work, data_root, cache_root, columns, work / "runs-sequential")
    grid_params = experiment(work, data_root, cache_root, columns, work / "runs-grid")
    cfg = load_experiment(seq_params)
    plan = make_plan(cfg)
    t0 = time.monotonic()
    for store in plan.stores.values():
        extract_store(cfg, store)
    print(f"stores ready in {time.monotonic() - t0:.0f} s: {len(plan.stores)}")
    for runs in ("runs-sequential", "runs-grid"):
        shutil.rmtree(work / runs, ignore_errors=True)
    cores = len(os.sched_getaffinity(0))
    load0 = os.getloadavg()
    quiet = lambda s: print("   ", s) if s.startswith(("  FAILED", "trained")) else None  # noqa: E731
    print(f"{len(plan.runs)} runs ({', '.join(columns)} columns of the default experiment, tiny suite), {cores} cores")  # fmt: skip
    opts = {"dvc": False, "logs": str(work / "logs")}
    seq = run_grid(GridOptions(params=str(seq_params), jobs=1, **opts), root=ROOT, echo=quiet)
    load1 = os.getloadavg()
    grid = run_grid(GridOptions(params=str(grid_params), jobs=a.jobs, **opts), root=ROOT, echo=quiet)  # fmt: skip
    load2 = os.getloadavg()
    assert not seq.failed and not grid.failed, (seq.failed, grid.failed)
    print(f"sequential (1 slot x {cores} threads): {seq.seconds:7.1f} s   load avg {load0[0]:.1f} -> {load1[0]:.1f}")  # fmt: skip
    print(f"grid ({a.jobs} slots x {max(1, cores // a.jobs)} thread(s)): {grid.seconds:7.1f} s   load avg -> {load2[0]:.1f}")  # fmt: skip
    print(f"grid / sequential = {grid.seconds / seq.seconds:.2f}")
    if a.control:  # one run at a time with one thread: how much of the gain is the thread count
        ctl_params = experiment(work, data_root, cache_root, columns, work / "runs-control")
        shutil.rmtree(work / "runs-control", ignore_errors=True)
        ctl = run_grid(GridOptions(params=str(ctl_params), jobs=1, threads=1, **opts), root=ROOT, echo=quiet)  # fmt: skip
        print(f"control (1 slot x 1 thread): {ctl.seconds:7.1f} s   load avg -> {os.getloadavg()[0]:.1f}")  # fmt: skip
        print(f"grid / control = {grid.seconds / ctl.seconds:.2f}")


if __name__ == "__main__":
    main()
