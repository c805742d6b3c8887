"""What dvc.yaml's stages share: find an item of params.yaml's plan (extract, train), report errors (all).

The stages themselves are sfm_fusion/stages/dvc_extract.py (`python -m sfm_fusion.stages.dvc_extract KEY`) and
sfm_fusion/stages/dvc_train.py (`python -m sfm_fusion.stages.dvc_train KEY`): two entry modules, so that each DVC
stage depends on the code it runs and no more (an edit of the trainer reruns no extraction).
Both call the stage functions directly (sfm_fusion.stages.extract.run, sfm_fusion.stages.train.train), not the CLI.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from sfm_fusion.stages.plan import Experiment, Plan, PlanError, check, load_experiment, make_plan


def lookup(params: str, kind: str, key: str) -> tuple[Experiment, Plan, Any]:
    """(experiment, plan, the Store or Run `key`) of params.yaml; refuses a stale file.

    kind: "extract" (a key of the generated `stores`) or "train" (of `runs`).
    """
    check(params)
    exp = load_experiment(params)
    plan = make_plan(exp)
    table = plan.stores if kind == "extract" else plan.runs
    if key not in table:
        raise PlanError(
            f"{params}: no {kind} key `{key}` (it lists {len(table)}); "
            f"`python -m sfm_fusion.stages.plan list {params}` shows them"
        )
    return exp, plan, table[key]


def stage_main(kind: str, doc: str, handler: Callable[[Experiment, Any], None], argv: list[str] | None) -> int:  # fmt: skip
    """The command line of one DVC stage: KEY [--params FILE]; user errors print one line, rc 2
    (`report_user_errors`)."""
    p = argparse.ArgumentParser(prog=f"python -m sfm_fusion.stages.dvc_{kind}", description=doc)
    p.add_argument("key", help=f"a key of params.yaml's generated `{'stores' if kind == 'extract' else 'runs'}`")  # fmt: skip
    p.add_argument("--params", default="params.yaml")
    a = p.parse_args(argv)

    def run() -> None:
        exp, _, item = lookup(a.params, kind, a.key)
        handler(exp, item)

    return report_user_errors(f"{kind} {a.key}", run)


def report_user_errors(what: str, run: Callable[[], None], errors: tuple[type[Exception], ...] = ()) -> int:  # fmt: skip
    """Run a stage; a user error prints one line, `error (WHAT): message`, and returns 2.

    A user error is any ValueError / RuntimeError / OSError (PlanError, ConfigError, StoreError,
    RunDirError, ...), plus `errors`: their messages name the file and what to do.
    PIPELINE_DEBUG=1 re-raises.
    """
    try:
        run()
    except (ValueError, RuntimeError, OSError, *errors) as e:
        if os.environ.get("PIPELINE_DEBUG"):
            raise
        print(f"error ({what}): {e}", file=sys.stderr)
        return 2
    return 0
