"""One grid job: `python -m pipeline.grid.worker --params P [--device D] [--threads T] [--cores 0,1] KEY...`.

Pins itself to its cores and thread count, then trains (or resumes) each run KEY of the plan
in turn through pipeline/train/from_plan.py's `train_run`, as dvc.yaml's train stage would; a run dir
left with another config is discarded (the runner has already removed stale finished runs).
Each run is trained holding its lock (RUN_DIR.train.lock, pipeline/train/run_dir.py): a run
another process trains is refused (RunLocked), a user error like any other.
Exit status: 0 when every run finished, 1 on the first user error (its one-line message on
stderr); a bug keeps its traceback. The grid starts it in its own process group with a
parent-death signal (pipeline/grid/jobs.py): it dies with its grid.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from pipeline.errors import run_reporting
from pipeline.plan.stage import lookup
from pipeline.train.from_plan import train_packed_runs, train_run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.grid.worker", description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("keys", nargs="+", help="run keys of params.yaml's generated `runs`")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--device", default=None, help="default: params.yaml's `device`")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    p.add_argument("--cores", default="", help="CPU affinity, e.g. 0,1")
    p.add_argument("--pack", action="store_true", help="train the runs packed (one pass)")
    a = p.parse_args(argv)
    if a.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in a.cores.split(",")})
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.pack:

        def packed() -> None:
            lookups = [lookup(a.params, "train", key) for key in a.keys]
            print(f"[grid] {','.join(a.keys)}: training packed", flush=True)
            for out in train_packed_runs([(exp, run) for exp, _, run in lookups], device=a.device):
                print(f"[grid] done -> {out}", flush=True)

        return run_reporting(packed, f"train {','.join(a.keys)}")
    for key in a.keys:

        def one(key: str = key) -> None:
            exp, _, run = lookup(a.params, "train", key)
            print(f"[grid] {key}: training", flush=True)
            out = train_run(exp, run, device=a.device, force=True)
            print(f"[grid] {key}: done -> {out}", flush=True)

        rc = run_reporting(one, f"train {key}")
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
