"""dvc.yaml's train stage: `python -m stages.train KEY` trains (or resumes) one run of the plan.

The run's config is built from params.yaml's live hyperparameters with the same precedence as
`pipeline train --set ...` (pipeline/train/from_plan.py); `pipeline grid` trains many runs at
once through the same library call and records them in dvc.lock.
"""

from __future__ import annotations

import shlex
import sys

from pipeline.plan import Experiment, Run, train_argv
from pipeline.plan.stage import stage_main
from pipeline.train.from_plan import train_run


def _stage(exp: Experiment, run: Run) -> None:
    print(f"+ python -m stages.train {run.key}", flush=True)
    print(f"  (by hand: pipeline {shlex.join(train_argv(exp, run))})", flush=True)
    train_run(exp, run, progress=sys.stderr.isatty())


def main(argv: list[str] | None = None) -> int:
    return stage_main("train", __doc__.split("\n\n")[0], _stage, argv)


if __name__ == "__main__":
    sys.exit(main())
