"""dvc.yaml's extract stage: `python -m stages.extract KEY` extracts one store and writes its stamp.

The store is built from params.yaml's live `upstreams.<name>` settings
(pipeline/extract/from_plan.py: a complete store for the same request is adopted, a store made
for another request is rebuilt). The stamp is the small file that stands for the store in DVC.
"""

from __future__ import annotations

import shlex
import sys

from pipeline.extract.from_plan import extract_store, write_stamp
from pipeline.plan import Experiment, Store, extract_argv
from pipeline.plan.stage import stage_main


def _stage(exp: Experiment, store: Store) -> None:
    print(f"+ python -m stages.extract {store.key}", flush=True)
    print(f"  (by hand: pipeline {shlex.join(extract_argv(exp, store))})", flush=True)
    extract_store(exp, store)
    print(f"stamp: {write_stamp(store)}")


def main(argv: list[str] | None = None) -> int:
    return stage_main("extract", __doc__.split("\n\n")[0], _stage, argv)


if __name__ == "__main__":
    sys.exit(main())
