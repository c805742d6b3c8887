"""What dvc.yaml's stages share: find one item of params.yaml's plan, and the stage's command line.

Each stage is a thin file in the checkout's top-level `stages/` folder, run by DVC as
`python -m stages.<name> KEY`: it reads its item here and calls the library. Errors follow the
one policy of pipeline/errors.py (a user error is one `error:` line and exit status 1).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from pipeline.errors import run_reporting
from pipeline.plan.experiment import Experiment
from pipeline.plan.model import Plan, PlanError
from pipeline.plan.params_file import checked

PLAN_TABLES = {"extract": "stores", "train": "runs"}


def lookup(params: str, kind: str, key: str) -> tuple[Experiment, Plan, Any]:
    """(experiment, plan, the Store or Run `key`) of params.yaml; refuses a stale file.

    kind: "extract" (a key of the generated `stores`) or "train" (of `runs`).
    """
    exp, plan = checked(params)  # params.yaml parsed and the plan expanded once
    table = plan.stores if kind == "extract" else plan.runs
    if key not in table:
        raise PlanError(
            f"{params}: no {kind} key `{key}` (it lists {len(table)}); "
            f"`python -m pipeline.plan list {params}` shows them"
        )
    return exp, plan, table[key]


def stage_main(kind: str, doc: str, handler: Callable[[Experiment, Any], None], argv: list[str] | None) -> int:  # fmt: skip
    """The command line of one keyed DVC stage, `python -m stages.KIND KEY [--params FILE]`."""
    p = argparse.ArgumentParser(prog=f"python -m stages.{kind}", description=doc)
    p.add_argument("key", help=f"a key of params.yaml's generated `{PLAN_TABLES[kind]}`")
    p.add_argument("--params", default="params.yaml")
    a = p.parse_args(argv)

    def run() -> None:
        exp, _, item = lookup(a.params, kind, a.key)
        handler(exp, item)

    return run_reporting(run, f"{kind} {a.key}")
